"""CIFAR networks in Flax: the authors' PreActResNet18, He et al.'s PreActResNet18, ResNet-34, an MLP.

- ``preact_resnet18`` is the network of the SOP authors' code (``model/PreResNet.py`` of
  github.com/shengliu66/SOP, the DivideMix lineage): stem conv → BN → ReLU; in every
  block the shortcut (identity or 1×1 projection) takes ``relu(bn1(x))``, not ``x``; no
  BN/ReLU before the pool. 11,171,274 parameters at K = 10.
- ``preact_resnet18_he`` is He et al. (2016)'s pre-activation net: bare conv stem, the
  identity shortcut takes ``x``, a final BN → ReLU before the pool. 11,172,170 at K = 10.
- ``resnet34`` is the authors' ``ResNet_Zoo.ResNet(BasicBlock, [3, 4, 6, 3])``.

``width`` multiplies every channel count (1.0 = the published 64-128-256-512), so a
small variant runs on a CPU. Initialization and BatchNorm follow PyTorch's defaults:
conv kernels kaiming_uniform(a=√5) = U(±1/√fan_in); Linear weight and bias
U(±1/√fan_in); :class:`BatchNorm` is PyTorch's (momentum 0.1 on the new batch, eps 1e-5,
unbiased variance in the running estimate). tests/parity/ checks all of it step by step
against a PyTorch twin (``benchmarks/torch_twin.py``).

Inputs are float (B, H, W, 3) NHWC (H = W = 32 for CIFAR; any size the strides divide
works, the pool is global); outputs are (B, num_classes) float32 logits. ``dtype`` is the
compute dtype of activations, convolutions and matmuls (e.g. ``jnp.bfloat16``); the
parameters stay float32 and BatchNorm statistics are reduced in float32.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from sopjax.models.layers import bn, conv, torch_dense


def _ch(c: int, width: float) -> int:
    return max(4, int(round(c * width)))


class PreActBlock(nn.Module):
    """Pre-activation basic block. ``shortcut_from`` is "preact" (the authors': the shortcut,
    identity or 1×1 projection, takes ``relu(bn1(x))``) or "x" (He et al.: identity takes x)."""

    features: int
    stride: int = 1
    shortcut_from: str = "preact"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool):
        out = nn.relu(bn(train, self.dtype, "bn1")(x))
        shortcut = out if self.shortcut_from == "preact" else x
        if self.stride != 1 or x.shape[-1] != self.features:
            shortcut = conv(self.features, (1, 1), self.dtype, strides=self.stride, name="shortcut")(out)
        out = conv(self.features, (3, 3), self.dtype, strides=self.stride, padding=1, name="conv1")(out)
        out = nn.relu(bn(train, self.dtype, "bn2")(out))
        out = conv(self.features, (3, 3), self.dtype, padding=1, name="conv2")(out)
        return out + shortcut


class BasicBlock(nn.Module):
    """Post-activation basic block (He et al. 2016a; the authors' ``ResNet_Zoo.BasicBlock``)."""

    features: int
    stride: int = 1
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool):
        out = conv(self.features, (3, 3), self.dtype, strides=self.stride, padding=1, name="conv1")(x)
        out = nn.relu(bn(train, self.dtype, "bn1")(out))
        out = conv(self.features, (3, 3), self.dtype, padding=1, name="conv2")(out)
        out = bn(train, self.dtype, "bn2")(out)
        shortcut = x
        if self.stride != 1 or x.shape[-1] != self.features:
            shortcut = conv(self.features, (1, 1), self.dtype, strides=self.stride, name="shortcut_conv")(x)
            shortcut = bn(train, self.dtype, "shortcut_bn")(shortcut)
        return nn.relu(out + shortcut)


class CifarResNet(nn.Module):
    """ResNet for 32×32 inputs: 3×3 stem, four stages, global average pool, linear head.

    stem_bn: conv → BN → ReLU stem (authors' nets, ResNet-34) instead of a bare conv.
    final_bn: BN → ReLU before the pool (He et al.'s pre-activation net only).
    block_kwargs: extra fields for ``block`` (e.g. ``shortcut_from``).
    """

    block: type
    stages: Sequence[int]
    num_classes: int = 10
    width: float = 1.0
    stem_bn: bool = True
    final_bn: bool = False
    block_kwargs: tuple = ()
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = True):
        # Names follow the authors' PyTorch modules (conv1, bn1, layer1.0, …, linear).
        x = conv(_ch(64, self.width), (3, 3), self.dtype, padding=1, name="conv1")(x.astype(self.dtype))
        if self.stem_bn:
            x = nn.relu(bn(train, self.dtype, "bn1")(x))
        for i, n in enumerate(self.stages):
            for j in range(n):
                x = self.block(_ch(64 * 2**i, self.width), stride=2 if (j == 0 and i > 0) else 1,
                               dtype=self.dtype, name=f"layer{i + 1}_{j}", **dict(self.block_kwargs))(x, train)
        if self.final_bn:
            x = nn.relu(bn(train, self.dtype, "bn_final")(x))
        # Global mean = the authors' avg_pool2d(4) on the 4×4 map of a 32×32 input.
        x = jnp.mean(x.astype(jnp.float32), axis=(1, 2)).astype(self.dtype)
        return torch_dense(self.num_classes, x.shape[-1], self.dtype, "linear")(x).astype(jnp.float32)
