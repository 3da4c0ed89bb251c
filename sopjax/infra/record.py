"""A run's ``config.json``: what it holds, and how a resumed run is checked against it.

The record is built by the trainer (config, seed, code and library versions, data size,
provenance and fingerprint); this module writes it once, and on a resume checks that the
config and the data fingerprint are unchanged, notes the resuming code version in
``resumed_with`` and, with ``allow_lr_change``, the new learning rates in ``lr_changes``.
"""

from __future__ import annotations

import json
import pathlib

import flax
import jax
import jaxlib
import numpy as np
import optax
import orbax.checkpoint

from sopjax.infra import xla_flags
from sopjax.infra.errors import RunDirError, warn
from sopjax.infra.jsonio import atomic_write, dumps

LR_FIELDS = ("lr", "lr_u", "lr_v")


def versions() -> dict:
    """Versions of the libraries a run's numbers depend on, JAX's backend and the XLA flags in force."""
    return {"jax": jax.__version__, "jaxlib": jaxlib.__version__, "flax": flax.__version__,
            "optax": optax.__version__, "orbax-checkpoint": orbax.checkpoint.__version__,
            "numpy": np.__version__, "backend": jax.default_backend(), "xla_flags": xla_flags.in_force()}


def read_json(p: pathlib.Path) -> dict:
    """The JSON object in ``p``; raises RunDirError naming the file if it does not parse."""
    try:
        return json.loads(p.read_text())
    except ValueError as e:
        raise RunDirError(f"{p} is not valid JSON ({e}); restore it, or use a new --workdir") from None


def effective_config(record: dict) -> dict:
    """The recorded config with the learning rates of the last ``lr_changes`` entry applied."""
    cfg = dict(record["config"])
    for change in record.get("lr_changes", []):
        cfg.update({k: change[k] for k in LR_FIELDS})
    return cfg


def _check_same_config(path, old: dict, new: dict, allow_lr_change: bool, finished: bool = False) -> None:
    diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if allow_lr_change:
        diff = [k for k in diff if k not in LR_FIELDS]
    if diff:
        what = "; ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in diff)
        lr_only = set(diff) <= set(LR_FIELDS) and not finished
        hint = " (or add --allow-lr-change to resume with new learning rates)" if lr_only else ""
        raise RunDirError(f"{path} holds a run with a different config ({what}); use a new --workdir{hint}, "
                          "or delete it to start over")


def _check_same_data(path, old: dict, new: dict) -> None:
    if "data_fingerprint" not in old:
        warn(f"{path}/config.json has no data fingerprint (written by an older version); cannot check the data")
        return
    changed = [k for k in new["data_fingerprint"] if old["data_fingerprint"].get(k) != new["data_fingerprint"][k]]
    if changed:
        src = (
            f" (recorded source: {old.get('data_source')}; now: {new.get('data_source')})"
            if "data_source" in new
            else ""
        )
        raise RunDirError(f"{path} was trained on different data: the {', '.join(changed)} changed{src}; "
                          "use the original data (--data-dir), or a new --workdir")


def merge_resume(path, old: dict, record: dict, allow_lr_change: bool, last_epoch) -> dict:
    """Check ``record`` against the original ``old``; return ``old`` with this resumption noted."""
    before, now = effective_config(old), json.loads(dumps(record["config"]))
    _check_same_config(path, before, now, allow_lr_change)
    _check_same_data(path, old, record)
    old["resumed_with"] = old.get("resumed_with", []) + [record["code_version"]]
    if any(before[k] != now[k] for k in LR_FIELDS):
        old["lr_changes"] = old.get("lr_changes", []) + [
            {"after_epoch": last_epoch, **{k: now[k] for k in LR_FIELDS}, "code_version": record["code_version"]}]
    return old


def check_finished(path, old: dict, record: dict, allow_lr_change: bool) -> None:
    """Check a re-run of the finished run ``old`` (config.json) against ``record``: the same
    config and data, or RunDirError. New learning rates are refused even with
    ``allow_lr_change``: they would train nothing, yet be recorded as a change."""
    before, now = effective_config(old), json.loads(dumps(record["config"]))
    _check_same_config(path, before, now, allow_lr_change, finished=True)
    changed = [k for k in LR_FIELDS if before.get(k) != now.get(k)]
    if changed:
        what = "; ".join(f"{k}: {before.get(k)!r} -> {now.get(k)!r}" for k in changed)
        raise RunDirError(f"{path} holds a finished run of {before.get('epochs')} epochs; new learning rates ({what}) "
                          "would train nothing. Re-run with the recorded rates, or use a new --workdir")
    _check_same_data(path, old, record)


def write_record(path: pathlib.Path, record: dict, allow_lr_change: bool, steps: list[int]) -> str | None:
    """Write or update ``path/config.json`` given the run's checkpoint ``steps``; returns its
    previous text (None if there was none)."""
    cfg_path = path / "config.json"
    before = cfg_path.read_text() if cfg_path.exists() else None
    if cfg_path.exists() and (steps or (path / "summary.json").exists()):
        record = merge_resume(path, read_json(cfg_path), record, allow_lr_change, steps[-1] if steps else None)
    elif cfg_path.exists():
        # No epoch of that run was kept: its record describes nothing, and this run replaces it.
        old = read_json(cfg_path) if cfg_path.stat().st_size else {}
        if old.get("config") != json.loads(dumps(record["config"])):
            warn(f"{cfg_path} belonged to a run that kept no epoch; replacing it")
    atomic_write(cfg_path, dumps(record, indent=1))
    return before
