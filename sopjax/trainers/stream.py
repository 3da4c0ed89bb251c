"""Train SOP from a folder of images and a ``<path> <label>`` list (Clothing1M, WebVision).

The data never live on the device as a whole: :mod:`sopjax.data.folder`'s grain loader decodes
on host workers and yields un-augmented ``(images, dataset indices)``; the jitted step crops
(from a zero padding of size // 8) and flips them on the device, and SOP+'s strong view gets
its own crop of the same un-augmented image, as on the CIFAR path and in the authors' loaders
(each torchvision transform crops independently). It gathers the given labels ``y[idx]`` and
the rows ``u[idx]``, ``v[idx]`` of the per-sample tables on the device, so u (N, 1) and
v (N, K) stay indexed by list position (line order of the label file, from 0).

One grain iterator runs over all ``cfg.epochs`` shuffled passes; an "epoch" here is
``N // batch_size`` steps of it (a batch may hold the end of one pass and the start of the
next). Each checkpoint (``<workdir>/checkpoints/<epoch>/``, orbax) holds the TrainState
and the iterator's position, so a resumed run reads exactly the batches the uninterrupted
run would have read (tests/trainers/test_stream.py).

Several processes: each reads its shard of every pass (``shard_index`` = process index) and
its ``batch_size / processes`` rows of every global batch; u, v are sharded by sample as in
the device-resident path (:mod:`sopjax.infra.parallel`); process 0 writes the run files.

Per epoch: the training loss and accuracy against the given labels, and the accuracy on
an optional clean test list. At the end: ``noise_scores.npz`` (SOP's ‖s_i‖₁ from u, v,
the ranking from most to least suspect, the given labels), the label-issue report
(``label_issues.csv``/``.json``/``.png``/``.html``, :mod:`sopjax.evaluators.label_issues`;
class names from ``classes.txt``, :func:`sopjax.data.folder.read_class_names`) and
``summary.json``. Wrong labels are not known for such data, so no detection AUROC is computed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec
from PIL import Image

from sopjax.configs import Config
from sopjax.core import losses
from sopjax.core.state import TrainState, eval_variables
from sopjax.data import folder
from sopjax.data.folder import FolderData, ImageList
from sopjax.evaluators import detection, label_issues, plots
from sopjax.evaluators.predict import EVAL_BATCH, normalize
from sopjax.infra import parallel
from sopjax.infra.jsonio import atomic_path, atomic_write, dumps, strict
from sopjax.infra.metrics import MetricWriter
from sopjax.infra.provenance import code_version
from sopjax.infra.record import versions
from sopjax.infra.rundir import RunDir, checkpoint_steps, is_primary
from sopjax.trainers.logs import RunLogs
from sopjax.trainers.loop import Callback, EpochTask, train_epochs
from sopjax.trainers.state import build_model, check_memory, create_train_state, lr_schedule
from sopjax.trainers.step import StepSpec, build_batch, train_step


def config_record(cfg: Config, data: FolderData, steps_per_epoch: int, workers: int, extra: dict | None = None) -> dict:
    """``config.json`` of a folder run: config, seed, code and library versions, the lists'
    sources and fingerprints (SHA-256 of the image paths and labels, not of the pixels), and
    the loader's worker count (the batches depend on it)."""
    return {"config": dataclasses.asdict(cfg), "seed": cfg.seed, "code_version": code_version(),
            "versions": versions(), "num_train": len(data.train.paths), "steps_per_epoch": steps_per_epoch,
            "loader_workers": workers,
            "num_classes": data.num_classes, "image_size": data.image_size, **data.sources,
            "data_fingerprint": {"training list (paths and labels)": folder.list_hash(data.train),
                                 "test list (paths and labels)": folder.list_hash(data.test)},
            **(extra or {})}


def check_workers(workdir, workers: int) -> None:
    """Raise ValueError if ``workdir`` holds checkpoints of this run made with another
    ``--loader-workers``: grain batches within each worker, so the loader's position (and the
    batches) depend on the worker count, and its state cannot be restored across counts."""
    path = pathlib.Path(workdir)
    try:
        old = json.loads((path / "config.json").read_text()).get("loader_workers")
    except (OSError, ValueError):
        return  # no record, or one that RunDir.open reports
    if old is not None and old != workers and checkpoint_steps(path):
        raise ValueError(f"{path} was trained with --loader-workers {old} (the batches depend on it); resume with "
                         f"--loader-workers {old}, or use a new --workdir")


def local_batch(cfg: Config) -> int:
    """Rows of every global batch that this process reads; raises ValueError unless the
    processes split ``cfg.batch_size`` evenly."""
    procs = jax.process_count()
    if cfg.batch_size % procs:
        raise ValueError(f"--batch-size {cfg.batch_size} must be a multiple of the {procs} processes")
    return cfg.batch_size // procs


def steps_per_epoch(cfg: Config, num_train: int) -> int:
    """Steps in one pass of this process's shard (every process has N // processes records)."""
    return (num_train // jax.process_count()) // local_batch(cfg)


def train_loader(cfg: Config, data: FolderData, workers: int = 0):
    """The run's grain loader: ``cfg.epochs`` passes shuffled from ``cfg.seed``, un-augmented
    (the step crops and flips each view on the device), this process's shard, full batches of
    :func:`local_batch` rows."""
    return folder.make_loader(data.train, local_batch(cfg), seed=cfg.seed, size=data.image_size,
                              num_epochs=cfg.epochs, shuffle=True, flip=False, crop=False,
                              worker_count=workers, shard_index=jax.process_index(),
                              shard_count=jax.process_count(), drop_remainder=True)


def to_global(a: np.ndarray) -> jax.Array:
    """This process's rows (b, …) of a batch → the global batch (processes × b, …), split by
    rows over the ambient data-parallel mesh (on the default device without one)."""
    mesh = parallel.active_mesh()
    if mesh is None:
        return jnp.asarray(a)
    return jax.make_array_from_process_local_data(NamedSharding(mesh, PartitionSpec(parallel.DATA)), a)


def stream_batch(state: TrainState, x, idx, y_all, spec: StepSpec) -> dict:
    """The batch of a loaded ``x`` (B, S, S, 3) uint8 (un-augmented), idx (B,) int32 list
    positions, y_all (N,) int32 given labels on the device: the weak view cropped and flipped
    when ``spec.augment``, and a strong view from the same un-augmented images, exactly as
    :func:`sopjax.trainers.step.gather_batch` builds a CIFAR batch."""
    x, idx = parallel.shard_batch(x), parallel.shard_batch(idx)
    return build_batch(state, x, y_all[idx], idx, spec, weak_augment=spec.augment)


@functools.partial(jax.jit, static_argnames=("spec",), donate_argnums=(0,))
def stream_step(state: TrainState, x, idx, y_all, spec: StepSpec):
    """One update on a loaded batch: :func:`stream_batch` then ``train_step``."""
    return train_step(state, stream_batch(state, x, idx, y_all, spec), spec)


@jax.jit
def _probs(state: TrainState, x):
    x = normalize(state, parallel.shard_batch(x))
    return jax.nn.softmax(state.apply_fn(eval_variables(state), x, train=False))


def _pad(x: np.ndarray, idx: np.ndarray, b: int):
    pad = b - len(idx)
    return (np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)]),
            np.concatenate([idx, np.full(pad, -1, idx.dtype)]))


def list_probs(state, images: ImageList, size: int, workers: int = 0) -> np.ndarray:
    """Eval-mode class probabilities (N, K) float32 of every image of the list, in list order
    (no augmentation). Each process reads its shard in fixed-size batches (the last padded,
    its padding dropped); every process returns all rows."""
    procs, b = jax.process_count(), max(1, EVAL_BATCH // jax.process_count())
    loader = folder.make_loader(images, b, seed=0, size=size, shuffle=False, worker_count=workers,
                                shard_index=jax.process_index(), shard_count=procs)
    out = None
    for x, idx in loader:
        x, idx = _pad(np.asarray(x), np.asarray(idx), b)
        p, idx_all = parallel.to_host((_probs(state, to_global(x)), to_global(idx)))
        out = np.full((len(images.paths), p.shape[1]), np.nan, np.float32) if out is None else out
        keep = idx_all >= 0
        out[idx_all[keep]] = p[keep]
    return out


def list_accuracy(state, test: ImageList, size: int, workers: int = 0) -> tuple[float, int]:
    """(accuracy, images evaluated) of the eval-mode network on the test list (:func:`list_probs`)."""
    probs = list_probs(state, test, size, workers)
    seen = ~np.isnan(probs[:, 0])
    return float(np.mean(probs[seen].argmax(1) == test.labels[seen])), int(seen.sum())


def finish(cfg: Config, state, data: FolderData, history: list, path, workers: int = 0, names=None) -> dict:
    """Write the end-of-run files (process 0) and return the summary. ``names``: the K class
    names, or None."""
    params = parallel.to_host(state.params)
    accs = [h["test_acc"] for h in history if h.get("test_acc") is not None]
    ips = [h["images_per_s"] for h in history]
    summary = strict({
        "method": cfg.method, "seed": cfg.seed, "epochs": len(history), "num_train": len(data.train.paths),
        "label_file": data.sources["label_file"], **_class_names(data),
        "train_loss_last": history[-1]["train_loss"] if history else None,
        "test_acc_last": accs[-1] if accs else None, "test_acc_best": max(accs) if accs else None,
        "test_acc_best_selected_on": "test set (optimistic)",
        "mean_images_per_s": float(np.mean(ips)) if ips else None,
        "train_wall_s": float(sum(h["epoch_total_s"] for h in history))})
    probs = list_probs(state, data.train, data.image_size, workers)  # every process joins the gathers
    if not is_primary():
        return summary
    path = pathlib.Path(path)
    if "u" in params:
        score = np.asarray(losses.noise_score(params["u"], params["v"], data.train.labels))
        with atomic_path(path / "noise_scores.npz") as tmp:
            np.savez(tmp, score=score, ranking=detection.ranking(score), given_label=data.train.labels,
                     score_name=np.array("sop_uv"), pred_probs=probs,
                     **{k: np.array(v) for k, v in _class_names(data).items()})
    summary["label_issues"] = issue_report(cfg, state, params, probs, data, path, names)
    where = data.sources["label_file"] or data.sources["image_root"]
    with atomic_path(path / "training_curves.png") as tmp:
        plots.training_panel(history, tmp, title=f"{cfg.method} on {where}")
    atomic_write(path / "summary.json", dumps(summary, indent=1))  # last: it marks the run finished
    return summary


def _class_names(data: FolderData) -> dict:
    """{"class_names": [...]} for a class-subfolder dataset, else {}."""
    names = data.sources.get("class_names")
    return {} if names is None else {"class_names": list(names)}


def issue_report(cfg: Config, state, params: dict, probs: np.ndarray, data: FolderData, path, names) -> dict:
    """The label-issue report of a folder run (:func:`sopjax.evaluators.label_issues.publish`),
    its ``path`` column relative to the image root as in the label file; returns its summary."""
    stats = parallel.to_host(state.sample_stats)
    given, root = data.train.labels, data.sources["image_root"]
    score = label_issues.issue_score(stats, params.get("u"), probs, given)
    paths = [os.path.relpath(p, root) for p in data.train.paths]
    return label_issues.publish(path, score, probs, given, label_issues.tables_trained(stats), cfg.uv_warmup_epochs,
                                functools.partial(thumbnail, data.train.paths), paths, names,
                                title=f"{cfg.method} on {data.sources['label_file'] or root}: label issues")


def thumbnail(paths, i: int, side: int = 64) -> np.ndarray:
    """Image ``paths[i]`` as RGB uint8 (≤ side, ≤ side, 3), for the gallery."""
    with Image.open(paths[i]) as im:
        im = im.convert("RGB")
        im.thumbnail((side, side))
        return np.asarray(im, np.uint8)


def _check(cfg: Config, data: FolderData, workers: int = 0) -> int:
    cfg.validate()
    check_memory(cfg, data.image_size, workers + 2)
    N, spe = len(data.train.paths), steps_per_epoch(cfg, len(data.train.paths))
    if spe < 1:
        raise ValueError(f"batch size {cfg.batch_size} exceeds the {N} training images; lower --batch-size")
    mesh = parallel.active_mesh()
    if mesh is not None and cfg.batch_size % mesh.size:
        raise ValueError(f"--batch-size {cfg.batch_size} must be a multiple of the {mesh.size} devices")
    return spe


def _task(cfg: Config, data: FolderData, it, run: RunDir, writer: MetricWriter, spe: int, workers: int) -> EpochTask:
    y_dev, spec = parallel.put_rows(data.train.labels.astype(np.int32)), StepSpec.from_config(cfg)

    def step(st, i):
        x, idx = next(it)
        return stream_step(st, to_global(np.asarray(x)), to_global(np.asarray(idx)), y_dev, spec)

    def evaluate_epoch(state, epoch):
        if data.test is None:
            return [{}]
        return [dict(zip(("test_acc", "test_size"), list_accuracy(state, data.test, data.image_size, workers)))]

    return EpochTask(spe, cfg.epochs, cfg.batch_size, lambda state, epoch: step, evaluate_epoch,
                     lambda st, e: run.save(e, st, loader=it), lr_schedule(cfg, spe), [run], [writer])


def fit_stream(cfg: Config, data: FolderData, workdir, model=None, workers: int = 0, progress: bool = True,
               log_every: int = 25, extra_config: dict | None = None, stop_after_epochs: int | None = None,
               log_epochs: bool = False, allow_lr_change: bool = False,
               callbacks: tuple[Callback, ...] = ()) -> dict | None:
    """Train ``cfg`` on the folder ``data`` in ``workdir``, resuming from its newest checkpoint
    (TrainState and loader position). Returns the summary, or None when ``stop_after_epochs``
    ended this call early. Raises as :func:`sopjax.trainers.fit.fit` does."""
    spe = _check(cfg, data, workers)
    N, K = len(data.train.paths), data.num_classes
    names = data.sources.get("class_names") or folder.read_class_names(data.sources["label_file"],
                                                                         data.sources["image_root"], K)
    model = model or build_model(cfg, K)
    example = np.zeros((1, data.image_size, data.image_size, 3), np.uint8)
    state = create_train_state(cfg, model, example, N, K, spe)
    check_workers(workdir, workers)
    with RunDir.open(workdir, config_record(cfg, data, spe, workers, extra_config), allow_lr_change) as run:
        if run.finished:
            return run.finished_summary()
        it = iter(train_loader(cfg, data, workers))
        state = run.restore(parallel.place_state(state, N), loader=it)
        writer = MetricWriter(run.metrics_path, echo=progress or log_epochs)
        end = cfg.epochs if stop_after_epochs is None else min(cfg.epochs, run.start_epoch + stop_after_epochs)
        with contextlib.closing(RunLogs([run.path] if run.primary else [], run.start_epoch * spe)) as logs:
            state = train_epochs(state, _task(cfg, data, it, run, writer, spe, workers), run.start_epoch, end,
                                 log_every, progress, ((logs,) if run.primary else ()) + tuple(callbacks))
        if end < cfg.epochs:
            return None
        return finish(cfg, state, data, writer.history, run.path, workers, names)
