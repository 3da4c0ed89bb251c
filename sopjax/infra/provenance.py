"""What produced a result: the code version recorded next to every run and figure."""

from __future__ import annotations

import pathlib
import subprocess


def code_version() -> str:
    """``git describe --always --dirty`` of this checkout, or 'unknown' outside git."""
    try:
        root = pathlib.Path(__file__).resolve().parents[2]
        return subprocess.run(["git", "describe", "--always", "--dirty"], cwd=root, capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"

