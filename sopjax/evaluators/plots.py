"""Drawing, apart from compute: a run's Fig. 1-style training panel and detection panel, and a
comparison's side-by-side Fig. 1 and neural-collapse curves. Every function builds a bare
matplotlib ``Figure`` (no pyplot: no global backend switch, nothing to close)."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from sopjax.evaluators.detection import pr_curve

NC_KEYS = ("nc1", "nc2_equinorm", "nc2_etf", "nc3", "nc4")


def _series(history: list, key: str) -> np.ndarray:
    return np.array([np.nan if h.get(key) is None else h[key] for h in history], dtype=float)


def training_panel(history: list, path, title: str = "") -> None:
    """Per epoch: train accuracy on noisy labels, on wrong labels (memorization), on clean
    labels (all on the seeded train subset), and test accuracy (paper Fig. 1 style)."""
    ep = [h["epoch"] for h in history]
    fig = Figure(figsize=(6, 4), constrained_layout=True)
    ax = fig.subplots()
    for key, lab in (("fit_noisy_acc", "train acc vs given (noisy) labels"),
                     ("memorized_wrong", "train acc on wrong labels (memorization)"),
                     ("fit_clean_acc", "train acc vs clean labels"), ("test_acc", "test acc")):
        if any(key in h for h in history):  # the true-label curves are absent without true labels
            ax.plot(ep, _series(history, key), "o-", ms=3, label=lab)
    ax.set(xlabel="epoch", ylabel="accuracy", ylim=(0, 1), title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=110)


def detection_panel(scores: np.ndarray, wrong: np.ndarray | None, path) -> None:
    """Histogram of the noise score for correct vs wrong labels, and the precision–recall curve;
    without true labels (``wrong`` None) the histogram of all scores alone."""
    bins = np.linspace(float(np.min(scores)), float(np.max(scores)) + 1e-9, 50)
    if wrong is None:
        fig = Figure(figsize=(5, 4), constrained_layout=True)
        a = fig.subplots()
        a.hist(scores, bins=bins, label="all samples (no true labels given)")
        a.set(xlabel="noise score", ylabel="samples", yscale="log")
        a.legend()
        fig.savefig(path, dpi=110)
        return
    fig = Figure(figsize=(10, 4), constrained_layout=True)
    a, b = fig.subplots(1, 2)
    a.hist(scores[~wrong], bins=bins, alpha=0.6, label="label correct")
    a.hist(scores[wrong], bins=bins, alpha=0.6, label="label wrong")
    a.set(xlabel="noise score", ylabel="samples", yscale="log")
    a.legend()
    p, r = pr_curve(scores, wrong)
    b.plot(r, p)
    b.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1), title="wrong-label detection")
    b.grid(alpha=0.3)
    fig.savefig(path, dpi=110)


FIG1_CURVES = (("fit_noisy_acc", "train acc vs given labels"), ("memorized_wrong", "train acc on wrong labels"),
               ("fit_clean_acc", "train acc vs clean labels"), ("test_acc", "test acc"))
# Per-epoch wrong-label detection (sopjax.evaluators.epoch), dashed on the same axes.
DETECTION_CURVES = (("auroc_1mp", "AUROC of 1 − p(given)"), ("auroc_uv", "AUROC of SOP ‖s‖₁ (u, v)"),
                    ("auroc_issue", "AUROC of SOP's label-issue score"))


def plot_fig1(record: dict):
    """Paper Fig. 1 side by side, one panel per method (shared axes). Returns a matplotlib Figure."""
    methods = record["methods"]
    fig = Figure(figsize=(5 * len(methods), 4), constrained_layout=True)
    axes = np.atleast_1d(fig.subplots(1, len(methods), sharey=True))
    for ax, m in zip(axes, methods):
        hist = record["histories"][m]
        ep = [h["epoch"] for h in hist]
        for key, label in FIG1_CURVES:
            ax.plot(ep, _series(hist, key), "o-", ms=2.5, label=label)
        for key, label in DETECTION_CURVES:
            if any(h.get(key) is not None for h in hist):
                ax.plot(ep, _series(hist, key), "--", lw=1.2, label=label)
        ax.set(xlabel="epoch", title=m.upper(), ylim=(0, 1))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy; AUROC (dashed)")
    for ax in axes:
        ax.legend(fontsize=7, loc="lower right")
    return fig


def plot_nc(record: dict):
    """NC1–NC4 per epoch, each method against the given (solid) and true (dashed) labels.
    Returns a matplotlib Figure, or None when the histories hold no NC measures."""
    methods = record["methods"]
    if not any(f"{NC_KEYS[0]}_given" in h for m in methods for h in record["histories"][m]):
        return None
    fig = Figure(figsize=(4 * len(NC_KEYS), 3.6), constrained_layout=True)
    axes = fig.subplots(1, len(NC_KEYS))
    colors = dict(zip(methods, ("C0", "C3", "C2", "C1")))
    for ax, key in zip(axes, NC_KEYS):
        for m in methods:
            hist = record["histories"][m]
            ep = [h["epoch"] for h in hist]
            for kind, style in (("given", "-"), ("true", "--")):
                ax.plot(
                    ep, _series(hist, f"{key}_{kind}"), style, color=colors[m], label=f"{m.upper()} vs {kind} labels"
                )
        ax.set(xlabel="epoch", title=key, yscale="log" if key == "nc1" else "linear")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    return fig
