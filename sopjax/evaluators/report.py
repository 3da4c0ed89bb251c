"""The end of a run: wrong-label detection scores, the summary, the ranking file and the plots.

Writes into the run directory:
- ``summary.json``: best/last test accuracy, memorization, detection quality (strict JSON);
- ``noise_scores.npz``: the primary per-sample noise score (N,) float, ``ranking`` (dataset
  indices from most to least suspect), the given labels, the score's name and ``pred_probs``
  (N, K), the final network's eval-mode probabilities (no pickle);
- ``label_issues.csv``/``.json``/``.png``/``.html``: the label-issue report
  (:mod:`sopjax.evaluators.label_issues`, :mod:`sopjax.evaluators.gallery`);
- ``training_curves.png`` and ``detection.png``.
"""

from __future__ import annotations

import pathlib

import numpy as np

from sopjax.configs import Config
from sopjax.core import losses
from sopjax.data import cifar, noise
from sopjax.evaluators import detection, label_issues, plots
from sopjax.infra.jsonio import atomic_path, atomic_write, dumps, strict
from sopjax.infra.rundir import is_primary


def detection_scores(probs: np.ndarray, given: np.ndarray, params: dict,
                     sample_stats: dict | None = None) -> dict[str, np.ndarray]:
    """Per-sample "label is wrong" scores, each (N,) float, higher = more suspect.

    ``model_1mp``: 1 − p(given label) of the final network in eval mode (probs (N, K)).
    ``sop_uv``: ‖s_i‖₁ from the learned tables (:func:`losses.noise_score`), when
    ``params`` holds "u" (N, 1) and "v" (N, K). ``sop_issue``: the label-issue score
    (:func:`label_issues.issue_score`), when ``sample_stats`` (the state's, rows as ``probs``)
    are given too.
    """
    scores = {"model_1mp": 1.0 - probs[np.arange(len(given)), given]}
    if "u" in params:
        scores["sop_uv"] = np.asarray(losses.noise_score(params["u"], params["v"], np.asarray(given)))
        if sample_stats:
            scores["sop_issue"] = label_issues.issue_score(sample_stats, params["u"], probs, given)
    return scores


def detection_table(scores: dict, wrong: np.ndarray | None, threshold: float) -> dict:
    """AUROC, and precision/recall of ``score > threshold``, per score, against the known wrong
    labels; {} when they are unknown (``wrong`` None: no true labels)."""
    table = {}
    if wrong is None:
        return table
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


def summarize(cfg: Config, labels, history: list, det: dict, primary: str | None = None) -> dict:
    """The run's summary. ``test_acc_best`` is selected on the test set itself (an optimistic
    figure, labelled as such); ``test_acc_last`` is the honest one. ``primary``: the name of
    the run's main noise score (default the first of "sop_issue", "sop_uv", "model_1mp" in ``det``).
    Without true labels the measures that need them are None and ``skipped`` says why."""
    accs = [h["test_acc"] for h in history]
    last = history[-1] if history else {}
    primary = primary or next((k for k in ("sop_issue", "sop_uv", "model_1mp") if k in det), None)
    ips = [h["images_per_s"] for h in history if h.get("images_per_s") is not None]
    return {
        "method": cfg.method, "label_set": labels.name, "seed": cfg.seed, "epochs": len(history),
        "true_labels": labels.has_true_labels,
        **({} if labels.has_true_labels else {"skipped": noise.skipped_note()}),
        "realized_noise_rate": labels.realized_rate,
        "test_acc_best": max(accs) if accs else None,
        "test_acc_best_epoch": int(np.argmax(accs)) + 1 if accs else None,
        "test_acc_best_selected_on": "test set (optimistic)",
        "test_acc_last": accs[-1] if accs else None,
        **model_selection(history),
        "memorized_wrong_last": last.get("memorized_wrong"), "fit_clean_acc_last": last.get("fit_clean_acc"),
        "detection": det, "detection_primary": primary,
        "detection_auroc": det[primary]["auroc"] if primary in det else None,
        "mean_images_per_s": float(np.mean(ips)) if ips else None,
        "train_wall_s": float(sum(h["epoch_total_s"] for h in history)),
    }


def finalize(cfg: Config, params: dict, probs: np.ndarray, arrays, history: list, path,
             sample_stats: dict | None = None) -> dict:
    """Score, summarize and write the end-of-run files into ``path``; returns the summary.
    ``sample_stats``: the state's label-issue sums (host arrays; {} or None without tables).
    In a multi-process run every process computes the summary and process 0 alone writes.
    Each file is written whole (temporary file, then rename); summary.json comes last."""
    path = pathlib.Path(path)
    labels, names = arrays.labels, getattr(arrays, "class_names", None)
    scores = detection_scores(probs, labels.noisy, params, sample_stats)
    primary = next(k for k in ("sop_issue", "sop_uv", "model_1mp") if k in scores)
    det = detection_table(scores, labels.is_wrong, cfg.detect_threshold)
    summary = {**summarize(cfg, labels, history, det, primary), **({} if names is None else {"class_names": names})}
    if not is_primary():
        return strict(summary)
    extra = {} if names is None else {"class_names": np.array(names)}
    with atomic_path(path / "noise_scores.npz") as tmp:
        np.savez(tmp, score=scores[primary], ranking=detection.ranking(scores[primary]), given_label=labels.noisy,
                 score_name=np.array(primary), pred_probs=probs, **extra)
    summary["label_issues"] = issue_report(cfg, scores, probs, arrays, sample_stats, path)
    with atomic_path(path / "training_curves.png") as tmp:
        plots.training_panel(history, tmp, title=f"{cfg.method} on {labels.name}")
    with atomic_path(path / "detection.png") as tmp:
        plots.detection_panel(scores[primary], labels.is_wrong, tmp)
    # Last, and whole or not at all: summary.json marks the run as finished (sopjax.infra.runstate).
    atomic_write(path / "summary.json", dumps(summary, indent=1))
    return strict(summary)


def issue_report(cfg: Config, scores: dict, probs: np.ndarray, arrays, sample_stats, path) -> dict:
    """Write the label-issue report of a run on arrays (:func:`label_issues.publish`; a
    gallery when the inputs are images); returns its summary."""
    x = arrays.x_train
    names = getattr(arrays, "class_names", None) or cifar.CLASS_NAMES.get(cfg.dataset)
    image_of = (lambda i: x[i]) if x.ndim == 4 and x.dtype == np.uint8 else None
    return label_issues.publish(path, scores.get("sop_issue", scores["model_1mp"]), probs, arrays.labels.noisy,
                                label_issues.tables_trained(sample_stats), cfg.uv_warmup_epochs, image_of,
                                class_names=names, true=getattr(arrays.labels, "clean", None),
                                title=f"{cfg.method} on {cfg.label_set}: label issues")
