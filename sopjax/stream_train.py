"""Train SOP from a folder of images and a ``<path> <label>`` list (Clothing1M, WebVision).

The data never live on the device as a whole: :mod:`sopjax.stream`'s grain loader decodes
and augments (random crop from a zero padding of size // 8, horizontal flip) on host
workers and yields ``(images, dataset indices)``; the jitted step gathers the given labels
``y[idx]`` and the rows ``u[idx]``, ``v[idx]`` of the per-sample tables on the device, so
u (N, 1) and v (N, K) stay indexed by list position (line order of the label file, from 0).

One grain iterator runs over all ``cfg.epochs`` shuffled passes; an "epoch" here is
``N // batch_size`` steps of it (a batch may hold the end of one pass and the start of the
next). Each checkpoint (``<workdir>/checkpoints/<epoch>/``, orbax) holds the TrainState
and the iterator's position, so a resumed run reads exactly the batches the uninterrupted
run would have read (tests/sopjax/test_stream_train.py).

Several processes: each reads its shard of every pass (``shard_index`` = process index) and
its ``batch_size / processes`` rows of every global batch; u, v are sharded by sample as in
the device-resident path (:mod:`sopjax.parallel`); process 0 writes the run files.

Per epoch: the training loss and accuracy against the given labels, and the accuracy on
an optional clean test list. At the end: ``noise_scores.npz`` (SOP's ‖s_i‖₁ from u, v,
the ranking from most to least suspect, the given labels) and ``summary.json``. Wrong
labels are not known for such data, so no detection AUROC is computed.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

from sopjax import autoaugment, detection, losses, parallel, plots, rundir, stream, train
from sopjax.config import Config
from sopjax.provenance import code_version

EVAL_BATCH = 256


@dataclasses.dataclass(frozen=True)
class FolderData:
    """train: the training list; test: a clean evaluation list or None; num_classes K;
    image_size: the side images are decoded to (pixels)."""

    train: stream.ImageList
    test: stream.ImageList | None
    num_classes: int
    image_size: int
    sources: dict  # {"image_root", "label_file", "test_label_file"} as given


def load_folder(image_root, label_file, num_classes: int, image_size: int = 32, test_label_file=None,
                subset: int = 0) -> FolderData:
    """Read and check the lists (see :func:`sopjax.stream.read_list`); ``subset`` keeps the first
    lines. Raises ValueError naming the file, line and fix of a bad line or a bad setting."""
    if not image_root or not label_file:
        raise ValueError("a folder dataset needs both --image-root DIR and --label-file FILE")
    for flag, path in (("--image-root", image_root), ("--label-file", label_file), ("--test-label-file", test_label_file)):
        if path is not None and not pathlib.Path(path).exists():
            raise ValueError(f"{flag} {path} does not exist; pass an existing path")
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"--num-classes must be an integer >= 2 with --label-file (e.g. 14 for Clothing1M), got {num_classes!r}")
    if image_size < 8:
        raise ValueError(f"--image-size must be at least 8 pixels, got {image_size}")
    train_list = stream.read_list(label_file, image_root, num_classes)
    if subset:
        if subset > len(train_list.paths):
            raise ValueError(f"--subset {subset} exceeds the {len(train_list.paths)} images of {label_file}")
        train_list = stream.ImageList(train_list.paths[:subset], train_list.labels[:subset])
    test_list = stream.read_list(test_label_file, image_root, num_classes) if test_label_file else None
    return FolderData(train_list, test_list, num_classes, image_size,
                      {"image_root": str(image_root), "label_file": str(label_file),
                       "test_label_file": None if test_label_file is None else str(test_label_file)})


def _list_hash(images: stream.ImageList | None) -> str | None:
    if images is None:
        return None
    h = hashlib.sha256("\n".join(images.paths).encode())
    h.update(np.ascontiguousarray(images.labels, np.int32).data)
    return h.hexdigest()


def config_record(cfg: Config, data: FolderData, steps_per_epoch: int, workers: int, extra: dict | None = None) -> dict:
    """``config.json`` of a folder run: config, seed, code and library versions, the lists'
    sources and fingerprints (SHA-256 of the image paths and labels, not of the pixels), and
    the loader's worker count (the batches depend on it)."""
    return {"config": dataclasses.asdict(cfg), "seed": cfg.seed, "code_version": code_version(),
            "versions": rundir._versions(), "num_train": len(data.train.paths), "steps_per_epoch": steps_per_epoch,
            "loader_workers": workers,
            "num_classes": data.num_classes, "image_size": data.image_size, **data.sources,
            "data_fingerprint": {"training list (paths and labels)": _list_hash(data.train),
                                 "test list (paths and labels)": _list_hash(data.test)},
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
    if old is not None and old != workers and rundir._checkpoint_steps(path):
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
    """The run's grain loader: ``cfg.epochs`` passes shuffled from ``cfg.seed``, crop and flip
    when ``cfg.augment``, this process's shard, full batches of :func:`local_batch` rows."""
    return stream.make_loader(data.train, local_batch(cfg), seed=cfg.seed, size=data.image_size,
                              num_epochs=cfg.epochs, shuffle=True, flip=cfg.augment, crop=cfg.augment,
                              worker_count=workers, shard_index=jax.process_index(),
                              shard_count=jax.process_count(), drop_remainder=True)


def to_global(a: np.ndarray) -> jax.Array:
    """This process's rows (b, …) of a batch → the global batch (processes × b, …), split by
    rows over the ambient data-parallel mesh (on the default device without one)."""
    mesh = parallel.active_mesh()
    if mesh is None:
        return jnp.asarray(a)
    from jax.sharding import NamedSharding, PartitionSpec

    return jax.make_array_from_process_local_data(NamedSharding(mesh, PartitionSpec(parallel.DATA)), a)


@functools.partial(jax.jit, static_argnames=("cfg",), donate_argnums=(0,))
def stream_step(state: train.TrainState, x, idx, y_all, cfg: Config):
    """One update on a loaded batch: x (B, S, S, 3) uint8 (augmented on the host), idx (B,)
    int32 list positions, y_all (N,) int32 given labels on the device. SOP+'s strong view is
    drawn on the device, as in :func:`sopjax.train.gather_batch`."""
    x, idx = parallel.shard_batch(x), parallel.shard_batch(idx)
    batch = {"x": train.normalize(state, x), "y": y_all[idx], "idx": idx}
    if cfg.method == "sop_plus":
        key = jax.random.fold_in(jax.random.fold_in(state.rng, state.step), 1)
        batch["x_strong"] = autoaugment.strong_view(key, x, state.norm["mean"], state.norm["std"])
    return train.train_step(state, batch, cfg)


def train_epoch(state, it, y_dev, cfg: Config, spe: int, log_every: int, run, bar=None):
    """``spe`` steps from the iterator ``it``; returns (state, epoch-mean metrics as floats)
    (:func:`sopjax.train.run_steps`)."""
    def step(st, i):
        x, idx = next(it)
        return stream_step(st, to_global(np.asarray(x)), to_global(np.asarray(idx)), y_dev, cfg)

    return train.run_steps(state, spe, step, log_every, run, "", bar)


@jax.jit
def _predict(state: train.TrainState, x):
    x = train.normalize(state, parallel.shard_batch(x))
    return jnp.argmax(state.apply_fn(train.eval_variables(state), x, train=False), -1)


def list_accuracy(state, test: stream.ImageList, size: int, workers: int = 0) -> tuple[float, int]:
    """(accuracy, images evaluated) of the eval-mode network on the test list: each process
    reads its shard in fixed-size batches (the last padded, its padding dropped)."""
    procs, b = jax.process_count(), max(1, EVAL_BATCH // jax.process_count())
    loader = stream.make_loader(test, b, seed=0, size=size, shuffle=False, worker_count=workers,
                                shard_index=jax.process_index(), shard_count=procs)
    correct = seen = 0
    for x, idx in loader:
        x, idx = np.asarray(x), np.asarray(idx)
        pad = b - len(idx)
        x = np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)])
        idx = np.concatenate([idx, np.full(pad, -1, idx.dtype)])
        pred, idx_all = parallel.to_host((_predict(state, to_global(x)), to_global(idx)))
        keep = idx_all >= 0
        correct += int(np.sum(pred[keep] == test.labels[idx_all[keep]]))
        seen += int(keep.sum())
    return correct / seen, seen


def finish(cfg: Config, state, data: FolderData, history: list, path) -> dict:
    """Write the end-of-run files (process 0) and return the summary."""
    params = parallel.to_host(state.params)
    accs = [h["test_acc"] for h in history if h.get("test_acc") is not None]
    ips = [h["images_per_s"] for h in history]
    summary = rundir.strict({
        "method": cfg.method, "seed": cfg.seed, "epochs": len(history), "num_train": len(data.train.paths),
        "label_file": data.sources["label_file"], "train_loss_last": history[-1]["train_loss"] if history else None,
        "test_acc_last": accs[-1] if accs else None, "test_acc_best": max(accs) if accs else None,
        "test_acc_best_selected_on": "test set (optimistic)",
        "mean_images_per_s": float(np.mean(ips)) if ips else None,
        "train_wall_s": float(sum(h["epoch_total_s"] for h in history))})
    if not rundir.is_primary():
        return summary
    path = pathlib.Path(path)
    if "u" in params:
        score = np.asarray(losses.noise_score(params["u"], params["v"], data.train.labels))
        np.savez(path / "noise_scores.npz", score=score, ranking=detection.ranking(score),
                 given_label=data.train.labels, score_name=np.array("sop_uv"))
    (path / "summary.json").write_text(rundir.dumps(summary, indent=1))
    plots.training_panel(history, path / "training_curves.png", title=f"{cfg.method} on {data.sources['label_file']}")
    return summary


def fit_stream(cfg: Config, data: FolderData, workdir, model=None, workers: int = 0, progress: bool = True,
               log_every: int = 25, extra_config: dict | None = None, stop_after_epochs: int | None = None,
               log_epochs: bool = False, allow_lr_change: bool = False) -> dict | None:
    """Train ``cfg`` on the folder ``data`` in ``workdir``, resuming from its newest checkpoint
    (TrainState and loader position). Returns the summary, or None when ``stop_after_epochs``
    ended this call early. Raises as :func:`sopjax.train.fit` does."""
    cfg.validate()
    N, K = len(data.train.paths), data.num_classes
    spe = steps_per_epoch(cfg, N)
    if spe < 1:
        raise ValueError(f"batch size {cfg.batch_size} exceeds the {N} training images; lower --batch-size")
    mesh = parallel.active_mesh()
    if mesh is not None and cfg.batch_size % mesh.size:
        raise ValueError(f"--batch-size {cfg.batch_size} must be a multiple of the {mesh.size} devices")
    model = model or train.build_model(cfg, K)
    example = np.zeros((1, data.image_size, data.image_size, 3), np.uint8)
    state = train.create_train_state(cfg, model, example, N, K, spe)
    check_workers(workdir, workers)
    with rundir.RunDir.open(workdir, config_record(cfg, data, spe, workers, extra_config), allow_lr_change) as run:
        it = iter(train_loader(cfg, data, workers))
        state = run.restore(parallel.place_state(state, N), loader=it)
        y_dev = parallel.put_rows(data.train.labels.astype(np.int32))
        writer = rundir.MetricWriter(run.metrics_path, echo=progress or log_epochs)
        end = cfg.epochs if stop_after_epochs is None else min(cfg.epochs, run.start_epoch + stop_after_epochs)
        for epoch in range(run.start_epoch, end):
            t0, bar = time.perf_counter(), train._progress_bar(progress, spe, epoch, cfg.epochs)
            state, train_m = train_epoch(state, it, y_dev, cfg, spe, log_every, run, bar)
            train_s = time.perf_counter() - t0
            bar is not None and bar.close()
            test = {} if data.test is None else dict(zip(("test_acc", "test_size"),
                                                         list_accuracy(state, data.test, data.image_size, workers)))
            writer.write({"epoch": epoch + 1, "step": int(state.step), **train_m, **test,
                          "lr": float(train.lr_schedule(cfg, spe)(int(state.step))), "epoch_train_s": train_s,
                          "epoch_total_s": time.perf_counter() - t0, "images_per_s": spe * cfg.batch_size / train_s},
                         total_epochs=cfg.epochs)
            run.save(epoch + 1, state, loader=it)
        if end < cfg.epochs:
            return None
        return finish(cfg, state, data, writer.history, run.path)
