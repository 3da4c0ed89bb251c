"""Scoring how well a per-sample score finds the wrong labels (host-side numpy)."""

from __future__ import annotations

import numpy as np


def auroc(scores: np.ndarray, positives: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` (N,) for boolean ``positives`` (N,).

    The Mann–Whitney statistic with average ranks for ties. Returns NaN when one
    class is empty.
    """
    scores = np.asarray(scores, dtype=np.float64)
    pos = np.asarray(positives, dtype=bool)
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    # average ranks over ties
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def precision_recall(scores, positives, threshold: float) -> tuple[float, float]:
    """Precision and recall of the rule ``score > threshold``."""
    pred = np.asarray(scores) > threshold
    pos = np.asarray(positives, dtype=bool)
    tp = float(np.sum(pred & pos))
    return (tp / pred.sum() if pred.sum() else float("nan")), (tp / pos.sum() if pos.sum() else float("nan"))


def pr_curve(scores, positives, points: int = 200):
    """Precision and recall (each (≤points,)) over score quantile thresholds, for plotting."""
    qs = np.unique(np.quantile(scores, np.linspace(0, 1, points)))
    pr = np.array([precision_recall(scores, positives, t) for t in qs])
    return pr[:, 0], pr[:, 1]


def ranking(scores) -> np.ndarray:
    """Dataset indices sorted from most to least suspect (descending score, ties by index)."""
    return np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
