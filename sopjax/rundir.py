"""A run directory: its config record, its per-epoch metrics and its checkpoints.

Layout of ``workdir``:
- ``config.json``: the config, seed, code and library versions, data provenance and the
  data fingerprint (written once; a resume appends its code version to ``resumed_with``,
  a resume with ``allow_lr_change`` its learning rates to ``lr_changes``);
- ``metrics.jsonl``: one strict-JSON line per finished epoch (non-finite → ``null``);
- ``checkpoints/<epoch>/``: orbax checkpoints of the whole TrainState (a streamed run adds
  its grain loader's position, :mod:`sopjax.stream_train`), the last two kept;
  one that cannot be read is moved to ``corrupt-checkpoints/<epoch>/``;
- ``.lock`` (a ``filelock`` lock held while a run uses the directory) and ``.lock.pid``.

Several processes (:mod:`sopjax.distributed`): every process opens the same ``workdir``
(shared storage, as orbax needs), but only process 0 locks it and writes the files above;
the checkpoints are saved and restored by all processes together (orbax writes each
process's shards).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import pathlib
import shutil
import sys
import tempfile

from typing import TYPE_CHECKING

import numpy as np

from sopjax.provenance import code_version

if TYPE_CHECKING:  # kept out of the import: a process that only takes the lock needs no JAX
    from sopjax.config import Config

LR_FIELDS = ("lr", "lr_u", "lr_v")
FINGERPRINT_NAMES = {"train_images": "training images", "noisy_labels": "noisy labels",
                     "clean_labels": "clean labels", "test_images": "test images", "test_labels": "test labels"}


class RunDirError(ValueError):
    """The run directory cannot be used as asked; the message names the fix."""


def _versions() -> dict:
    import flax
    import jax
    import jaxlib
    import optax
    import orbax.checkpoint

    return {"jax": jax.__version__, "jaxlib": jaxlib.__version__, "flax": flax.__version__,
            "optax": optax.__version__, "orbax-checkpoint": orbax.checkpoint.__version__,
            "numpy": np.__version__, "backend": jax.default_backend()}


def strict(obj):
    """``obj`` with every non-finite float replaced by None, so ``json.dumps`` writes strict JSON."""
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict(v) for v in obj]
    return obj


def dumps(obj, **kw) -> str:
    """Strict JSON (``allow_nan=False`` after :func:`strict`)."""
    return json.dumps(strict(obj), allow_nan=False, **kw)


def _sha256(a: np.ndarray) -> str:
    a = np.ascontiguousarray(a)
    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.data)
    return h.hexdigest()


def data_fingerprint(arrays) -> dict:
    """SHA-256 of the training images, noisy and clean labels, test images and labels
    (each over dtype, shape and bytes), so a resume can tell that the data changed."""
    return {"train_images": _sha256(arrays.x_train), "noisy_labels": _sha256(arrays.labels.noisy),
            "clean_labels": _sha256(arrays.labels.clean), "test_images": _sha256(arrays.x_test),
            "test_labels": _sha256(arrays.y_test)}


def config_record(cfg: Config, arrays, num_train: int, steps_per_epoch: int, extra: dict | None = None) -> dict:
    """What ``config.json`` holds: config, seed, code version, library versions, data size,
    noise and fingerprint. ``arrays``: a :class:`sopjax.train.Arrays`."""
    return {"config": dataclasses.asdict(cfg), "seed": cfg.seed, "code_version": code_version(),
            "versions": _versions(), "num_train": num_train, "steps_per_epoch": steps_per_epoch,
            "realized_noise_rate": arrays.labels.realized_rate, "data_fingerprint": data_fingerprint(arrays),
            **(extra or {})}


def is_primary() -> bool:
    """True in process 0 of a multi-process run (and in a single-process run): the process
    that writes run files."""
    import jax

    return jax.process_index() == 0


def _primary_failed(failed: bool) -> bool:
    """Process 0's ``failed`` on every process, so all of them stop together (one process's
    error would otherwise leave the others waiting in orbax's barriers)."""
    import jax

    if jax.process_count() == 1:
        return failed
    from jax.experimental import multihost_utils

    return bool(multihost_utils.broadcast_one_to_all(np.int32(failed)))


def warn(msg: str) -> None:
    print(f"warning: {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------ preflight checks


def _probe_dir(d: pathlib.Path, fix: str) -> None:
    """Create and remove a file in ``d``: the one test that also holds for root and read-only mounts."""
    try:
        fd, name = tempfile.mkstemp(dir=d, prefix=".write-probe-")
        os.close(fd)
        os.remove(name)
    except OSError as e:
        raise RunDirError(f"cannot write in {d} ({e.strerror}); {fix}") from None


def check_writable(workdir) -> pathlib.Path:
    """Raise RunDirError unless ``workdir`` (existing, or to be created) and the run files
    in it can be written. Creates nothing. Returns the path."""
    path = pathlib.Path(workdir).expanduser()
    if path.exists() and not path.is_dir():
        raise RunDirError(f"--workdir {path} is a file, not a directory; pass a directory path")
    parent = path
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise RunDirError(f"--workdir {path}: {parent} is a file, not a directory; pass another --workdir")
    _probe_dir(parent, "choose a writable --workdir")
    ckpt = path / "checkpoints"
    if ckpt.exists() and not ckpt.is_dir():
        raise RunDirError(f"{ckpt} is not a directory; move it away or use a new --workdir")
    if ckpt.is_dir():
        _probe_dir(ckpt, f"make {ckpt} writable or use a new --workdir")
    for name in ("config.json", "metrics.jsonl", "summary.json", "noise_scores.npz", ".lock", ".lock.pid"):
        f = path / name
        if f.exists():
            try:
                with open(f, "r+b"):
                    pass
            except OSError as e:
                raise RunDirError(f"cannot write {f} ({e.strerror}); make it writable or use a new --workdir") from None
    return path


# ------------------------------------------------------------------- the lock


def _lock(path: pathlib.Path):
    """Hold ``path/.lock`` (filelock, an OS lock released when the process dies) or raise
    RunDirError naming the holder's PID."""
    import filelock

    lock = filelock.FileLock(str(path / ".lock"), timeout=0)
    try:
        lock.acquire()
    except filelock.Timeout:
        try:
            holder = (path / ".lock.pid").read_text().strip() or "unknown"
        except OSError:
            holder = "unknown"
        raise RunDirError(f"{path} is in use by another run (PID {holder}); wait for it to end or stop it, "
                          "or use another --workdir") from None
    (path / ".lock.pid").write_text(f"{os.getpid()}\n")
    return lock


# ---------------------------------------------------------- the config record


def _read_json(p: pathlib.Path) -> dict:
    try:
        return json.loads(p.read_text())
    except ValueError as e:
        raise RunDirError(f"{p} is not valid JSON ({e}); restore it, or use a new --workdir") from None


def _atomic_write(p: pathlib.Path, text: str) -> None:
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, p)


def effective_config(record: dict) -> dict:
    """The recorded config with the learning rates of the last ``lr_changes`` entry applied."""
    cfg = dict(record["config"])
    for change in record.get("lr_changes", []):
        cfg.update({k: change[k] for k in LR_FIELDS})
    return cfg


def _check_same_config(path, old: dict, new: dict, allow_lr_change: bool) -> None:
    diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if allow_lr_change:
        diff = [k for k in diff if k not in LR_FIELDS]
    if diff:
        what = "; ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in diff)
        hint = " (or add --allow-lr-change to resume with new learning rates)" if set(diff) <= set(LR_FIELDS) else ""
        raise RunDirError(f"{path} holds a run with a different config ({what}); use a new --workdir{hint}, "
                          "or delete it to start over")


def _check_same_data(path, old: dict, new: dict) -> None:
    if "data_fingerprint" not in old:
        warn(f"{path}/config.json has no data fingerprint (written by an older version); cannot check the data")
        return
    changed = [FINGERPRINT_NAMES.get(k, k) for k in new["data_fingerprint"]
               if old["data_fingerprint"].get(k) != new["data_fingerprint"][k]]
    if changed:
        src = f" (recorded source: {old.get('data_source')}; now: {new.get('data_source')})" if "data_source" in new else ""
        raise RunDirError(f"{path} was trained on different data: the {', '.join(changed)} changed{src}; "
                          "use the original data (--data-dir), or a new --workdir")


def _merge_resume(path, old: dict, record: dict, allow_lr_change: bool, last_epoch) -> dict:
    """Check ``record`` against the original ``old``; return ``old`` with this resumption noted."""
    before, now = effective_config(old), json.loads(dumps(record["config"]))
    _check_same_config(path, before, now, allow_lr_change)
    _check_same_data(path, old, record)
    old["resumed_with"] = old.get("resumed_with", []) + [record["code_version"]]
    if any(before[k] != now[k] for k in LR_FIELDS):
        old["lr_changes"] = old.get("lr_changes", []) + [
            {"after_epoch": last_epoch, **{k: now[k] for k in LR_FIELDS}, "code_version": record["code_version"]}]
    return old


def _checkpoint_steps(path: pathlib.Path) -> list[int]:
    d = path / "checkpoints"
    return sorted(int(p.name) for p in d.iterdir() if p.name.isdigit()) if d.is_dir() else []


def _write_record(path: pathlib.Path, record: dict, allow_lr_change: bool) -> str | None:
    """Write or update ``config.json``; returns its previous text (None if there was none)."""
    cfg_path, steps = path / "config.json", _checkpoint_steps(path)
    before = cfg_path.read_text() if cfg_path.exists() else None
    if cfg_path.exists() and (steps or (path / "summary.json").exists()):
        record = _merge_resume(path, _read_json(cfg_path), record, allow_lr_change, steps[-1] if steps else None)
    elif cfg_path.exists():
        # No epoch of that run was kept: its record describes nothing, and this run replaces it.
        old = _read_json(cfg_path) if cfg_path.stat().st_size else {}
        if old.get("config") != json.loads(dumps(record["config"])):
            warn(f"{cfg_path} belonged to a run that kept no epoch; replacing it")
    _atomic_write(cfg_path, dumps(record, indent=1))
    return before


def _trim_metrics(path: pathlib.Path, last_epoch: int) -> None:
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
    _atomic_write(path, "".join(l + "\n" for l in keep))


def _checkpointer(path: pathlib.Path):
    import orbax.checkpoint as ocp

    # Synchronous saves: fit waits for every save anyway, and a failed write then raises
    # at once instead of after the async barrier's timeout.
    return ocp.CheckpointManager(path.resolve() / "checkpoints", options=ocp.CheckpointManagerOptions(
        max_to_keep=2, create=True, enable_async_checkpointing=False))


@dataclasses.dataclass
class RunDir:
    """An opened, locked run directory; :meth:`open` checks it holds this run (or nothing).

    Use as a context manager: leaving it releases the lock, and on an error before any
    checkpoint it removes the directory if this RunDir created it (nothing is lost).
    """

    path: pathlib.Path
    manager: object = None  # orbax CheckpointManager
    start_epoch: int = 0
    created: bool = False
    lock: object = None
    record_before: str | None = None  # config.json as it was before open, put back if this run keeps nothing
    steps_before: tuple = ()
    primary: bool = True  # process 0: locks the directory and writes its files

    @property
    def metrics_path(self) -> pathlib.Path:
        return self.path / "metrics.jsonl"

    @property
    def last_epoch(self) -> int | None:
        """The epoch of the newest checkpoint, or None."""
        return self.manager.latest_step() if self.manager is not None else None

    @classmethod
    def open(cls, workdir, record: dict, allow_lr_change: bool = False) -> "RunDir":
        """Create or reopen ``workdir`` for the run described by ``record``, and lock it.

        Raises RunDirError (a ValueError) if the directory or its files cannot be written,
        another process holds it, or it holds a run with a different config (the learning
        rates may differ with ``allow_lr_change``) or different data.
        """
        path = check_writable(workdir)
        primary = is_primary()
        run, error = cls(path, created=primary and not path.exists(), primary=primary), None
        if primary:
            try:
                path.mkdir(parents=True, exist_ok=True)
                run.lock = _lock(path)
                run.steps_before = tuple(_checkpoint_steps(path))
                run.record_before = _write_record(path, record, allow_lr_change)
            except BaseException as e:
                error = e
        if _primary_failed(error is not None):
            run.close(failed=True)
            if error is not None:
                raise error
            raise RunDirError(f"process 0 could not open {path} (its error line says why); fix that and re-run "
                              "every process")
        try:
            run.manager = _checkpointer(path)
        except BaseException:
            run.close(failed=True)
            raise
        return run

    def __enter__(self) -> "RunDir":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(failed=exc_type is not None)

    def close(self, failed: bool = False) -> None:
        """Release the lock; after a failure before any checkpoint, remove a directory this run created."""
        if self.manager is not None:
            self.manager.close()
        kept_nothing = failed and self.lock is not None and tuple(_checkpoint_steps(self.path)) == self.steps_before
        if kept_nothing and self.created and not self.steps_before:
            shutil.rmtree(self.path, ignore_errors=True)
        elif kept_nothing and self.record_before is not None:
            _atomic_write(self.path / "config.json", self.record_before)  # this attempt left no trace to record
        if self.lock is not None:
            self.lock.release()

    def restore(self, state, loader=None):
        """The newest checkpoint that loads, restored into ``state``'s structure, or ``state``
        itself when there is none. Sets ``start_epoch`` and drops metric lines after it.
        ``loader``: a grain iterator saved with the state (:meth:`save`); it is set to the
        checkpoint's position (each process its own).

        A checkpoint that cannot be read is moved to ``corrupt-checkpoints/`` with a
        warning; raises RunDirError if checkpoints exist and none of them loads.
        """
        import orbax.checkpoint as ocp

        steps = sorted(self.manager.all_steps(), reverse=True)
        for step in steps:
            try:
                if loader is None:
                    state_out = self.manager.restore(step, args=ocp.args.StandardRestore(state))
                else:
                    import grain

                    state_out = self.manager.restore(step, args=ocp.args.Composite(
                        state=ocp.args.StandardRestore(state), loader=grain.checkpoint.CheckpointRestore(loader)))["state"]
            except Exception as e:  # orbax/TensorStore raise many types for a damaged checkpoint
                self._set_aside(step, e)
                continue
            self.start_epoch = int(step)
            print(f"resuming {self.path} from the checkpoint after epoch {step}")
            if self.primary:
                _trim_metrics(self.metrics_path, self.start_epoch)
            return state_out
        if steps:
            raise RunDirError(f"no checkpoint in {self.path / 'checkpoints'} can be read (see the warnings); "
                              "use a new --workdir, or delete the directory to start over")
        if self.primary:
            _trim_metrics(self.metrics_path, 0)
        return state

    def _set_aside(self, step: int, err: Exception) -> None:
        dest = self.path / "corrupt-checkpoints" / str(step)
        if self.primary:
            dest.parent.mkdir(exist_ok=True)
            if dest.exists():
                shutil.rmtree(dest)
            shutil.move(str(self.path / "checkpoints" / str(step)), str(dest))
        self.manager.reload()
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        warn(f"checkpoint after epoch {step} cannot be read ({type(err).__name__}: {first}); "
             f"skipped it and moved it to {dest}")

    def save(self, epoch: int, state, loader=None) -> None:
        """Checkpoint ``state`` as ``epoch``, on disk when this returns (orbax saves atomically);
        with ``loader``, a grain iterator, also its position (grain's orbax handler)."""
        import orbax.checkpoint as ocp

        if loader is None:
            args = ocp.args.StandardSave(state)
        else:
            import grain

            args = ocp.args.Composite(state=ocp.args.StandardSave(state), loader=grain.checkpoint.CheckpointSave(loader))
        self.manager.save(epoch, args=args)
        self.manager.wait_until_finished()


class MetricWriter:
    """Appends one strict-JSON line per epoch to ``metrics.jsonl`` and echoes a console line
    (process 0 only; every process keeps the history)."""

    def __init__(self, path: pathlib.Path, echo: bool = True):
        self.primary = is_primary()
        self.path, self.echo = path, echo and self.primary
        self.history = [json.loads(l) for l in path.read_text().splitlines() if l.strip()] if path.exists() else []

    def write(self, rec: dict, total_epochs: int) -> None:
        rec = strict(rec)
        self.history.append(rec)
        if self.primary:
            with self.path.open("a") as f:
                f.write(dumps(rec) + "\n")
        if self.echo:
            print(console_line(rec, total_epochs), flush=True)


def _fmt(v, spec: str) -> str:
    return "n/a" if v is None else format(v, spec)


def console_line(rec: dict, total_epochs: int) -> str:
    """The one line printed per epoch."""
    return (f"epoch {rec['epoch']}/{total_epochs}: loss {_fmt(rec.get('train_loss'), '.3f')}  "
            f"test {_fmt(rec.get('test_acc'), '.4f')}  memorized wrong {_fmt(rec.get('memorized_wrong'), '.3f')}  "
            f"fit clean {_fmt(rec.get('fit_clean_acc'), '.3f')}  {_fmt(rec.get('images_per_s'), '.0f')} img/s")
