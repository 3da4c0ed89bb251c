"""Checks that a run directory can be written, made before any data are loaded."""

from __future__ import annotations

import os
import pathlib
import tempfile

from sopjax.infra.errors import RunDirError

RUN_FILES = ("config.json", "metrics.jsonl", "steps.jsonl", "summary.json", "noise_scores.npz", ".lock", ".lock.pid")


def probe_dir(d: pathlib.Path, fix: str) -> None:
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
    probe_dir(parent, "choose a writable --workdir")
    ckpt = path / "checkpoints"
    if ckpt.exists() and not ckpt.is_dir():
        raise RunDirError(f"{ckpt} is not a directory; move it away or use a new --workdir")
    if ckpt.is_dir():
        probe_dir(ckpt, f"make {ckpt} writable or use a new --workdir")
    for name in RUN_FILES:
        f = path / name
        if f.exists():
            try:
                with open(f, "r+b"):
                    pass
            except OSError as e:
                raise RunDirError(f"cannot write {f} ({e.strerror}); make it writable or use a new --workdir") from None
    return path
