"""Networks: the authors' CIFAR ResNets and an MLP, by name (:func:`make_model`)."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from sopjax.models.mlp import MLP
from sopjax.models.resnet import BasicBlock, CifarResNet, PreActBlock

ARCHS = ("preact_resnet18", "preact_resnet18_he", "resnet34", "mlp")


def make_model(arch: str, num_classes: int, width: float = 1.0, dtype: Any = jnp.float32) -> nn.Module:
    """Build ``arch`` (one of :data:`ARCHS`) with compute dtype ``dtype`` (params stay float32).

    Raises ValueError for an unknown name.
    """
    if arch == "preact_resnet18":
        return CifarResNet(PreActBlock, (2, 2, 2, 2), num_classes, width, stem_bn=True, final_bn=False,
                           block_kwargs=(("shortcut_from", "preact"),), dtype=dtype)
    if arch == "preact_resnet18_he":
        return CifarResNet(PreActBlock, (2, 2, 2, 2), num_classes, width, stem_bn=False, final_bn=True,
                           block_kwargs=(("shortcut_from", "x"),), dtype=dtype)
    if arch == "resnet34":
        return CifarResNet(BasicBlock, (3, 4, 6, 3), num_classes, width, stem_bn=True, final_bn=False, dtype=dtype)
    if arch == "mlp":
        return MLP(hidden=(max(8, int(512 * width)),) * 2, num_classes=num_classes, dtype=dtype)
    raise ValueError(f"unknown architecture {arch!r}; choose one of {ARCHS}")
