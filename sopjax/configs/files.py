"""A :class:`Config` to and from JSON without loss, and from a file: the ``config.json`` a run
wrote, a JSON object of Config fields, or a Python file that returns a Config.

JSON has no tuple, so ``milestones`` is written as a list and read back as a tuple; float
fields are written by Python's shortest round-trip repr, so every value comes back equal
(``from_json(to_json(cfg)) == cfg``).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import runpy
from typing import Mapping

from sopjax.configs.config import Config

FIELDS = {f.name: f for f in dataclasses.fields(Config)}


def _type(name: str) -> str:
    t = FIELDS[name].type
    return t if isinstance(t, str) else t.__name__


def to_dict(cfg: Config) -> dict:
    """``cfg`` as a JSON-ready dict of its fields (tuples as lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}


def _coerce(name: str, value):
    kind = _type(name)
    if kind == "tuple" and isinstance(value, list):
        return tuple(value)
    if kind == "float" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def from_dict(fields: Mapping, where: str = "the config") -> Config:
    """The validated Config of ``fields`` ({field name: value}); fields left out keep
    Config's defaults.

    Raises:
      ValueError: naming ``where`` and the field, for an unknown field or a bad value.
    """
    unknown = sorted(set(fields) - set(FIELDS))
    if unknown:
        raise ValueError(f"{where}: unknown Config field(s) {', '.join(unknown)}; remove them (the fields are "
                         f"listed by python -m experiments.cifar --help)")
    cfg = Config(**{k: _coerce(k, v) for k, v in fields.items()})
    try:
        return cfg.validate()
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None


def to_json(cfg: Config) -> str:
    """``cfg`` as a JSON object (strict JSON: a Config holds no NaN)."""
    return json.dumps(to_dict(cfg), indent=1, allow_nan=False)


def from_json(text: str, where: str = "the config") -> Config:
    """The Config of a JSON object of fields (:func:`to_json`), or of a run's ``config.json``
    (its "config" entry: the config the run started with). Raises ValueError naming ``where``."""
    try:
        obj = json.loads(text)
    except ValueError as e:
        raise ValueError(f"{where} is not valid JSON ({e})") from None
    if isinstance(obj, dict) and isinstance(obj.get("config"), dict):
        obj = obj["config"]
    if not isinstance(obj, dict):
        raise ValueError(f"{where} must hold a JSON object of Config fields, got {type(obj).__name__}")
    return from_dict(obj, where)


def _from_python(path: pathlib.Path) -> Config:
    """Run the Python file ``path`` and take ``get_config()`` or its variable ``config``."""
    ns = runpy.run_path(str(path))
    cfg = ns["get_config"]() if callable(ns.get("get_config")) else ns.get("config")
    if not isinstance(cfg, Config):
        raise ValueError(f"{path} must define get_config() returning a sopjax Config (or a variable config = "
                         f"Config(...)); got {type(cfg).__name__}")
    return cfg.validate()


def load(path) -> Config:
    """The Config in file ``path``.

    Args:
      path: a ``.py`` file defining ``get_config()`` (or ``config``) that returns a
        :class:`Config`; anything else is read as JSON: a run's ``config.json`` (so
        ``--config runs/X/config.json`` re-runs X) or an object of Config fields.

    Returns:
      The validated Config.

    Raises:
      ValueError: one line naming the file, for a missing file, bad JSON, an unknown field
        or a bad value.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise ValueError(f"--config {path} does not exist; pass a run's config.json or a Python config file")
    if path.suffix == ".py":
        return _from_python(path)
    return from_json(path.read_text(), str(path))
