"""CE vs. SOP on the same labels, seed and data order: the record, the table and the claims.

:func:`sopjax.trainers.compare.run_comparison` trains each method into ``<workdir>/<method>/``
and writes, from this module, into ``<workdir>``:

- ``comparison.json``: per method the summary and the per-epoch history, the table rows
  and the four claims a CE-vs-SOP run is meant to show (strict JSON);
- ``comparison.md``: the table as Markdown (the same text is printed);
- ``fig1.png``: paper Fig. 1 side by side: per epoch, train accuracy against the given
  labels, on the wrong labels (memorization), against the clean labels, and test accuracy,
  with the per-epoch wrong-label detection AUROCs dashed;
- ``neural_collapse.png``: NC1–NC4 per epoch against the given and the true labels
  (when the histories hold them, see :func:`sopjax.evaluators.epoch.epoch_record`).

Compute is apart from drawing: :func:`comparison_record` builds the JSON-able record,
:func:`sopjax.evaluators.plots.plot_fig1` / :func:`~sopjax.evaluators.plots.plot_nc` draw it.
"""

from __future__ import annotations

import dataclasses
import json
import operator
import pathlib

import numpy as np

from sopjax.configs import Config
from sopjax.evaluators.plots import plot_fig1, plot_nc
from sopjax.infra.jsonio import atomic_path, atomic_write, dumps

# The claims a CE-vs-SOP run is meant to show: thresholds are fractions.
CE_MEMORIZES_AT_LEAST = 0.50
SOP_MEMORIZES_AT_MOST_OF_CE = 0.50
SOP_TEST_GAIN_AT_LEAST = 0.03
SOP_AUROC_AT_LEAST = 0.90
DEFAULT_METHODS = ("ce", "sop")


def checks(summaries: dict) -> list[dict]:
    """The four claims of a CE-vs-SOP run, each {"claim", "value", "target", "holds"}.

    summaries: {"ce": summary, "sop": summary} as returned by :func:`sopjax.trainers.fit.fit`
    (keys used: memorized_wrong_last, test_acc_last, detection[...]["auroc"]).
    A claim whose value is undefined (None) holds None. Raises KeyError if either method is missing.
    """
    ce, sop = summaries["ce"], summaries["sop"]
    ce_mem, sop_mem = ce["memorized_wrong_last"], sop["memorized_wrong_last"]
    gain = sop["test_acc_last"] - ce["test_acc_last"]
    auc_sop, auc_ce = sop["detection"]["sop_uv"]["auroc"], ce["detection"]["model_1mp"]["auroc"]
    return [
        _claim("CE memorizes ≥ 50% of the wrong labels", ce_mem, CE_MEMORIZES_AT_LEAST, operator.ge),
        _claim("SOP memorizes ≤ half of CE's share", sop_mem,
               None if ce_mem is None else SOP_MEMORIZES_AT_MOST_OF_CE * ce_mem, operator.le),
        _claim("SOP's last-epoch test acc ≥ CE's + 3 points", gain, SOP_TEST_GAIN_AT_LEAST,
               lambda v, t: v >= t - 1e-12),
        _claim("SOP's u/v AUROC ≥ 0.90 and ≥ CE's 1 − p AUROC", auc_sop,
               SOP_AUROC_AT_LEAST if auc_ce is None else max(SOP_AUROC_AT_LEAST, auc_ce), operator.ge),
    ]


def _claim(claim: str, value, target, holds) -> dict:
    """One claim; ``holds`` is None when the value or target is undefined (None: a label set
    without wrong, or without clean, labels has no memorization share and no AUROC)."""
    undefined = value is None or target is None
    return {"claim": claim, "value": value, "target": target, "holds": None if undefined else holds(value, target)}


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


def _flags(s: dict) -> str:
    """The label-issue report's flagged count and its precision, recall and F1 (label_issues.csv)."""
    li = s.get("label_issues")
    if li is None:
        return "—"
    return f"{li['num_label_issues']} / " + " / ".join(_num(li.get(k), ".3f") for k in ("precision", "recall", "f1"))


def table_rows(summaries: dict) -> list[tuple]:
    """(row name, value per method …) for the comparison table, methods in ``summaries`` order."""
    ms = list(summaries.values())
    thr = ms[0]["detection"]["model_1mp"]["threshold"]
    rows = [
        ("test accuracy, last epoch", *[_pct(s["test_acc_last"]) for s in ms]),
        (
            "test accuracy, best (epoch; chosen on test)",
            *[f"{_pct(s['test_acc_best'])} ({s['test_acc_best_epoch']})" for s in ms],
        ),
        ("wrong labels memorized (last epoch)", *[_pct(s["memorized_wrong_last"]) for s in ms]),
        ("train acc vs clean labels (last epoch)", *[_pct(s["fit_clean_acc_last"]) for s in ms]),
        ("detection AUROC, SOP ‖s‖₁ from u, v", *[_auc(s, "sop_uv") for s in ms]),
        ("detection AUROC, 1 − p(given label)", *[_auc(s, "model_1mp") for s in ms]),
        ("detection AUROC, SOP label-issue score", *[_auc(s, "sop_issue") for s in ms]),
        ("label issues flagged: count / precision / recall / F1", *[_flags(s) for s in ms]),
        (f"precision / recall at {thr}, SOP ‖s‖₁", *[_pr(s, "sop_uv") for s in ms]),
        (f"precision / recall at {thr}, 1 − p", *[_pr(s, "model_1mp") for s in ms]),
        ("training throughput (img/s)", *[_num(s["mean_images_per_s"], ".0f") for s in ms]),
        ("train + eval wall time (s)", *[_num(s["train_wall_s"], ".0f") for s in ms]),
    ]
    return rows


def markdown(methods: list[str], rows: list[tuple], claims: list[dict] | None) -> str:
    """The table (and the checks, when both CE and SOP ran) as Markdown text."""
    lines = ["| | " + " | ".join(m.upper() for m in methods) + " |", "| --- |" + " --- |" * len(methods)]
    lines += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
    if claims:
        lines += ["", "| claim | value | target | holds |", "| --- | --- | --- | --- |"]
        verdict = {True: "yes", False: "NO", None: "n/a"}
        lines += [f"| {c['claim']} | {_num(c['value'], '.4f')} | {_num(c['target'], '.4f')} | {verdict[c['holds']]} |"
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


def read_history(run_path) -> list[dict]:
    """The per-epoch records of a finished run (its ``metrics.jsonl``)."""
    path = pathlib.Path(run_path) / "metrics.jsonl"
    return [json.loads(l) for l in path.read_text().splitlines() if l.strip()]


def write_outputs(record: dict, workdir) -> None:
    """comparison.md, fig1.png, (if NC was measured) neural_collapse.png and, last,
    comparison.json (it marks the comparison finished), each written whole."""
    workdir = pathlib.Path(workdir)
    atomic_write(workdir / "comparison.md", record["markdown"])
    with atomic_path(workdir / "fig1.png") as tmp:
        plot_fig1(record).savefig(tmp, dpi=110)
    nc_fig = plot_nc(record)
    if nc_fig is not None:
        with atomic_path(workdir / "neural_collapse.png") as tmp:
            nc_fig.savefig(tmp, dpi=100)
    atomic_write(workdir / "comparison.json", dumps(record, indent=1))
