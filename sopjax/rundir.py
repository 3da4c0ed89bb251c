"""A run directory: its config record, its per-epoch metrics and its checkpoints.

Layout of ``workdir``:
- ``config.json``: the config, seed, code and library versions, data provenance
  (written once; a resume appends its code version to ``resumed_with``);
- ``metrics.jsonl``: one strict-JSON line per finished epoch (non-finite → ``null``);
- ``checkpoints/<epoch>/``: orbax checkpoints of the whole TrainState, the last two kept.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib

from sopjax.config import Config
from sopjax.provenance import code_version


def _versions() -> dict:
    import flax
    import jax
    import jaxlib
    import numpy as np
    import optax
    import orbax.checkpoint

    return {"jax": jax.__version__, "jaxlib": jaxlib.__version__, "flax": flax.__version__,
            "optax": optax.__version__, "orbax-checkpoint": orbax.checkpoint.__version__,
            "numpy": np.__version__, "backend": jax.default_backend()}


def strict(obj):
    """``obj`` with every non-finite float replaced by None, so ``json.dumps`` writes strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict(v) for v in obj]
    return obj


def dumps(obj, **kw) -> str:
    """Strict JSON (``allow_nan=False`` after :func:`strict`)."""
    return json.dumps(strict(obj), allow_nan=False, **kw)


def config_record(cfg: Config, labels, num_train: int, steps_per_epoch: int, extra: dict | None = None) -> dict:
    """What ``config.json`` holds: config, seed, code version, library versions, data size and noise."""
    return {"config": dataclasses.asdict(cfg), "seed": cfg.seed, "code_version": code_version(),
            "versions": _versions(), "num_train": num_train, "steps_per_epoch": steps_per_epoch,
            "realized_noise_rate": labels.realized_rate, **(extra or {})}


@dataclasses.dataclass
class RunDir:
    """An opened run directory; :meth:`open` checks it holds this run (or nothing)."""

    path: pathlib.Path
    manager: object  # orbax CheckpointManager
    start_epoch: int

    @property
    def metrics_path(self) -> pathlib.Path:
        return self.path / "metrics.jsonl"

    @property
    def last_epoch(self) -> int | None:
        """The epoch of the newest checkpoint, or None."""
        return self.manager.latest_step()

    @classmethod
    def open(cls, workdir, record: dict) -> "RunDir":
        """Create or reopen ``workdir`` for the run described by ``record``.

        Raises ValueError if it holds a run with a different config. On reopening, the
        original record is kept and metric lines after the newest checkpoint are dropped.
        """
        path = pathlib.Path(workdir)
        path.mkdir(parents=True, exist_ok=True)
        _write_record(path / "config.json", record)
        run = cls(path, _checkpointer(path), 0)
        run.start_epoch = int(run.manager.latest_step() or 0)
        _trim_metrics(run.metrics_path, run.start_epoch)
        return run

    def restore(self, state):
        """The newest checkpoint restored into ``state``'s structure, or ``state`` itself."""
        import orbax.checkpoint as ocp

        if not self.start_epoch:
            return state
        print(f"resuming {self.path} from the checkpoint after epoch {self.start_epoch}")
        return self.manager.restore(self.start_epoch, args=ocp.args.StandardRestore(state))

    def save(self, epoch: int, state) -> None:
        """Checkpoint ``state`` as ``epoch`` and wait until it is on disk (orbax saves atomically)."""
        import orbax.checkpoint as ocp

        self.manager.save(epoch, args=ocp.args.StandardSave(state))
        self.manager.wait_until_finished()


def _write_record(cfg_path: pathlib.Path, record: dict) -> None:
    if cfg_path.exists():
        old = json.loads(cfg_path.read_text())
        if old.get("config") != json.loads(dumps(record["config"])):
            raise ValueError(f"{cfg_path.parent} holds a run with a different config; use a new --workdir "
                             "(or delete it to start over)")
        # Keep the original record; note the code version of every resumption.
        old["resumed_with"] = old.get("resumed_with", []) + [record["code_version"]]
        record = old
    cfg_path.write_text(dumps(record, indent=1))


def _trim_metrics(path: pathlib.Path, last_epoch: int) -> None:
    lines = path.read_text().splitlines() if path.exists() else []
    keep = [l for l in lines if l.strip() and json.loads(l)["epoch"] <= last_epoch]
    path.write_text("".join(l + "\n" for l in keep))


def _checkpointer(path: pathlib.Path):
    import orbax.checkpoint as ocp

    return ocp.CheckpointManager(path.resolve() / "checkpoints",
                                 options=ocp.CheckpointManagerOptions(max_to_keep=2, create=True))


class MetricWriter:
    """Appends one strict-JSON line per epoch to ``metrics.jsonl`` and echoes a console line."""

    def __init__(self, path: pathlib.Path, echo: bool = True):
        self.path, self.echo = path, echo
        self.history = [json.loads(l) for l in path.read_text().splitlines() if l.strip()] if path.exists() else []

    def write(self, rec: dict, total_epochs: int) -> None:
        rec = strict(rec)
        self.history.append(rec)
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
