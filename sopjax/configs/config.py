"""Run configuration: a frozen dataclass of plain values, checked against the registries.

Epoch-based fields are in epochs; ``lr`` is the network's SGD learning rate on the
batch-mean loss; ``lr_u``/``lr_v`` are the plain-SGD learning rates of the
per-sample tables on the same batch-mean loss (the reference code's convention,
so Table A.1's "10" means 10 here).
"""

from __future__ import annotations

import dataclasses
import math

from sopjax import models
from sopjax.core import methods
from sopjax.data import noise
from sopjax.data.cifar_n import CIFAR10N, CIFAR100N


def _f(default, help: str):
    """A Config field with its CLI help (the CLI builds one flag per field from these)."""
    return dataclasses.field(default=default, metadata={"help": help})


@dataclasses.dataclass(frozen=True)
class Config:
    """One training run. Every field is a CLI flag of ``experiments.cifar`` (``--lr-u`` for ``lr_u``)."""

    dataset: str = _f("cifar10", "cifar10 or cifar100 (the library's fit also takes any other name for your own "
                                 "arrays: see sopjax.data.constants.input_stats)")
    label_set: str = _f("worst", "label noise: clean, sym, symflip, asym, asymclean, aggre, rand1-rand3, worst, "
                                 "noisy100 (CIFAR only; with your own arrays the labels are the LabelSet you pass)")
    noise_rate: float = _f(0.0, "synthetic noise rate in [0, 1] (sym, symflip, asym, asymclean only)")
    method: str = _f("sop", "training method (the registry, sopjax.core.methods)")
    sop_variant: str = _f("reference", "reference (the authors' code) or paper (Algorithm 1)")
    lambda_c: float = _f(0.9, "SOP+ weight of the consistency KL between weak and strong views (Table A.1)")
    lambda_b: float = _f(0.1, "SOP+ weight of the class-balance term (Table A.1)")
    lr_min: float = _f(0.0, "floor of the cosine schedules (PyTorch's eta_min)")
    val_size: int = _f(0, "validate on this many training images (at most N/10) for model selection (0 = none): "
                          "a class-balanced subset that is still trained on, as the authors do")
    val_holdout: bool = _f(False, "hold the validation images out of training, scored against their given labels, "
                                  "instead of the authors' subset of the training images")
    strong_view_norm: str = _f("authors", "constants that normalize SOP+'s strong view: authors (their loaders': "
                                          "CIFAR-10's for CIFAR-100 too) or weak (the weak view's)")
    arch: str = _f("preact_resnet18", "network: " + ", ".join(models.ARCHS))
    width: float = _f(1.0, "channel-width multiplier (1.0 = published widths)")
    dtype: str = _f("float32", "compute dtype of convolutions and matmuls: float32 or bfloat16 "
                               "(params, u, v, the loss and BN statistics stay float32)")
    epochs: int = _f(300, "passes over the training set")
    batch_size: int = _f(128, "images per step")
    lr: float = _f(0.02, "network SGD learning rate (batch-mean loss)")
    momentum: float = _f(0.9, "network SGD momentum (PyTorch convention, no dampening)")
    weight_decay: float = _f(5e-4, "network L2 weight decay, added to the gradient")
    schedule: str = _f(
        "cosine", "cosine (per step, to lr_min), cosine_epoch (stepped per epoch, the authors' SOP+) or multistep"
    )
    milestones: tuple = _f((40, 80), "epochs at which multistep multiplies lr by 0.1, comma-separated")
    lr_u: float = _f(10.0, "plain-SGD learning rate of the u table (batch-mean loss)")
    lr_v: float = _f(10.0, "plain-SGD learning rate of the v table (batch-mean loss)")
    init_std: float = _f(1e-8, "std of the N(0, std^2) init of u and v (Algorithm 1, line 2)")
    seed: int = _f(0, "fixes the synthetic labels, the init and the data order")
    subset: int = _f(0, "train on the first N training images only (0 = all)")
    eval_subset: int = _f(5000, "size of the seeded train subset memorization is measured on (0 = all)")
    detect_threshold: float = _f(0.5, "noise-score threshold for the precision/recall of detection")
    augment: bool = _f(True, "random crop and flip of the training images")
    test_subset: int = _f(0, "per-epoch test accuracy on this many seeded test images (0 = all); "
                             "the last epoch always uses the whole test set")
    uv_warmup_epochs: float = _f(0.0, "epochs during which lr_u and lr_v are 0 (the tables wait while the "
                                      "network learns the clean patterns), then they are constant")

    def validate(self) -> "Config":
        """Raise ValueError naming the flag and the fix for a field of the wrong type, out of
        range or NaN, an ``lr_min`` above ``lr``, or a label set that does not belong to the dataset."""
        _check_types(self)
        _check_choices(self)
        for name, (low, high, example) in RANGES.items():
            _check_range(name, getattr(self, name), low, high, example)
        if any(isinstance(m, bool) or not isinstance(m, int) or m < 1 for m in self.milestones):
            raise ValueError(f"--milestones must be positive epochs such as 40,80, got {self.milestones!r}")
        if self.lr_min > self.lr:  # the cosine would rise from lr to lr_min instead of decaying
            raise ValueError(f"--lr-min {self.lr_min} exceeds --lr {self.lr}; the schedule decays from lr to lr_min, "
                             f"so pass --lr-min at most {self.lr} (e.g. 0)")
        return self


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


_TYPES = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,), "tuple": (tuple,)}


def _check_types(cfg: Config) -> None:
    for f in dataclasses.fields(cfg):
        v, ok = getattr(cfg, f.name), _TYPES.get(f.type if isinstance(f.type, str) else f.type.__name__)
        if ok and (not isinstance(v, ok) or (isinstance(v, bool) and bool not in ok)):
            raise ValueError(f"{_flag(f.name)} must be of type {f.type}, got {v!r}")


def _check_choices(cfg: Config) -> None:
    if not cfg.dataset.strip():
        raise ValueError("--dataset must name the data, e.g. cifar10, cifar100 or your own dataset's name")
    methods.get(cfg.method)  # raises naming the registered methods
    if cfg.dataset in CIFAR:  # label_set says how CIFAR's labels are built; other data bring their own
        _check_label_set(cfg)
    noise.check_rate(cfg.noise_rate)
    if cfg.arch not in models.ARCHS:
        raise ValueError(f"unknown --arch {cfg.arch!r}; choose one of {models.ARCHS}")
    if cfg.schedule not in SCHEDULES:
        raise ValueError(f"--schedule must be one of {', '.join(SCHEDULES)}, got {cfg.schedule!r}")
    if cfg.sop_variant not in ("reference", "paper"):
        raise ValueError(f"--sop-variant must be 'reference' or 'paper', got {cfg.sop_variant!r}")
    if cfg.label_set == "asymclean" and cfg.dataset != "cifar10":
        raise ValueError("label set 'asymclean' exists for cifar10 only; pass --dataset cifar10 or --label-set asym")
    if cfg.strong_view_norm not in STRONG_VIEW_NORMS:
        raise ValueError(f"--strong-view-norm must be one of {', '.join(STRONG_VIEW_NORMS)}, "
                         f"got {cfg.strong_view_norm!r}")
    if cfg.dtype not in ("float32", "bfloat16"):
        raise ValueError(f"--dtype must be 'float32' or 'bfloat16', got {cfg.dtype!r}")


CIFAR = ("cifar10", "cifar100")


def _check_label_set(cfg: Config) -> None:
    if cfg.label_set not in noise.LABEL_SETS:
        raise ValueError(f"unknown label set {cfg.label_set!r}; choose one of {', '.join(noise.LABEL_SETS)}")
    owner = "cifar10" if cfg.label_set in CIFAR10N else "cifar100" if cfg.label_set in CIFAR100N else None
    if owner not in (None, cfg.dataset):
        raise ValueError(
            f"label set {cfg.label_set!r} exists for {owner} only; pass --dataset {owner} or another --label-set"
        )


# field: (lowest allowed, highest allowed, an example); a bound in a list is exclusive.
RANGES = {"width": ([0.0], math.inf, "0.125"), "epochs": (1, math.inf, "7"), "batch_size": (1, math.inf, "128"),
          "lr": ([0.0], math.inf, "0.02"), "momentum": (0.0, [1.0], "0.9"), "weight_decay": (0.0, math.inf, "5e-4"),
          "lr_u": (0.0, math.inf, "10"), "lr_v": (0.0, math.inf, "10"), "init_std": (0.0, math.inf, "1e-8"),
          "seed": (0, 2**32 - 1, "0"), "subset": (0, math.inf, "512 (0 = all)"),
          "eval_subset": (0, math.inf, "5000 (0 = all)"), "detect_threshold": (-math.inf, math.inf, "0.5")}


RANGES.update({"lambda_c": (0.0, math.inf, "0.9"), "lambda_b": (0.0, math.inf, "0.1"),
               "lr_min": (0.0, math.inf, "2e-4"), "val_size": (0, math.inf, "5000 (0 = none)")})
# cosine: per step from lr to lr_min; cosine_epoch: PyTorch's CosineAnnealingLR(T_max=epochs,
# eta_min=lr_min) stepped once per epoch (the authors' SOP+ runs); multistep: ×0.1 at milestones.
SCHEDULES = ("cosine", "cosine_epoch", "multistep")
# authors: sopjax.data.constants.strong_view_stats (their loaders); weak: the weak view's constants.
STRONG_VIEW_NORMS = ("authors", "weak")
RANGES.update({"test_subset": (0, math.inf, "2000 (0 = all)"), "uv_warmup_epochs": (0.0, math.inf, "5")})


def _check_range(name: str, v, low, high, example: str) -> None:
    lo_ok = v > low[0] if isinstance(low, list) else v >= low
    hi_ok = v < high[0] if isinstance(high, list) else v <= high
    if not (math.isfinite(v) and lo_ok and hi_ok):
        lo = f"> {low[0]}" if isinstance(low, list) else f">= {low}"
        hi = (
            ""
            if high == math.inf
            else f" and {'<' if isinstance(high, list) else '<='} {high[0] if isinstance(high, list) else high}"
        )
        raise ValueError(
            f"{_flag(name)} must be a finite number {lo}{hi}, got {v!r}; pass e.g. {_flag(name)} {example}"
        )
