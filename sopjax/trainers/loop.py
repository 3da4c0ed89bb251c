"""The one epoch loop, shared by every input path (device-resident arrays, a streamed folder,
several runs side by side).

A path describes itself as an :class:`EpochTask` (its steps, its evaluation, its
checkpoints); :func:`train_epochs` runs the epochs: the steps with host reads only every
``log_every`` steps (the NaN check, the progress bar, the callbacks), then one record per run
into its ``metrics.jsonl``, then the checkpoint.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from sopjax.trainers.divergence import check_finite, nonfinite_fractions


class Callback:
    """Hooks called by :func:`train_epochs`; subclass and override what you need.

    ``run`` is the run's index (0 unless several runs train side by side).
    """

    def on_log(self, run: int, step: int, metrics: dict) -> None:
        """Every ``log_every`` steps: ``step`` is the global step (1-based), ``metrics`` the
        means over the epoch's steps so far ({"loss": …, "acc": …, aux terms}, floats)."""

    def on_epoch(self, run: int, record: dict) -> None:
        """After each epoch: the record just written to ``metrics.jsonl``."""


@dataclasses.dataclass
class EpochTask:
    """What :func:`train_epochs` needs from an input path.

    steps_per_epoch, epochs (the run's total), batch_size (images per step and run).
    step_for(state, epoch) -> step(state, i) -> (state, metrics): the epoch's i-th update
    (``state`` as the epoch starts, e.g. for its key).
    evaluate(state, epoch) -> one dict per run, merged into the epoch's record.
    save(state, epochs_done): checkpoint every run.
    lr(step) -> the network's learning rate after ``step`` steps.
    runs, writers: the RunDir and MetricWriter of each run. stacked: the state holds the runs
    along a leading axis (``jax.vmap``), one run per row.
    """

    steps_per_epoch: int
    epochs: int
    batch_size: int
    step_for: Callable[[Any, int], Callable]
    evaluate: Callable[[Any, int], list]
    save: Callable[[Any, int], None]
    lr: Callable[[int], Any]
    runs: Sequence
    writers: Sequence
    stacked: bool = False


def every(n: int, i: int, last: int) -> bool:
    """When a periodic action is due (big_vision's ``itstime``): true at steps n, 2n, … and at ``last``."""
    return (i + 1) % n == 0 or i + 1 == last


def per_run(tree: dict, n: int) -> list[dict]:
    """Summed metrics ({name: scalar or (S,)}) divided by ``n``, as one dict of floats per run."""
    arrays = {k: np.asarray(v, np.float64).reshape(-1) / n for k, v in tree.items()}
    runs = len(next(iter(arrays.values())))
    return [{k: float(a[r]) for k, a in arrays.items()} for r in range(runs)]


def _table_health(state, stacked: bool) -> list[dict]:
    fractions = (jax.vmap(nonfinite_fractions) if stacked else nonfinite_fractions)(state.params)
    if not stacked:
        return [fractions]
    return [{k: v[r] for k, v in fractions.items()} for r in range(len(next(iter(fractions.values()))))]


def _log(state, task: EpochTask, sums, last, i: int, where: str, bar, callbacks) -> None:
    """The host's look every ``log_every`` steps: NaN check, progress bar, callbacks."""
    means, lasts = per_run(sums, i + 1), per_run(last, 1)
    health = _table_health(state, task.stacked)
    for r, (m, run) in enumerate(zip(means, task.runs)):
        run_name = f" of run {r}" if len(task.runs) > 1 else ""
        check_finite({**m, "loss (this step)": lasts[r]["loss"]}, f"{where}step {i + 1}{run_name}",
                     run.last_epoch, run.path, tables=health[r])
        step = int(np.asarray(state.step).reshape(-1)[r])
        for cb in callbacks:
            cb.on_log(r, step, m)
    if bar is not None:
        bar.update(i + 1 - bar.n)
        bar.set_postfix(loss=f"{means[0]['loss']:.3f}", acc=f"{means[0]['acc']:.3f}")


def run_steps(state, task: EpochTask, epoch: int, log_every: int, bar=None, callbacks=()):
    """One epoch of ``task``'s steps; returns (state, [epoch-mean metrics of each run as floats,
    keys prefixed "train_"]). Raises :class:`~sopjax.infra.errors.TrainingDiverged`."""
    step, steps, sums = task.step_for(state, epoch), task.steps_per_epoch, None
    for i in range(steps):
        state, m = step(state, i)
        sums = m if sums is None else jax.tree.map(jnp.add, sums, m)
        if every(log_every, i, steps):
            _log(state, task, sums, m, i, f"epoch {epoch + 1}, ", bar, callbacks)
    return state, [{f"train_{k}": v for k, v in r.items()} for r in per_run(sums, steps)]


def progress_bar(enabled: bool, total: int, epoch: int, epochs: int):
    """A tqdm bar for one epoch's steps, or None."""
    return tqdm(total=total, desc=f"epoch {epoch + 1}/{epochs}", leave=False, dynamic_ncols=True) if enabled else None


def _record(task: EpochTask, state, r: int, epoch: int, train_m: dict, ev: dict, t0: float, train_s: float) -> dict:
    step = int(np.asarray(state.step).reshape(-1)[r])
    ips = task.steps_per_epoch * task.batch_size / train_s
    rec = {"epoch": epoch + 1, "step": step, **train_m, **ev, "lr": float(task.lr(step)), "epoch_train_s": train_s,
           "epoch_total_s": time.perf_counter() - t0, "images_per_s": ips}
    if len(task.runs) > 1:
        rec.update(runs_side_by_side=len(task.runs), images_per_s_all_runs=len(task.runs) * ips)
    return rec


def train_epochs(state, task: EpochTask, start: int, end: int, log_every: int = 25, progress: bool = True,
                 callbacks: Sequence[Callback] = ()):
    """Train epochs ``start`` … ``end − 1`` (0-based) of ``task``; after each, write one record
    per run and checkpoint. Returns the state."""
    for epoch in range(start, end):
        t0, bar = time.perf_counter(), progress_bar(progress, task.steps_per_epoch, epoch, task.epochs)
        state, train_ms = run_steps(state, task, epoch, log_every, bar, callbacks)
        train_s = time.perf_counter() - t0
        if bar is not None:
            bar.close()
        for r, (ev, writer) in enumerate(zip(task.evaluate(state, epoch), task.writers)):
            rec = _record(task, state, r, epoch, train_ms[r], ev, t0, train_s)
            writer.write(rec, total_epochs=task.epochs)
            for cb in callbacks:
                cb.on_epoch(r, writer.history[-1])
        task.save(state, epoch + 1)
    return state
