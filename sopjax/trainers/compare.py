"""Train several methods on the same labels, seed and data order into one directory, and
compare them (:mod:`sopjax.evaluators.comparison` builds and writes the record)."""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import time

from sopjax.configs import Config
from sopjax.core import methods as registry
from sopjax.evaluators import comparison
from sopjax.trainers.fit import fit


def run_comparison(cfg: Config, arrays, workdir, methods=("ce", "sop"), progress: bool = False,
                   extra_config: dict | None = None, started: float | None = None, **fit_kw) -> dict:
    """Train each of ``methods`` with ``cfg`` (only ``method`` changes) into
    ``<workdir>/<method>/`` and write the comparison files into ``workdir``.

    ``started``: ``time.perf_counter()`` when the caller began (e.g. before loading the data),
    so ``wall_s`` covers everything; default now. The 1-minute load average before and after
    is recorded too (the CPU may be shared). Re-running with the same ``workdir`` resumes each
    method from its checkpoint (a finished method is checked, not retrained, and a finished
    comparison's files are left as they are and its comparison.json returned). Returns the
    record of :func:`comparison_record`. Raises ValueError for an unknown or repeated method,
    and whatever :func:`sopjax.trainers.fit.fit` raises.
    """
    started = time.perf_counter() if started is None else started
    load_before = os.getloadavg()[0]

    methods = list(methods)
    if len(set(methods)) != len(methods) or not set(methods) <= set(registry.names()):
        raise ValueError(f"--compare takes distinct methods among {', '.join(registry.names())} (e.g. ce,sop), "
                         f"got {','.join(methods)}")
    workdir = pathlib.Path(workdir)
    # A comparison whose every method had finished is only re-checked: its files stay as they are.
    done = (workdir / "comparison.json").is_file() and all((workdir / m / "summary.json").is_file() for m in methods)
    summaries, histories = {}, {}
    for m in methods:
        mcfg = dataclasses.replace(cfg, method=m).validate()
        print(f"--- {m}: {workdir / m}", flush=True)
        summaries[m] = fit(mcfg, arrays, workdir / m, progress=progress, log_epochs=True,
                           extra_config={**(extra_config or {}), "compared_in": str(workdir)}, **fit_kw)
        histories[m] = comparison.read_history(workdir / m)
    if done:
        return json.loads((workdir / "comparison.json").read_text())
    wall = time.perf_counter() - started
    record = comparison.comparison_record(cfg, summaries, histories, {
        "workdir": str(workdir), "wall_s": wall, "load_avg_1min": [load_before, os.getloadavg()[0]]})
    record["markdown"] += (f"\nThis command: {wall / 60:.1f} min wall time ({wall:.0f} s), data loading included "
                           "(epochs trained by an earlier, resumed invocation are not in it; the per-method wall "
                           f"times above are); 1-minute load average {load_before:.1f} before, "
                           f"{os.getloadavg()[0]:.1f} after.\n")
    comparison.write_outputs(record, workdir)
    return record
