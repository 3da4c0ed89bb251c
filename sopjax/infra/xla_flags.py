"""XLA:CPU flags that sopjax turns on by default, and a record of the flags in force.

XLA reads ``XLA_FLAGS`` once, when JAX creates its first backend. ``import sopjax`` (and every
command-line entry point, through it) appends :data:`CPU_DEFAULTS` to ``XLA_FLAGS`` before
that happens, leaving out every flag whose name the user's own ``XLA_FLAGS`` already sets.
The flags only change how XLA:CPU compiles; GPU and TPU backends ignore them.

Why these flags: docs/speed.md (``python -m benchmarks.step_vs_pytorch``, quiet machine):
XLA's YNNPACK path runs the convolutions as dots, several times faster than its default
convolution emitter on this project's CPU step. Set ``SOPJAX_XLA_DEFAULTS=0`` to keep
XLA's own defaults (every run records which flags were in force in ``config.json``).
"""

from __future__ import annotations

import os
import sys

# name=value pairs, appended to XLA_FLAGS unless the name is already there
CPU_DEFAULTS = ("--xla_cpu_experimental_ynn_fusion_type=dot",)
OPT_OUT = "SOPJAX_XLA_DEFAULTS"

_applied: tuple = ()


def _names(flags: str) -> set:
    return {f.split("=", 1)[0] for f in flags.split() if f.startswith("--")}


def backends_started() -> bool:
    """True once JAX has created a backend (after which ``XLA_FLAGS`` no longer has an effect)."""
    bridge = sys.modules.get("jax._src.xla_bridge")
    return bool(bridge is not None and bridge.backends_are_initialized())


def with_defaults(flags: str) -> str:
    """``flags`` (an ``XLA_FLAGS`` string) with each flag of :data:`CPU_DEFAULTS` whose name it
    lacks appended; a flag the user set, to any value, is left as the user set it."""
    return " ".join([flags, *(f for f in CPU_DEFAULTS if f.split("=", 1)[0] not in _names(flags))]).strip()


def apply_defaults(environ=os.environ) -> tuple:
    """Append each flag of :data:`CPU_DEFAULTS` whose name ``environ["XLA_FLAGS"]`` lacks.

    Does nothing when ``environ[OPT_OUT]`` is ``"0"`` or JAX's backends already exist (the
    flags would not take effect, and the record must not claim they did).

    Returns:
      the flags appended by this call (a tuple of ``"--name=value"`` strings; empty if none).
    """
    global _applied
    if environ.get(OPT_OUT, "1") == "0" or backends_started():
        return ()
    current = environ.get("XLA_FLAGS", "")
    new = with_defaults(current)
    added = tuple(new[len(current):].split())
    if added:
        environ["XLA_FLAGS"] = new
        _applied = _applied + added
    return added


def in_force() -> dict:
    """What ``config.json`` records: ``XLA_FLAGS`` as XLA read it and the defaults sopjax added."""
    return {"XLA_FLAGS": os.environ.get("XLA_FLAGS", ""), "sopjax_defaults": list(_applied)}
