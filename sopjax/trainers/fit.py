"""Training on arrays that live on the device (CIFAR, or any dataset that fits in memory)."""

from __future__ import annotations

import contextlib
import types

import numpy as np

from sopjax.configs import Config
from sopjax.configs import files as config_files
from sopjax.data import arrays as arrays_lib
from sopjax.data import constants, noise
from sopjax.data.arrays import Arrays
from sopjax.evaluators import epoch as epoch_eval
from sopjax.evaluators import report
from sopjax.evaluators.predict import evaluate
from sopjax.infra import parallel
from sopjax.infra.metrics import MetricWriter
from sopjax.infra.provenance import code_version
from sopjax.infra.record import versions
from sopjax.infra.rundir import RunDir
from sopjax.pp.augment import epoch_batches
from sopjax.trainers.logs import RunLogs
from sopjax.trainers.loop import Callback, EpochTask, run_steps, train_epochs
from sopjax.trainers.state import build_model, check_memory, create_train_state, lr_schedule
from sopjax.trainers.step import StepSpec, device_step


def config_record(cfg: Config, arrays: Arrays, num_train: int, steps_per_epoch: int, extra: dict | None = None,
                  norm: tuple | None = None) -> dict:
    """What ``config.json`` holds: config (:func:`sopjax.configs.files.to_dict`), seed, code
    version, library versions, data size, noise (None without true labels), class names,
    input normalization and fingerprint (:func:`sopjax.data.arrays.data_fingerprint`)."""
    names = {} if arrays.class_names is None else {"class_names": list(arrays.class_names)}
    normalization = {} if norm is None else {"input_normalization": {
        "mean": [float(m) for m in norm[0]], "std": [float(s) for s in norm[1]], "source": norm[2]}}
    return {"config": config_files.to_dict(cfg), "seed": cfg.seed, "code_version": code_version(),
            "versions": versions(), "num_train": num_train, "steps_per_epoch": steps_per_epoch,
            "label_set": arrays.labels.name, "true_labels": arrays.labels.has_true_labels,
            "realized_noise_rate": arrays.labels.realized_rate, **names, **normalization,
            "num_val": 0 if arrays.x_val is None else len(arrays.x_val),
            "val_images_trained_on": arrays.val_rows is not None,
            "data_fingerprint": arrays_lib.data_fingerprint(arrays), **(extra or {})}


def device_arrays(arrays: Arrays) -> tuple[dict, tuple]:
    """The images on the device (sharded by sample under a data-parallel mesh), and the
    training data ``(x (N, …), noisy labels (N,) int32)`` the step gathers from."""
    devs = {"x_train": parallel.put_rows(arrays.x_train), "x_test": parallel.put_rows(arrays.x_test)}
    if arrays.x_val is not None:
        devs["x_val"] = parallel.put_rows(arrays.x_val)
    return devs, (devs["x_train"], parallel.put_rows(arrays.labels.noisy.astype(np.int32)))


NO_RUN = types.SimpleNamespace(last_epoch=None, path="(no run directory)")


def train_epoch(state, epoch: int, data: tuple, cfg: Config, log_every: int = 25, run=NO_RUN):
    """One pass over device-resident ``data = (x (N, …), y (N,) int32)`` in the epoch's own
    permutation, outside any run directory (nothing is saved or evaluated). Returns (state,
    epoch-mean metrics as floats, keys prefixed "train_"). Raises TrainingDiverged; ``run``
    (anything with ``last_epoch`` and ``path``) only words its message."""
    spec, n = StepSpec.from_config(cfg), len(data[1])

    def step_for(st, e):
        batches = epoch_batches(st.rng, e, n, cfg.batch_size)
        return lambda s, i: device_step(s, batches[i], data, spec)

    task = EpochTask(n // cfg.batch_size, cfg.epochs, cfg.batch_size, step_for, None, None, None, [run], [])
    state, metrics = run_steps(state, task, epoch, log_every)
    return state, metrics[0]


def _prepare(cfg: Config, arrays: Arrays) -> tuple[Arrays, int]:
    """Check the config and the data, split off the validation rows; returns (arrays, steps
    per epoch). Raises ValueError naming the fix."""
    cfg.validate()
    arrays_lib.check_arrays(arrays)
    if arrays.x_train.ndim == 4:  # images: a batch size whose activations cannot fit is refused here
        check_memory(cfg, arrays.x_train.shape[1], 0)
    arrays = arrays_lib.split_validation(arrays, cfg.val_size, cfg.seed, cfg.val_holdout)
    spe = len(arrays.x_train) // cfg.batch_size
    if spe < 1:
        raise ValueError(f"batch size {cfg.batch_size} exceeds the {len(arrays.x_train)} training samples; "
                         "lower --batch-size")
    return arrays, spe


def _task(cfg: Config, arrays: Arrays, run: RunDir, writer: MetricWriter, spe: int) -> tuple[EpochTask, dict]:
    devs, data = device_arrays(arrays)
    spec, sub, n = StepSpec.from_config(cfg), epoch_eval.fit_subset(cfg, len(arrays.x_train)), len(arrays.x_train)

    def step_for(state, epoch):
        batches = epoch_batches(state.rng, epoch, n, cfg.batch_size)
        return lambda st, i: device_step(st, batches[i], data, spec)

    def evaluate_epoch(state, epoch):
        rows = epoch_eval.test_rows(cfg, len(arrays.x_test), epoch + 1 == cfg.epochs)
        return [epoch_eval.epoch_record(state, arrays, devs, sub, rows)]

    return EpochTask(spe, cfg.epochs, cfg.batch_size, step_for, evaluate_epoch, lambda st, e: run.save(e, st),
                     lr_schedule(cfg, spe), [run], [writer]), devs


def _initial_state(cfg: Config, arrays: Arrays, model, spe: int):
    """(the run's first state, its input normalization (mean, std, source))."""
    model = model or build_model(cfg, arrays.num_classes)
    norm = constants.input_stats(cfg.dataset, arrays.x_train)
    return create_train_state(cfg, model, arrays.x_train, len(arrays.x_train), arrays.num_classes, spe,
                              norm=norm[:2]), norm


def _train(state, task: EpochTask, run: RunDir, spe: int, end: int, log_every: int, progress: bool,
           callbacks: tuple[Callback, ...]):
    """Epochs ``run.start_epoch`` to ``end``; process 0 also writes ``steps.jsonl`` and the
    TensorBoard event files (:class:`~sopjax.trainers.logs.RunLogs`). Returns the state."""
    with contextlib.closing(RunLogs([run.path] if run.primary else [], run.start_epoch * spe)) as logs:
        return train_epochs(state, task, run.start_epoch, end, log_every, progress,
                            ((logs,) if run.primary else ()) + tuple(callbacks))


def fit(cfg: Config, arrays: Arrays, workdir, model=None, progress: bool = True, log_every: int = 25,
        extra_config: dict | None = None, stop_after_epochs: int | None = None, log_epochs: bool = False,
        allow_lr_change: bool = False, callbacks: tuple[Callback, ...] = ()) -> dict | None:
    """Train ``cfg`` on ``arrays`` in ``workdir``, resuming from its newest checkpoint.

    Args:
      cfg: the run's :class:`~sopjax.configs.config.Config` (``dataset``: a CIFAR name for its
        constants, any other name to normalize uint8 images by their own statistics,
        :func:`sopjax.data.constants.input_stats`).
      arrays: :class:`~sopjax.data.arrays.Arrays` (e.g. ``Arrays.from_numpy``); true labels
        optional: without them the measures that need them are skipped, and said so.
      workdir: the run directory (:mod:`sopjax.infra.rundir`); written files also include
        ``steps.jsonl`` and TensorBoard event files (:mod:`sopjax.trainers.logs`).
      model: a network keeping :mod:`sopjax.models.contract`; default ``cfg.arch``.
      log_every: steps between the host's looks (NaN check, progress bar, ``on_log``,
        ``steps.jsonl``).
      callbacks: :class:`~sopjax.trainers.loop.Callback` hooks (per ``log_every`` steps and
        per epoch). stop_after_epochs: end this call early (as a preemption would).
      allow_lr_change: resume a run with new lr, lr_u, lr_v (recorded).

    Returns:
      The summary dict (a ``workdir`` whose run had finished is left untouched and its stored
      summary returned), or None when ``stop_after_epochs`` ended this call early (call again
      to resume). Units: ``cfg.epochs`` are passes over the training set; test accuracy and
      the fit metrics are measured after every epoch.

    Raises:
      TrainingDiverged: on a NaN/inf metric or trained array.
      ValueError: for a bad config, data or model, or a ``workdir`` that cannot be written, is
        in use, or holds a different run or data (:class:`sopjax.infra.errors.RunDirError`);
        all checked before anything is written.
    """
    arrays, spe = _prepare(cfg, arrays)
    N = len(arrays.x_train)
    state, norm = _initial_state(cfg, arrays, model, spe)
    if not arrays.labels.has_true_labels and (progress or log_epochs):
        print(noise.skipped_note())
    with RunDir.open(workdir, config_record(cfg, arrays, N, spe, extra_config, norm), allow_lr_change) as run:
        if run.finished:
            return run.finished_summary()
        state = run.restore(parallel.place_state(state, N))
        writer = MetricWriter(run.metrics_path, echo=progress or log_epochs)
        task, devs = _task(cfg, arrays, run, writer, spe)
        end = cfg.epochs if stop_after_epochs is None else min(cfg.epochs, run.start_epoch + stop_after_epochs)
        state = _train(state, task, run, spe, end, log_every, progress, callbacks)
        if end < cfg.epochs:
            return None
        probs = evaluate(state, devs["x_train"], np.arange(N))
        return report.finalize(cfg, parallel.to_host(state.params), probs, arrays, writer.history, run.path,
                               parallel.to_host(state.sample_stats))
