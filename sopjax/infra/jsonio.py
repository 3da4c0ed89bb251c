"""Strict JSON and atomic file writes."""

from __future__ import annotations

import contextlib
import json
import math
import os
import pathlib

import numpy as np


def strict(obj):
    """``obj`` with every non-finite float replaced by None (numpy scalars become Python
    floats), so ``json.dumps`` writes strict JSON."""
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


def atomic_write(p: pathlib.Path, text: str) -> None:
    """Write ``text`` to ``p`` through a temporary file and a rename: a reader (or a kill)
    sees the old file or the new one, never half of one."""
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, p)


@contextlib.contextmanager
def atomic_path(p: pathlib.Path):
    """Yield a temporary path beside ``p`` (same suffix, so writers that infer the format
    from it still work) to write into; renamed to ``p`` on success, removed on an error or
    an interruption, so ``p`` is never left half-written."""
    p = pathlib.Path(p)
    tmp = p.with_name(f".{p.stem}.partial{p.suffix}")
    try:
        yield tmp
        os.replace(tmp, p)
    finally:
        if tmp.exists():
            tmp.unlink()
