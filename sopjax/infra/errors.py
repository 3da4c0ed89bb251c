"""Errors and warnings shared across the library, importable without the I/O stack.

Each error's message is one line that names the file or flag and the fix; the CLIs print
it as ``error: …`` and exit 2 (:mod:`sopjax.infra.cli`).
"""

from __future__ import annotations

import sys


class DataError(RuntimeError):
    """A dataset is missing or corrupt. The message names the file and the fix."""


class RunDirError(ValueError):
    """The run directory cannot be used as asked; the message names the fix."""


class TrainingDiverged(FloatingPointError):
    """A trained quantity became NaN or inf; the run directory keeps its last checkpoint."""


def warn(msg: str) -> None:
    """One ``warning:`` line on stderr."""
    print(f"warning: {msg}", file=sys.stderr, flush=True)
