"""A run directory: its config record, its per-epoch metrics and its checkpoints.

Layout of ``workdir``:
- ``config.json``: the config, seed, code and library versions, data provenance and the
  data fingerprint (:mod:`sopjax.infra.record`);
- ``metrics.jsonl``: one strict-JSON line per finished epoch (:mod:`sopjax.infra.metrics`);
- ``checkpoints/<epoch>/``: orbax checkpoints of the whole TrainState (a streamed run adds
  its grain loader's position), the last two kept; one that cannot be read is moved to
  ``corrupt-checkpoints/<epoch>/``;
- ``.lock`` and ``.lock.pid`` (:mod:`sopjax.infra.lock`).

Several processes (:mod:`sopjax.infra.distributed`): every process opens the same
``workdir`` (shared storage, as orbax needs), but only process 0 locks it and writes the
files above; the checkpoints are saved and restored by all processes together.
"""

from __future__ import annotations

import dataclasses
import pathlib
import shutil

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

from sopjax.infra import lock as lock_lib
from sopjax.infra import runstate
from sopjax.infra.errors import RunDirError, warn
from sopjax.infra.jsonio import atomic_write
from sopjax.infra.metrics import trim_metrics
from sopjax.infra.preflight import check_writable
from sopjax.infra.record import check_finished, read_json, write_record


def is_primary() -> bool:
    """True in process 0 of a multi-process run (and in a single-process run): the process
    that writes run files."""
    return jax.process_index() == 0


def _from_primary(flag: bool) -> bool:
    """Process 0's ``flag`` on every process, so all of them act together (one process's
    error would otherwise leave the others waiting in orbax's barriers)."""
    if jax.process_count() == 1:
        return flag
    return bool(multihost_utils.broadcast_one_to_all(np.int32(flag)))


def checkpoint_steps(path: pathlib.Path) -> list[int]:
    """The epochs of the checkpoints in ``path/checkpoints``, ascending."""
    d = path / "checkpoints"
    return sorted(int(p.name) for p in d.iterdir() if p.name.isdigit()) if d.is_dir() else []


def _checkpointer(path: pathlib.Path) -> ocp.CheckpointManager:
    # Synchronous saves: the loop waits for every save anyway, and a failed write then raises
    # at once instead of after the async barrier's timeout.
    return ocp.CheckpointManager(path.resolve() / "checkpoints", options=ocp.CheckpointManagerOptions(
        max_to_keep=2, create=True, enable_async_checkpointing=False))


def _args(state, loader, restore: bool):
    """orbax arguments for the state, and the grain iterator's position when ``loader`` is given."""
    state_args = (ocp.args.StandardRestore if restore else ocp.args.StandardSave)(state)
    if loader is None:
        return state_args
    import grain  # streaming input only (an optional dependency)

    pos = (grain.checkpoint.CheckpointRestore if restore else grain.checkpoint.CheckpointSave)(loader)
    return ocp.args.Composite(state=state_args, loader=pos)


@dataclasses.dataclass
class RunDir:
    """An opened, locked run directory; :meth:`open` checks it holds this run (or nothing).

    Use as a context manager: leaving it releases the lock, and on an error before any
    checkpoint it removes the directory if this RunDir created it (nothing is lost).
    """

    path: pathlib.Path
    manager: ocp.CheckpointManager | None = None
    start_epoch: int = 0
    created: bool = False
    lock: object = None
    record_before: str | None = None  # config.json as it was before open, put back if this run keeps nothing
    steps_before: tuple = ()
    primary: bool = True  # process 0: locks the directory and writes its files
    summary: dict | None = None  # summary.json of a run that had finished before this open

    @property
    def finished(self) -> bool:
        """The run had finished before this open: nothing to train, and nothing is written."""
        return self.summary is not None

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

        Before writing anything, checks the directory's files against each other
        (:func:`sopjax.infra.runstate.inspect`) and against ``record``. A run that had
        finished is opened read-only: :attr:`finished` is true and :attr:`summary` holds
        its summary.json.

        Raises RunDirError (a ValueError) if the directory or its files cannot be written,
        another process holds it, its files disagree (a lost or replaced file), or it holds
        a run with a different config (the learning rates may differ with
        ``allow_lr_change``, unless the run finished) or different data.
        """
        path = check_writable(workdir)
        primary = is_primary()
        run, error = cls(path, created=primary and not path.exists(), primary=primary), None
        if primary:
            try:
                path.mkdir(parents=True, exist_ok=True)
                run.lock = lock_lib.lock(path)
                run.steps_before = tuple(checkpoint_steps(path))
                run._prepare(record, allow_lr_change)
            except BaseException as e:
                error = e
        if _from_primary(error is not None):
            run.close(failed=True)
            if error is not None:
                raise error
            raise RunDirError(f"process 0 could not open {path} (its error line says why); fix that and re-run "
                              "every process")
        if _from_primary(run.finished):
            run.summary = run.summary or read_json(path / "summary.json")
            return run
        try:
            run.manager = _checkpointer(path)
        except BaseException:
            run.close(failed=True)
            raise
        return run

    def _prepare(self, record: dict, allow_lr_change: bool) -> None:
        """Check the directory as a whole, then record this run (or note that it finished)."""
        state = runstate.inspect(self.path, self.steps_before)
        if state.finished:
            check_finished(self.path, state.record, record, allow_lr_change)
            self.summary = state.summary
        else:
            self.record_before = write_record(self.path, record, allow_lr_change, list(self.steps_before))

    def finished_summary(self) -> dict:
        """The summary of a run that had finished (:attr:`finished`), saying so in one line."""
        if self.primary:
            print(f"{self.path} holds a finished run of {self.summary.get('epochs')} epochs: nothing to train, "
                  "its files are left as they are")
        return self.summary

    def __enter__(self) -> "RunDir":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(failed=exc_type is not None)

    def close(self, failed: bool = False) -> None:
        """Release the lock; after a failure before any checkpoint, remove a directory this run created."""
        if self.manager is not None:
            self.manager.close()
        kept_nothing = failed and self.lock is not None and tuple(checkpoint_steps(self.path)) == self.steps_before
        if kept_nothing and self.created and not self.steps_before:
            shutil.rmtree(self.path, ignore_errors=True)
        elif kept_nothing and self.record_before is not None:
            atomic_write(self.path / "config.json", self.record_before)  # this attempt left no trace to record
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
        steps = sorted(self.manager.all_steps(), reverse=True)
        for step in steps:
            try:
                out = self.manager.restore(step, args=_args(state, loader, restore=True))
            except Exception as e:  # orbax/TensorStore raise many types for a damaged checkpoint
                self._set_aside(step, e)
                continue
            self.start_epoch = int(step)
            print(f"resuming {self.path} from the checkpoint after epoch {step}")
            if self.primary:
                trim_metrics(self.metrics_path, self.start_epoch)
            return out if loader is None else out["state"]
        if steps:
            raise RunDirError(f"no checkpoint in {self.path / 'checkpoints'} can be read (see the warnings); "
                              "use a new --workdir, or delete the directory to start over")
        if self.primary:
            trim_metrics(self.metrics_path, 0)
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
        self.manager.save(epoch, args=_args(state, loader, restore=False))
        self.manager.wait_until_finished()
