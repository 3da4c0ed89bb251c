"""The per-epoch record of a device-resident run: test accuracy, the fit to the given,
wrong and clean labels, wrong-label detection and neural collapse."""

from __future__ import annotations

import numpy as np

from sopjax.configs import Config
from sopjax.core import rng as streams
from sopjax.core.state import TrainState
from sopjax.data.arrays import Arrays
from sopjax.evaluators import detection, neural_collapse
from sopjax.evaluators.predict import evaluate, evaluate_features
from sopjax.evaluators.report import detection_scores
from sopjax.infra import parallel


def fit_subset(cfg: Config, num_train: int) -> np.ndarray:
    """Sorted dataset indices of the seeded training subset that memorization is measured on
    (all N when ``eval_subset`` is 0 or ≥ N)."""
    n = num_train if cfg.eval_subset <= 0 or cfg.eval_subset >= num_train else cfg.eval_subset
    return np.sort(np.random.default_rng([cfg.seed, streams.FIT_SUBSET]).choice(num_train, size=n, replace=False))


def test_rows(cfg: Config, num_test: int, last: bool) -> np.ndarray:
    """Sorted test-set rows evaluated after an epoch: a seeded subset of ``cfg.test_subset``
    rows, or all of them when it is 0 or ≥ ``num_test``, and always at the ``last`` epoch (so
    the reported last-epoch accuracy is on the whole test set)."""
    if last or cfg.test_subset <= 0 or cfg.test_subset >= num_test:
        return np.arange(num_test)
    rng = np.random.default_rng([cfg.seed, streams.TEST_SUBSET])
    return np.sort(rng.choice(num_test, size=cfg.test_subset, replace=False))


test_rows.__test__ = False  # a library function, not a pytest test


def epoch_detection(state: TrainState, probs, noisy, wrong, sub) -> dict:
    """Per-epoch wrong-label detection AUROC on the fit subset: ``auroc_1mp`` from the
    network's 1 − p(given label) and, for a run with tables, ``auroc_uv`` from ‖s_i‖₁ of the
    current u, v rows and ``auroc_issue`` from the label-issue score so far
    (:func:`report.detection_scores`). Tracks when the tables start to
    separate the wrong labels, the curve a final-epoch number hides. None where undefined
    (no wrong, or no clean, labels)."""
    params = {} if "u" not in state.params else {
        "u": parallel.to_host(state.params["u"])[sub], "v": parallel.to_host(state.params["v"])[sub]}
    stats = {k: parallel.to_host(v)[sub] for k, v in state.sample_stats.items() if k.startswith("issue")}
    scores = detection_scores(probs, noisy, params, stats)
    aucs = {f"auroc_{k.split('_', 1)[1]}": detection.auroc(v, wrong) for k, v in scores.items()}
    return {k: (None if np.isnan(a) else a) for k, a in aucs.items()}


def _true_label_fit(state, probs, pred, labels, sub) -> dict:
    """The measures against the true labels: detection AUROCs, memorization of the wrong
    labels and the fit to the true labels; {} without true labels."""
    if labels.clean is None:
        return {}
    noisy, clean, wrong = labels.noisy[sub], labels.clean[sub], labels.is_wrong[sub]
    return {**epoch_detection(state, probs, noisy, wrong, sub),
            "memorized_wrong": float(np.mean(pred[wrong] == noisy[wrong])) if wrong.any() else None,
            "fit_clean_acc": float(np.mean(pred == clean))}


def epoch_record(state: TrainState, arrays: Arrays, devs: dict, sub: np.ndarray,
                 test_idx: np.ndarray | None = None) -> dict:
    """Test accuracy (on rows ``test_idx``, default all), validation accuracy when the run
    holds a split, and on the fit subset ``sub`` the fit to the given labels and the
    neural-collapse measures of its penultimate features against them
    (:func:`neural_collapse.nc_record`); with true labels also the fit to the wrong and the
    true labels, detection AUROCs and neural collapse against the true labels."""
    labels = arrays.labels
    test_idx = np.arange(len(arrays.x_test)) if test_idx is None else test_idx
    test_pred = evaluate(state, devs["x_test"], test_idx).argmax(-1)
    probs, feats, W, b = evaluate_features(state, devs["x_train"], sub)
    pred, noisy = probs.argmax(-1), labels.noisy[sub]
    clean = None if labels.clean is None else labels.clean[sub]
    val = ({} if arrays.x_val is None else {"val_acc": float(np.mean(
        evaluate(state, devs["x_val"], np.arange(len(arrays.x_val))).argmax(-1) == arrays.y_val)),
        "val_size": int(len(arrays.x_val))})
    return {"test_acc": float(np.mean(test_pred == arrays.y_test[test_idx])), "test_size": int(len(test_idx)), **val,
            "fit_noisy_acc": float(np.mean(pred == noisy)), **_true_label_fit(state, probs, pred, labels, sub),
            "fit_subset_size": int(len(sub)),
            **neural_collapse.nc_record(feats, noisy, clean, W, b, arrays.num_classes)}
