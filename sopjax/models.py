"""CIFAR networks in Flax: PreActResNet18, ResNet-34 (3×3 stem, no max-pool), an MLP.

``width`` multiplies every channel count (1.0 = the published 64-128-256-512), so a
small variant runs on a CPU. BatchNorm matches PyTorch's defaults: PyTorch momentum
0.1 (Flax ``momentum=0.9``, the weight on the old statistics) and eps 1e-5.
Inputs are float (B, 32, 32, 3) NHWC; outputs are (B, num_classes) float32 logits.
"""

from __future__ import annotations

import functools
from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

BatchNorm = functools.partial(nn.BatchNorm, momentum=0.9, epsilon=1e-5)
# PyTorch's default conv init (kaiming_uniform with a=√5) is variance_scaling(1/3, fan_in, uniform).
conv_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")
Conv = functools.partial(nn.Conv, use_bias=False, kernel_init=conv_init)


def _ch(c: int, width: float) -> int:
    return max(4, int(round(c * width)))


class PreActBlock(nn.Module):
    features: int
    stride: int = 1

    @nn.compact
    def __call__(self, x, train: bool):
        out = nn.relu(BatchNorm(use_running_average=not train)(x))
        shortcut = x
        if self.stride != 1 or x.shape[-1] != self.features:
            shortcut = Conv(self.features, (1, 1), strides=self.stride)(out)
        out = Conv(self.features, (3, 3), strides=self.stride, padding=1)(out)
        out = nn.relu(BatchNorm(use_running_average=not train)(out))
        out = Conv(self.features, (3, 3), padding=1)(out)
        return out + shortcut


class BasicBlock(nn.Module):
    features: int
    stride: int = 1

    @nn.compact
    def __call__(self, x, train: bool):
        out = Conv(self.features, (3, 3), strides=self.stride, padding=1)(x)
        out = nn.relu(BatchNorm(use_running_average=not train)(out))
        out = Conv(self.features, (3, 3), padding=1)(out)
        out = BatchNorm(use_running_average=not train)(out)
        shortcut = x
        if self.stride != 1 or x.shape[-1] != self.features:
            shortcut = Conv(self.features, (1, 1), strides=self.stride)(x)
            shortcut = BatchNorm(use_running_average=not train)(shortcut)
        return nn.relu(out + shortcut)


class CifarResNet(nn.Module):
    """ResNet for 32×32 inputs: 3×3 stem, four stages, global average pool, linear head."""

    block: type
    stages: Sequence[int]
    num_classes: int = 10
    width: float = 1.0
    preact: bool = True

    @nn.compact
    def __call__(self, x, train: bool = True):
        x = Conv(_ch(64, self.width), (3, 3), padding=1)(x)
        if not self.preact:
            x = nn.relu(BatchNorm(use_running_average=not train)(x))
        for i, n in enumerate(self.stages):
            for j in range(n):
                x = self.block(_ch(64 * 2**i, self.width), stride=2 if (j == 0 and i > 0) else 1)(x, train)
        if self.preact:
            x = nn.relu(BatchNorm(use_running_average=not train)(x))
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.num_classes, dtype=jnp.float32)(x)


class MLP(nn.Module):
    """A plain ReLU MLP on flattened inputs (used by the fast method-level test)."""

    hidden: Sequence[int] = (512, 512)
    num_classes: int = 10

    @nn.compact
    def __call__(self, x, train: bool = True):
        x = x.reshape((x.shape[0], -1))
        for h in self.hidden:
            x = nn.relu(nn.Dense(h)(x))
        return nn.Dense(self.num_classes)(x)


ARCHS = ("preact_resnet18", "resnet34", "mlp")


def make_model(arch: str, num_classes: int, width: float = 1.0) -> nn.Module:
    """Build ``arch`` (one of :data:`ARCHS`). Raises ValueError for an unknown name."""
    if arch == "preact_resnet18":
        return CifarResNet(PreActBlock, (2, 2, 2, 2), num_classes, width, preact=True)
    if arch == "resnet34":
        return CifarResNet(BasicBlock, (3, 4, 6, 3), num_classes, width, preact=False)
    if arch == "mlp":
        return MLP(hidden=(max(8, int(512 * width)),) * 2, num_classes=num_classes)
    raise ValueError(f"unknown architecture {arch!r}; choose one of {ARCHS}")
