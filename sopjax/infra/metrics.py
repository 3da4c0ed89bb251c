"""Per-epoch metrics: ``metrics.jsonl`` (one strict-JSON line per finished epoch) and the
console line printed for each."""

from __future__ import annotations

import json
import pathlib

import jax

from sopjax.infra.errors import warn
from sopjax.infra.jsonio import atomic_write, dumps, strict


class MetricWriter:
    """Appends one strict-JSON line per epoch to ``metrics.jsonl`` and echoes a console line
    (process 0 only; every process keeps the history)."""

    def __init__(self, path: pathlib.Path, echo: bool = True):
        self.primary = jax.process_index() == 0
        self.path, self.echo = path, echo and self.primary
        self.history = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] \
            if path.exists() else []

    def write(self, rec: dict, total_epochs: int) -> None:
        rec = strict(rec)
        self.history.append(rec)
        if self.primary:
            with self.path.open("a") as f:
                f.write(dumps(rec) + "\n")
        if self.echo:
            print(console_line(rec, total_epochs), flush=True)


def trim_metrics(path: pathlib.Path, last_epoch: int) -> None:
    """Keep the metric lines of epochs ≤ ``last_epoch``; drop the rest, and unreadable lines
    (a line cut short by a kill)."""
    keep, bad = [], 0
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            if line.strip() and json.loads(line)["epoch"] <= last_epoch:
                keep.append(line)
        except (ValueError, KeyError, TypeError):
            bad += 1
    if bad:
        warn(f"dropped {bad} unreadable line(s) of {path}")
    atomic_write(path, "".join(line + "\n" for line in keep))


def _fmt(v, spec: str) -> str:
    return "n/a" if v is None else format(v, spec)


def console_line(rec: dict, total_epochs: int) -> str:
    """The one line printed per epoch (the true-label measures only when the record has them)."""
    true = (f"memorized wrong {_fmt(rec.get('memorized_wrong'), '.3f')}  "
            f"fit clean {_fmt(rec.get('fit_clean_acc'), '.3f')}  ") if "fit_clean_acc" in rec else ""
    return (f"epoch {rec['epoch']}/{total_epochs}: loss {_fmt(rec.get('train_loss'), '.3f')}  "
            f"test {_fmt(rec.get('test_acc'), '.4f')}  {true}{_fmt(rec.get('images_per_s'), '.0f')} img/s")
