"""Several runs in one program: ``jax.vmap`` over the whole training step.

Runs that differ only in what the step does not read (the seed, the label set, the
noise rate) share one compiled step and one on-device copy of the images. Their
TrainStates are stacked along a leading run axis S; each run keeps its own init, data
order, augmentation, labels and run directory, so run ``i`` is the run that
:func:`sopjax.trainers.fit.fit` would do for ``cfgs[i]`` alone (tests/trainers/test_multirun.py
checks rel ≤ 1e-5). This is what lets a paper table (4 noise rates × seeds) train on one
accelerator at once. Single device only: under a data-parallel mesh use one run at a time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from sopjax.configs import Config
from sopjax.data import constants
from sopjax.evaluators import epoch as epoch_eval
from sopjax.evaluators import report
from sopjax.evaluators.predict import evaluate
from sopjax.infra.metrics import MetricWriter
from sopjax.infra.rundir import RunDir
from sopjax.pp.augment import epoch_batches
from sopjax.trainers.fit import NO_RUN, config_record, device_arrays
from sopjax.trainers.logs import RunLogs
from sopjax.trainers.loop import Callback, EpochTask, run_steps, train_epochs
from sopjax.trainers.state import build_model, create_train_state, lr_schedule
from sopjax.trainers.step import StepSpec, gather_batch, train_step

# Fields the training step never reads; runs may differ in these and only these.
PER_RUN_FIELDS = ("seed", "label_set", "noise_rate")


def check_compatible(cfgs: list[Config]) -> None:
    """Raise ValueError unless every config is valid (:meth:`Config.validate`) and they
    differ only in :data:`PER_RUN_FIELDS`."""
    for c in cfgs:
        c.validate()
    base = {k: v for k, v in dataclasses.asdict(cfgs[0]).items() if k not in PER_RUN_FIELDS}
    for c in cfgs[1:]:
        diff = [k for k, v in base.items() if getattr(c, k) != v]
        if diff:
            raise ValueError(f"runs side by side may differ only in {', '.join(PER_RUN_FIELDS)}; "
                             f"these differ: {', '.join(diff)}. Start them as separate runs")


def stack(states: list):
    """TrainStates of the same model and optimizer → one state with a leading run axis S."""
    first = states[0]
    same = [s.replace(tx=first.tx, apply_fn=first.apply_fn) for s in states]  # static fields must match
    return jax.tree.map(lambda *xs: jnp.stack(xs), *same)


def unstack(states, i: int):
    """Run ``i`` of a stacked state."""
    return jax.tree.map(lambda a: a[i], states)


@functools.partial(jax.jit, static_argnames=("spec",), donate_argnums=(0,))
def multi_step(states, idx, x_all, y_all, spec: StepSpec):
    """One step of every run: states stacked (S, …), idx (S, B) int32, x_all (N, …) shared,
    y_all (S, N) int32 per-run labels. Returns (states, metrics each (S,))."""
    def one(state, i, y):
        return train_step(state, gather_batch(state, i, (x_all, y), spec), spec)

    return jax.vmap(one)(states, idx, y_all)


def stacked_batches(states, epoch: int, num_train: int, batch_size: int) -> jax.Array:
    """(steps, S, B) int32: each run's own permutation (:func:`sopjax.pp.augment.epoch_batches`)."""
    per_run = jax.vmap(lambda r: epoch_batches(r, epoch, num_train, batch_size))(states.rng)
    return jnp.swapaxes(per_run, 0, 1)


def train_epoch(states, epoch: int, x_all, y_all, cfg: Config, log_every: int = 25, runs=None):
    """One pass of every stacked run, outside any run directory (nothing saved or evaluated):
    x_all (N, …) shared, y_all (S, N) int32. Returns (states, [epoch-mean metrics of run i
    as floats]). Raises TrainingDiverged naming the run."""
    spec, n = StepSpec.from_config(cfg), y_all.shape[1]

    def step_for(st, e):
        batches = stacked_batches(st, e, n, cfg.batch_size)
        return lambda s, i: multi_step(s, batches[i], x_all, y_all, spec)

    runs = runs or [NO_RUN] * y_all.shape[0]
    task = EpochTask(n // cfg.batch_size, cfg.epochs, cfg.batch_size, step_for, None, None, None, runs, [], True)
    return run_steps(states, task, epoch, log_every)


def _open_runs(stack_ctx, cfgs, arrays_list, workdirs, states, extra_config, norm=None):
    """Open (or resume) every run directory, each recording the input normalization ``norm``
    (mean, std, source) as ``fit`` does; all must stand at the same epoch, or all have
    finished (then ``restored`` is None)."""
    runs = []
    for cfg, arrays, wd in zip(cfgs, arrays_list, workdirs):
        N = len(arrays.x_train)
        record = config_record(cfg, arrays, N, N // cfg.batch_size, extra_config, norm)
        runs.append(stack_ctx.enter_context(RunDir.open(wd, record)))
    done = [str(r.path) for r in runs if r.finished]
    if done and len(done) < len(runs):
        raise ValueError(f"{', '.join(done)} finished already but the other run directories did not; resume the "
                         "others with separate commands")
    if done:
        return runs, None
    restored = [run.restore(st) for run, st in zip(runs, states)]
    starts = {r.start_epoch for r in runs}
    if len(starts) > 1:
        raise ValueError(f"the run directories stand at different epochs {sorted(starts)}; "
                         "resume them one by one with separate commands")
    return runs, restored


def _task(cfgs, arrays_list, runs, writers, devs, spe: int) -> EpochTask:
    cfg, N = cfgs[0], len(arrays_list[0].x_train)
    y_all = jnp.asarray(np.stack([a.labels.noisy.astype(np.int32) for a in arrays_list]))
    spec, subs = StepSpec.from_config(cfg), [epoch_eval.fit_subset(c, N) for c in cfgs]

    def step_for(states, epoch):
        batches = stacked_batches(states, epoch, N, cfg.batch_size)
        return lambda st, i: multi_step(st, batches[i], devs["x_train"], y_all, spec)

    def evaluate_epoch(states, epoch):
        return [epoch_eval.epoch_record(unstack(states, i), a, devs, sub,
                                        epoch_eval.test_rows(c, len(a.x_test), epoch + 1 == cfg.epochs))
                for i, (c, a, sub) in enumerate(zip(cfgs, arrays_list, subs))]

    def save(states, epoch):
        for i, run in enumerate(runs):
            run.save(epoch, unstack(states, i))

    return EpochTask(spe, cfg.epochs, cfg.batch_size, step_for, evaluate_epoch, save, lr_schedule(cfg, spe),
                     runs, writers, stacked=True)


def fit_many(cfgs: list[Config], arrays_list: list, workdirs: list, model=None, log_every: int = 25,
             extra_config: dict | None = None, echo: bool = True, callbacks: tuple[Callback, ...] = ()) -> list[dict]:
    """Train ``cfgs[i]`` on ``arrays_list[i]`` into ``workdirs[i]``, all runs in one vmapped
    program. The arrays must share ``x_train`` and the test set (labels may differ).

    Writes one run directory per run, as :func:`sopjax.trainers.fit.fit` does; returns their
    summaries. Raises ValueError for runs that cannot share a step (see
    :func:`check_compatible`), TrainingDiverged as ``fit`` does.
    """
    check_compatible(cfgs)
    cfg, a0 = cfgs[0], arrays_list[0]
    N, K = len(a0.x_train), a0.num_classes
    spe = N // cfg.batch_size
    model = model or build_model(cfg, K)
    norm = constants.input_stats(cfg.dataset, a0.x_train)
    states = [create_train_state(c, model, a0.x_train, N, K, spe, norm=norm[:2]) for c in cfgs]
    with contextlib.ExitStack() as ctx:
        runs, states = _open_runs(ctx, cfgs, arrays_list, workdirs, states, extra_config, norm)
        if states is None:
            return [r.finished_summary() for r in runs]
        devs, _ = device_arrays(a0)  # one copy of the images
        writers = [MetricWriter(r.metrics_path, echo=echo) for r in runs]
        task = _task(cfgs, arrays_list, runs, writers, devs, spe)
        logs = ctx.enter_context(contextlib.closing(RunLogs([r.path for r in runs], runs[0].start_epoch * spe)))
        states = train_epochs(stack(states), task, runs[0].start_epoch, cfg.epochs, log_every, False,
                              (logs, *callbacks))
        return [_finish(c, unstack(states, i), devs, a, w, r.path)
                for i, (c, a, w, r) in enumerate(zip(cfgs, arrays_list, writers, runs))]


def _finish(cfg, state, devs, arrays, writer, path) -> dict:
    probs = evaluate(state, devs["x_train"], np.arange(len(arrays.x_train)))
    return report.finalize(cfg, jax.tree.map(np.asarray, state.params), probs, arrays, writer.history, path,
                           jax.tree.map(np.asarray, state.sample_stats))
