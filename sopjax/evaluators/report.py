"""The end of a run: wrong-label detection scores, the summary, the ranking file and the plots.

Writes into the run directory:
- ``summary.json``: best/last test accuracy, memorization, detection quality (strict JSON);
- ``noise_scores.npz``: the primary per-sample noise score (N,) float, ``ranking`` (dataset
  indices from most to least suspect), the given labels and the score's name (no pickle);
- ``training_curves.png`` and ``detection.png``.
"""

from __future__ import annotations

import pathlib

import numpy as np

from sopjax.configs import Config
from sopjax.core import losses
from sopjax.evaluators import detection, plots
from sopjax.infra.jsonio import atomic_path, atomic_write, dumps, strict
from sopjax.infra.rundir import is_primary


def detection_scores(probs: np.ndarray, given: np.ndarray, params: dict) -> dict[str, np.ndarray]:
    """Per-sample "label is wrong" scores, each (N,) float, higher = more suspect.

    ``model_1mp``: 1 − p(given label) of the final network in eval mode (probs (N, K)).
    ``sop_uv``: ‖s_i‖₁ from the learned tables (:func:`losses.noise_score`), when
    ``params`` holds "u" (N, 1) and "v" (N, K).
    """
    scores = {"model_1mp": 1.0 - probs[np.arange(len(given)), given]}
    if "u" in params:
        scores["sop_uv"] = np.asarray(losses.noise_score(params["u"], params["v"], np.asarray(given)))
    return scores


def detection_table(scores: dict, wrong: np.ndarray, threshold: float) -> dict:
    """AUROC, and precision/recall of ``score > threshold``, per score, against the known wrong labels."""
    table = {}
    for name, sc in scores.items():
        p, r = detection.precision_recall(sc, wrong, threshold)
        table[name] = {"auroc": detection.auroc(sc, wrong), "precision": p, "recall": r, "threshold": threshold}
    return table


def model_selection(history: list) -> dict:
    """Test accuracy at the epoch of best validation accuracy (the authors' "test acc with best
    val"; first such epoch on ties), when the run has a validation split
    (:func:`sopjax.data.arrays.split_validation` says which labels it is scored against)."""
    vals = [h.get("val_acc") for h in history]
    if not history or any(v is None for v in vals):
        return {"test_acc_at_best_val": None, "best_val_epoch": None, "val_acc_best": None}
    i = int(np.argmax(vals))
    return {"test_acc_at_best_val": history[i]["test_acc"], "best_val_epoch": i + 1, "val_acc_best": vals[i],
            "test_acc_at_best_val_test_size": history[i].get("test_size")}


def summarize(cfg: Config, labels, history: list, det: dict) -> dict:
    """The run's summary. ``test_acc_best`` is selected on the test set itself (an optimistic
    figure, labelled as such); ``test_acc_last`` is the honest one."""
    accs = [h["test_acc"] for h in history]
    last = history[-1] if history else {}
    primary = "sop_uv" if "sop_uv" in det else "model_1mp"
    ips = [h["images_per_s"] for h in history if h.get("images_per_s") is not None]
    return {
        "method": cfg.method, "label_set": cfg.label_set, "seed": cfg.seed, "epochs": len(history),
        "realized_noise_rate": labels.realized_rate,
        "test_acc_best": max(accs) if accs else None,
        "test_acc_best_epoch": int(np.argmax(accs)) + 1 if accs else None,
        "test_acc_best_selected_on": "test set (optimistic)",
        "test_acc_last": accs[-1] if accs else None,
        **model_selection(history),
        "memorized_wrong_last": last.get("memorized_wrong"), "fit_clean_acc_last": last.get("fit_clean_acc"),
        "detection": det, "detection_primary": primary, "detection_auroc": det[primary]["auroc"],
        "mean_images_per_s": float(np.mean(ips)) if ips else None,
        "train_wall_s": float(sum(h["epoch_total_s"] for h in history)),
    }


def finalize(cfg: Config, params: dict, probs: np.ndarray, arrays, history: list, path) -> dict:
    """Score, summarize and write the end-of-run files into ``path``; returns the summary.
    In a multi-process run every process computes the summary and process 0 alone writes.
    Each file is written whole (temporary file, then rename); summary.json comes last."""
    path = pathlib.Path(path)
    labels = arrays.labels
    scores = detection_scores(probs, labels.noisy, params)
    summary = summarize(cfg, labels, history, detection_table(scores, labels.is_wrong, cfg.detect_threshold))
    if not is_primary():
        return strict(summary)
    primary = scores[summary["detection_primary"]]
    with atomic_path(path / "noise_scores.npz") as tmp:
        np.savez(tmp, score=primary, ranking=detection.ranking(primary), given_label=labels.noisy,
                 score_name=np.array(summary["detection_primary"]))
    with atomic_path(path / "training_curves.png") as tmp:
        plots.training_panel(history, tmp, title=f"{cfg.method} on {cfg.label_set}")
    with atomic_path(path / "detection.png") as tmp:
        plots.detection_panel(primary, labels.is_wrong, tmp)
    # Last, and whole or not at all: summary.json marks the run as finished (sopjax.infra.runstate).
    atomic_write(path / "summary.json", dumps(summary, indent=1))
    return strict(summary)
