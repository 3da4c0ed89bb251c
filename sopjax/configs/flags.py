"""Command-line flags from the Config: one flag per field (``lr_u`` → ``--lr-u``), with the
choices of the registries it is checked against."""

from __future__ import annotations

import argparse
import dataclasses

from sopjax import models
from sopjax.configs.config import SCHEDULES, STRONG_VIEW_NORMS, Config
from sopjax.core import methods
from sopjax.data import noise


def milestones(text: str) -> tuple:
    """argparse type of ``--milestones``: comma-separated epochs such as 40,80."""
    try:
        return tuple(int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated epochs such as 40,80, got {text!r}") from None


# Config field type (as written in the dataclass) -> argparse keyword arguments.
FLAG_KINDS = {"str": {"type": str}, "int": {"type": int}, "float": {"type": float},
              "tuple": {"type": milestones}, "bool": {"action": argparse.BooleanOptionalAction}}


def choices() -> dict[str, tuple]:
    """The allowed values of the Config fields that name something, read from the registries
    now (a method registered at run time is a choice)."""
    return {"method": methods.names(), "arch": models.ARCHS, "label_set": noise.LABEL_SETS,
            "dataset": ("cifar10", "cifar100"), "schedule": SCHEDULES, "sop_variant": ("reference", "paper"),
            "dtype": ("float32", "bfloat16"), "strong_view_norm": STRONG_VIEW_NORMS}


def add_config_flags(ap: argparse.ArgumentParser) -> None:
    """One flag per :class:`Config` field, default None (= the preset's value)."""
    allowed = choices()
    g = ap.add_argument_group("run configuration (any preset value can be overridden; see --show-preset NAME)")
    for f in dataclasses.fields(Config):
        kind = dict(FLAG_KINDS[f.type if isinstance(f.type, str) else f.type.__name__])
        if f.name in allowed:
            kind["choices"] = allowed[f.name]
        g.add_argument("--" + f.name.replace("_", "-"), dest=f.name, default=None,
                       help=f"{f.metadata.get('help', '')} (default: the preset's)", **kind)


def overrides(args: argparse.Namespace) -> dict:
    """The Config fields given on the command line, {field: value}."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(Config) if getattr(args, f.name) is not None}


def with_seed(cfg: Config, seed: int) -> Config:
    """``cfg`` with ``seed`` (one of ``--seeds``), validated as ``--seed`` is: a seed outside
    [0, 2**32) would otherwise wrap onto another. Raises ValueError naming ``--seeds``."""
    try:
        return dataclasses.replace(cfg, seed=seed).validate()
    except ValueError as e:
        raise ValueError(f"--seeds {seed}: {e}") from None
