"""Several runs in one program: ``jax.vmap`` over the whole training step.

Runs that differ only in what the step does not read (the seed, the label set, the
noise rate) share one compiled step and one on-device copy of the images. Their
TrainStates are stacked along a leading run axis S; each run keeps its own init, data
order, augmentation, labels and run directory, so run ``i`` is the run that
:func:`sopjax.train.fit` would do for ``cfgs[i]`` alone (tests/sopjax/test_multirun.py
checks rel ≤ 1e-5). This is what lets a paper table (4 noise rates × seeds) train on one
accelerator at once. Single device only: under a data-parallel mesh use one run at a time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

from sopjax import pipeline, report, rundir, train
from sopjax.config import Config

# Fields the training step never reads; runs may differ in these and only these.
PER_RUN_FIELDS = ("seed", "label_set", "noise_rate")


def check_compatible(cfgs: list[Config]) -> None:
    """Raise ValueError unless the configs differ only in :data:`PER_RUN_FIELDS`."""
    base = {k: v for k, v in dataclasses.asdict(cfgs[0]).items() if k not in PER_RUN_FIELDS}
    for c in cfgs[1:]:
        diff = [k for k, v in base.items() if getattr(c, k) != v]
        if diff:
            raise ValueError(f"runs side by side may differ only in {', '.join(PER_RUN_FIELDS)}; "
                             f"these differ: {', '.join(diff)}. Start them as separate runs")


def stack(states: list) -> train.TrainState:
    """TrainStates of the same model and optimizer → one state with a leading run axis S."""
    first = states[0]
    same = [s.replace(tx=first.tx, apply_fn=first.apply_fn) for s in states]  # static fields must match
    return jax.tree.map(lambda *xs: jnp.stack(xs), *same)


def unstack(states: train.TrainState, i: int) -> train.TrainState:
    """Run ``i`` of a stacked state."""
    return jax.tree.map(lambda a: a[i], states)


@functools.partial(jax.jit, static_argnames=("cfg",), donate_argnums=(0,))
def multi_step(states, idx, x_all, y_all, cfg: Config):
    """One step of every run: states stacked (S, …), idx (S, B) int32, x_all (N, …) shared,
    y_all (S, N) int32 per-run labels. Returns (states, metrics each (S,))."""
    def one(state, i, y):
        return train.train_step(state, train.gather_batch(state, i, (x_all, y), cfg), cfg)

    return jax.vmap(one)(states, idx, y_all)


def epoch_batches(states, epoch: int, num_train: int, batch_size: int) -> jax.Array:
    """(steps, S, B) int32: each run's own permutation (:func:`pipeline.epoch_batches`)."""
    per_run = jax.vmap(lambda r: pipeline.epoch_batches(r, epoch, num_train, batch_size))(states.rng)
    return jnp.swapaxes(per_run, 0, 1)


def train_epoch(states, epoch: int, x_all, y_all, cfg: Config, log_every: int, runs: list):
    """One pass of every run; returns (states, [epoch-mean metrics of run i as floats])."""
    batches = epoch_batches(states, epoch, y_all.shape[1], cfg.batch_size)
    steps, sums = batches.shape[0], None
    for i in range(steps):
        states, m = multi_step(states, batches[i], x_all, y_all, cfg)
        sums = m if sums is None else jax.tree.map(jnp.add, sums, m)
        if train.every(log_every, i, steps):
            for r, run in enumerate(runs):
                mean = {k: float(v[r]) / (i + 1) for k, v in sums.items()}
                train.check_finite(mean, f"epoch {epoch + 1}, step {i + 1} of run {r}", run.last_epoch, run.path)
    return states, [{f"train_{k}": float(v[r]) / steps for k, v in sums.items()} for r in range(len(runs))]


def _open_runs(stack_ctx, cfgs, arrays_list, workdirs, states, extra_config):
    """Open (or resume) every run directory; all must stand at the same epoch."""
    runs, restored = [], []
    for cfg, arrays, wd, st in zip(cfgs, arrays_list, workdirs, states):
        N = len(arrays.x_train)
        record = rundir.config_record(cfg, arrays, N, N // cfg.batch_size, extra_config)
        run = stack_ctx.enter_context(rundir.RunDir.open(wd, record))
        runs.append(run)
        restored.append(run.restore(st))
    starts = {r.start_epoch for r in runs}
    if len(starts) > 1:
        raise ValueError(f"the run directories stand at different epochs {sorted(starts)}; "
                         "resume them one by one with separate commands")
    return runs, restored


def fit_many(cfgs: list[Config], arrays_list: list, workdirs: list, model=None, log_every: int = 25,
             extra_config: dict | None = None, echo: bool = True) -> list[dict]:
    """Train ``cfgs[i]`` on ``arrays_list[i]`` into ``workdirs[i]``, all runs in one vmapped
    program. The arrays must share ``x_train`` and the test set (labels may differ).

    Writes one run directory per run, as :func:`sopjax.train.fit` does; returns their
    summaries. Raises ValueError for runs that cannot share a step (see
    :func:`check_compatible`), TrainingDiverged as ``fit`` does.
    """
    check_compatible(cfgs)
    cfg, a0 = cfgs[0], arrays_list[0]
    N, K = len(a0.x_train), a0.num_classes
    spe = N // cfg.batch_size
    model = model or train.build_model(cfg, K)
    states = [train.create_train_state(c, model, a0.x_train, N, K, spe) for c in cfgs]
    with contextlib.ExitStack() as ctx:
        runs, states = _open_runs(ctx, cfgs, arrays_list, workdirs, states, extra_config)
        states = stack(states)
        devs, _ = train._device_arrays(a0)  # one copy of the images
        y_all = jnp.asarray(np.stack([a.labels.noisy.astype(np.int32) for a in arrays_list]))
        writers = [rundir.MetricWriter(r.metrics_path, echo=echo) for r in runs]
        for epoch in range(runs[0].start_epoch, cfg.epochs):
            states = _one_epoch(states, epoch, devs, y_all, cfgs, arrays_list, runs, writers, log_every)
        return [_finish(c, unstack(states, i), devs, a, w, r.path)
                for i, (c, a, w, r) in enumerate(zip(cfgs, arrays_list, writers, runs))]


def _one_epoch(states, epoch, devs, y_all, cfgs, arrays_list, runs, writers, log_every):
    cfg, spe = cfgs[0], len(arrays_list[0].x_train) // cfgs[0].batch_size
    t0 = time.perf_counter()
    states, train_ms = train_epoch(states, epoch, devs["x_train"], y_all, cfg, log_every, runs)
    train_s = time.perf_counter() - t0
    for i, (c, a, run, w) in enumerate(zip(cfgs, arrays_list, runs, writers)):
        st = unstack(states, i)
        rec = {"epoch": epoch + 1, "step": int(st.step), **train_ms[i],
               **train.epoch_record(st, a, devs, train.fit_subset(c, len(a.x_train))),
               "lr": float(train.lr_schedule(c, spe)(int(st.step))), "epoch_train_s": train_s,
               "epoch_total_s": time.perf_counter() - t0, "images_per_s": spe * c.batch_size / train_s,
               "runs_side_by_side": len(cfgs), "images_per_s_all_runs": len(cfgs) * spe * c.batch_size / train_s}
        w.write(rec, total_epochs=c.epochs)
        run.save(epoch + 1, st)
    return states


def _finish(cfg, state, devs, arrays, writer, path) -> dict:
    probs = train.evaluate(state, devs["x_train"], np.arange(len(arrays.x_train)))
    return report.finalize(cfg, jax.tree.map(np.asarray, state.params), probs, arrays, writer.history, path)
