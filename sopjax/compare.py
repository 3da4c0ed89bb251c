"""CE vs. SOP on the same labels, seed and data order: one run directory, one table, Fig. 1.

``run_comparison`` trains each method with :func:`sopjax.train.fit` into
``<workdir>/<method>/`` (same ``cfg`` apart from ``method``, so the same seed fixes the
network init, the data order and the augmentation of both), then writes into ``<workdir>``:

- ``comparison.json``: per method the summary and the per-epoch history, the table rows
  and the four checks of issue 8 (strict JSON);
- ``comparison.md``: the table as Markdown (the same text is printed);
- ``fig1.png``: paper Fig. 1 side by side: per epoch, train accuracy against the given
  labels, on the wrong labels (memorization), against the clean labels, and test accuracy,
  with the per-epoch wrong-label detection AUROCs dashed;
- ``neural_collapse.png``: NC1–NC4 per epoch against the given and the true labels
  (when the histories hold them, see :func:`sopjax.train.epoch_record`).

Compute is apart from drawing: :func:`comparison_record` builds the JSON-able record,
:func:`plot_fig1` / :func:`plot_nc` draw it.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

import numpy as np

from sopjax.config import Config

# The claims a CE-vs-SOP run is meant to show (issue 8): thresholds are fractions.
CE_MEMORIZES_AT_LEAST = 0.50
SOP_MEMORIZES_AT_MOST_OF_CE = 0.50
SOP_TEST_GAIN_AT_LEAST = 0.03
SOP_AUROC_AT_LEAST = 0.90
DEFAULT_METHODS = ("ce", "sop")
NC_KEYS = ("nc1", "nc2_equinorm", "nc2_etf", "nc3", "nc4")


def checks(summaries: dict) -> list[dict]:
    """The four claims of a CE-vs-SOP run, each {"claim", "value", "target", "holds"}.

    summaries: {"ce": summary, "sop": summary} as returned by :func:`sopjax.train.fit`
    (keys used: memorized_wrong_last, test_acc_last, detection[...]["auroc"]).
    Raises KeyError if either method is missing.
    """
    ce, sop = summaries["ce"], summaries["sop"]
    ce_mem, sop_mem = ce["memorized_wrong_last"], sop["memorized_wrong_last"]
    gain = sop["test_acc_last"] - ce["test_acc_last"]
    auc_sop, auc_ce = sop["detection"]["sop_uv"]["auroc"], ce["detection"]["model_1mp"]["auroc"]
    return [
        {"claim": "CE memorizes ≥ 50% of the wrong labels", "value": ce_mem, "target": CE_MEMORIZES_AT_LEAST,
         "holds": ce_mem >= CE_MEMORIZES_AT_LEAST},
        {"claim": "SOP memorizes ≤ half of CE's share", "value": sop_mem, "target": SOP_MEMORIZES_AT_MOST_OF_CE * ce_mem,
         "holds": sop_mem <= SOP_MEMORIZES_AT_MOST_OF_CE * ce_mem},
        {"claim": "SOP's last-epoch test acc ≥ CE's + 3 points", "value": gain, "target": SOP_TEST_GAIN_AT_LEAST,
         "holds": gain >= SOP_TEST_GAIN_AT_LEAST - 1e-12},
        {"claim": "SOP's u/v AUROC ≥ 0.90 and ≥ CE's 1 − p AUROC", "value": auc_sop,
         "target": max(SOP_AUROC_AT_LEAST, auc_ce), "holds": auc_sop >= max(SOP_AUROC_AT_LEAST, auc_ce)},
    ]


def _num(v, spec: str) -> str:
    """A number, or "n/a" for None/NaN (e.g. the precision of an empty flagged set)."""
    return "n/a" if v is None or not np.isfinite(v) else format(v, spec)


def _pct(v) -> str:
    return "n/a" if v is None or not np.isfinite(v) else f"{100 * v:.2f}%"


def _auc(s: dict, name: str) -> str:
    d = s["detection"].get(name)
    return "—" if d is None else _num(d["auroc"], ".3f")


def _pr(s: dict, name: str) -> str:
    d = s["detection"].get(name)
    return "—" if d is None else f"{_num(d['precision'], '.3f')} / {_num(d['recall'], '.3f')}"


def table_rows(summaries: dict) -> list[tuple]:
    """(row name, value per method …) for the comparison table, methods in ``summaries`` order."""
    ms = list(summaries.values())
    thr = ms[0]["detection"]["model_1mp"]["threshold"]
    rows = [("test accuracy, last epoch", *[_pct(s["test_acc_last"]) for s in ms]),
            ("test accuracy, best (epoch; chosen on test)", *[f"{_pct(s['test_acc_best'])} ({s['test_acc_best_epoch']})" for s in ms]),
            ("wrong labels memorized (last epoch)", *[_pct(s["memorized_wrong_last"]) for s in ms]),
            ("train acc vs clean labels (last epoch)", *[_pct(s["fit_clean_acc_last"]) for s in ms]),
            ("detection AUROC, SOP ‖s‖₁ from u, v", *[_auc(s, "sop_uv") for s in ms]),
            ("detection AUROC, 1 − p(given label)", *[_auc(s, "model_1mp") for s in ms]),
            (f"precision / recall at {thr}, SOP ‖s‖₁", *[_pr(s, "sop_uv") for s in ms]),
            (f"precision / recall at {thr}, 1 − p", *[_pr(s, "model_1mp") for s in ms]),
            ("training throughput (img/s)", *[_num(s["mean_images_per_s"], ".0f") for s in ms]),
            ("train + eval wall time (s)", *[_num(s["train_wall_s"], ".0f") for s in ms])]
    return rows


def markdown(methods: list[str], rows: list[tuple], claims: list[dict] | None) -> str:
    """The table (and the checks, when both CE and SOP ran) as Markdown text."""
    lines = ["| | " + " | ".join(m.upper() for m in methods) + " |", "| --- |" + " --- |" * len(methods)]
    lines += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
    if claims:
        lines += ["", "| claim | value | target | holds |", "| --- | --- | --- | --- |"]
        lines += [f"| {c['claim']} | {c['value']:.4f} | {c['target']:.4f} | {'yes' if c['holds'] else 'NO'} |"
                  for c in claims]
    return "\n".join(lines) + "\n"


def comparison_record(cfg: Config, summaries: dict, histories: dict, extra: dict | None = None) -> dict:
    """The JSON-able record of a comparison: config, per-method summary and history, table, checks."""
    methods = list(summaries)
    claims = checks(summaries) if {"ce", "sop"} <= set(methods) else None
    rows = table_rows(summaries)
    return {"config": dataclasses.asdict(cfg), "methods": methods, "summaries": summaries, "histories": histories,
            "rows": [list(r) for r in rows], "checks": claims, "markdown": markdown(methods, rows, claims),
            **(extra or {})}


def _series(history: list, key: str) -> np.ndarray:
    return np.array([np.nan if h.get(key) is None else h[key] for h in history], dtype=float)


FIG1_CURVES = (("fit_noisy_acc", "train acc vs given labels"), ("memorized_wrong", "train acc on wrong labels"),
               ("fit_clean_acc", "train acc vs clean labels"), ("test_acc", "test acc"))
# Per-epoch wrong-label detection (sopjax.train.epoch_record), dashed on the same axes.
DETECTION_CURVES = (("auroc_1mp", "AUROC of 1 − p(given)"), ("auroc_uv", "AUROC of SOP ‖s‖₁ (u, v)"))


def plot_fig1(record: dict):
    """Paper Fig. 1 side by side, one panel per method (shared axes). Returns a matplotlib Figure."""
    from matplotlib.figure import Figure

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
    from matplotlib.figure import Figure

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
                ax.plot(ep, _series(hist, f"{key}_{kind}"), style, color=colors[m], label=f"{m.upper()} vs {kind} labels")
        ax.set(xlabel="epoch", title=key, yscale="log" if key == "nc1" else "linear")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    return fig


def read_history(run_path) -> list[dict]:
    """The per-epoch records of a finished run (its ``metrics.jsonl``)."""
    path = pathlib.Path(run_path) / "metrics.jsonl"
    return [json.loads(l) for l in path.read_text().splitlines() if l.strip()]


def write_outputs(record: dict, workdir) -> None:
    """comparison.json, comparison.md, fig1.png and (if NC was measured) neural_collapse.png."""
    from sopjax import rundir

    workdir = pathlib.Path(workdir)
    (workdir / "comparison.json").write_text(rundir.dumps(record, indent=1))
    (workdir / "comparison.md").write_text(record["markdown"])
    plot_fig1(record).savefig(workdir / "fig1.png", dpi=110)
    nc_fig = plot_nc(record)
    if nc_fig is not None:
        nc_fig.savefig(workdir / "neural_collapse.png", dpi=100)


def run_comparison(cfg: Config, arrays, workdir, methods=("ce", "sop"), progress: bool = False,
                   extra_config: dict | None = None, started: float | None = None, **fit_kw) -> dict:
    """Train each of ``methods`` with ``cfg`` (only ``method`` changes) into
    ``<workdir>/<method>/`` and write the comparison files into ``workdir``.

    ``started``: ``time.perf_counter()`` when the caller began (e.g. before loading the data),
    so ``wall_s`` covers everything; default now. The 1-minute load average before and after
    is recorded too (the CPU may be shared). Re-running with the same ``workdir`` resumes each
    method from its checkpoint (a finished method is reloaded, not retrained). Returns the
    record of :func:`comparison_record`. Raises ValueError for an unknown or repeated method,
    and whatever :func:`sopjax.train.fit` raises.
    """
    import os
    import time

    from sopjax import train

    started = time.perf_counter() if started is None else started
    load_before = os.getloadavg()[0]

    methods = list(methods)
    if len(set(methods)) != len(methods) or not set(methods) <= {"ce", "sop", "sop_plus"}:
        raise ValueError(f"--compare takes distinct methods among ce, sop, sop_plus (e.g. ce,sop), got {','.join(methods)}")
    workdir = pathlib.Path(workdir)
    summaries, histories = {}, {}
    for m in methods:
        mcfg = dataclasses.replace(cfg, method=m).validate()
        print(f"--- {m}: {workdir / m}", flush=True)
        summaries[m] = train.fit(mcfg, arrays, workdir / m, progress=progress, log_epochs=True,
                                 extra_config={**(extra_config or {}), "compared_in": str(workdir)}, **fit_kw)
        histories[m] = read_history(workdir / m)
    wall = time.perf_counter() - started
    record = comparison_record(cfg, summaries, histories, {
        "workdir": str(workdir), "wall_s": wall, "load_avg_1min": [load_before, os.getloadavg()[0]]})
    record["markdown"] += (f"\nThis command: {wall / 60:.1f} min wall time ({wall:.0f} s), data loading included "
                           "(epochs trained by an earlier, resumed invocation are not in it; the per-method wall "
                           f"times above are); 1-minute load average {load_before:.1f} before, "
                           f"{os.getloadavg()[0]:.1f} after.\n")
    write_outputs(record, workdir)
    return record
