"""PNG plots of a run: the Fig. 1-style training panel and the detection panel."""

from __future__ import annotations

import numpy as np


def _figure(**kw):
    """A bare matplotlib Figure: no pyplot, so no global backend switch and nothing to close."""
    from matplotlib.figure import Figure

    return Figure(**kw)


def _series(history: list, key: str) -> np.ndarray:
    return np.array([np.nan if h.get(key) is None else h[key] for h in history], dtype=float)


def training_panel(history: list, path, title: str = "") -> None:
    """Per epoch: train accuracy on noisy labels, on wrong labels (memorization), on clean
    labels (all on the seeded train subset), and test accuracy (paper Fig. 1 style)."""
    ep = [h["epoch"] for h in history]
    fig = _figure(figsize=(6, 4), constrained_layout=True)
    ax = fig.subplots()
    for key, lab in (("fit_noisy_acc", "train acc vs given (noisy) labels"),
                     ("memorized_wrong", "train acc on wrong labels (memorization)"),
                     ("fit_clean_acc", "train acc vs clean labels"), ("test_acc", "test acc")):
        ax.plot(ep, _series(history, key), "o-", ms=3, label=lab)
    ax.set(xlabel="epoch", ylabel="accuracy", ylim=(0, 1), title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=110)


def detection_panel(scores: np.ndarray, wrong: np.ndarray, path) -> None:
    """Histogram of the noise score for correct vs wrong labels, and the precision–recall curve."""
    from sopjax.detection import pr_curve

    fig = _figure(figsize=(10, 4), constrained_layout=True)
    a, b = fig.subplots(1, 2)
    bins = np.linspace(float(np.min(scores)), float(np.max(scores)) + 1e-9, 50)
    a.hist(scores[~wrong], bins=bins, alpha=0.6, label="label correct")
    a.hist(scores[wrong], bins=bins, alpha=0.6, label="label wrong")
    a.set(xlabel="noise score", ylabel="samples", yscale="log")
    a.legend()
    p, r = pr_curve(scores, wrong)
    b.plot(r, p)
    b.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1), title="wrong-label detection")
    b.grid(alpha=0.3)
    fig.savefig(path, dpi=110)
