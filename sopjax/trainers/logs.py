"""A run's logs beside ``metrics.jsonl``: step-level metrics in ``steps.jsonl`` and TensorBoard
event files, written by one :class:`~sopjax.trainers.loop.Callback`.

TensorBoard files are written with ``tensorboardX`` (pure Python; clu's metric writers
import TensorFlow). Tags: ``step/<name>`` at every ``log_every`` steps (the means over
the epoch's steps so far: loss, acc and the method's loss terms), and ``epoch/<name>``
for every number in each epoch's ``metrics.jsonl`` record. Both use the global step
(optimizer steps, 1-based) as TensorBoard's step, so the curves share one axis. TensorBoard
stores scalars as float32.

On a resume from the checkpoint at global step S, the lines of ``steps.jsonl`` after S
are dropped and the event file written next purges the events after S (TensorBoard's
``purge_step``), so both logs hold each step once, as ``metrics.jsonl`` does.
"""

from __future__ import annotations

import json
import pathlib
from typing import Sequence

from tensorboardX import SummaryWriter

from sopjax.infra.jsonio import atomic_write, dumps, strict
from sopjax.trainers.loop import Callback

STEPS_FILE = "steps.jsonl"


def _numbers(d: dict) -> dict:
    """The entries of ``d`` that are numbers, as floats (no bool, None, str or list)."""
    return {k: float(v) for k, v in d.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def trim_steps(path: pathlib.Path, last_step: int) -> None:
    """Keep the lines of ``steps.jsonl`` at steps ≤ ``last_step`` (and drop unreadable ones)."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if line.strip() and json.loads(line)["step"] <= last_step:
                keep.append(line)
        except (ValueError, KeyError, TypeError):
            pass
    atomic_write(path, "".join(line + "\n" for line in keep))


class RunLogs(Callback):
    """Writes ``steps.jsonl`` and TensorBoard event files into each run's directory.

    Args:
      paths: the run directories, one per run (index ``run`` of the callbacks).
      start_step: the global step the runs resume from (0 for a new run); later lines
        and events are dropped.
      tensorboard: write event files (default True).

    Use ``close()`` (or ``with RunLogs(...) as logs:``) to flush the event files at the end.
    """

    def __init__(self, paths: Sequence, start_step: int = 0, tensorboard: bool = True):
        self.paths = [pathlib.Path(p) for p in paths]
        for p in self.paths:
            trim_steps(p / STEPS_FILE, start_step)
        purge = start_step + 1 if start_step > 0 else None
        self.writers = [SummaryWriter(logdir=str(p), purge_step=purge, flush_secs=30) for p in self.paths] \
            if tensorboard else []

    def on_log(self, run: int, step: int, metrics: dict) -> None:
        with (self.paths[run] / STEPS_FILE).open("a") as f:
            f.write(dumps(strict({"step": step, **metrics})) + "\n")
        for name, v in _numbers(metrics).items() if self.writers else ():
            self.writers[run].add_scalar(f"step/{name}", v, step)

    def on_epoch(self, run: int, record: dict) -> None:
        if not self.writers:
            return
        step = int(record["step"])
        for name, v in _numbers(record).items():
            if name not in ("epoch", "step"):
                self.writers[run].add_scalar(f"epoch/{name}", v, step)
        self.writers[run].flush()

    def close(self) -> None:
        """Flush and close the event files."""
        for w in self.writers:
            w.close()
        self.writers = []

    def __enter__(self) -> "RunLogs":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
