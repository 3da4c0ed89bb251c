"""One run per directory: an OS file lock (``filelock``) released when the process dies."""

from __future__ import annotations

import os
import pathlib

import filelock

from sopjax.infra.errors import RunDirError


def lock(path: pathlib.Path) -> filelock.FileLock:
    """Hold ``path/.lock`` and write this process's PID to ``path/.lock.pid``, or raise
    RunDirError naming the holder's PID."""
    held = filelock.FileLock(str(path / ".lock"), timeout=0)
    try:
        held.acquire()
    except filelock.Timeout:
        try:
            holder = (path / ".lock.pid").read_text().strip() or "unknown"
        except OSError:
            holder = "unknown"
        raise RunDirError(f"{path} is in use by another run (PID {holder}); wait for it to end or stop it, "
                          "or use another --workdir") from None
    (path / ".lock.pid").write_text(f"{os.getpid()}\n")
    return held
