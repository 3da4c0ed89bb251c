"""Strict JSON and atomic file writes."""

from __future__ import annotations

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
