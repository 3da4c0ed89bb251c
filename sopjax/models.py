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

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

# PyTorch's default conv/linear weight init (kaiming_uniform with a=√5) is
# variance_scaling(1/3, fan_in, uniform): bound √(3·(1/3)/fan_in) = 1/√fan_in.
torch_kernel_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def _ch(c: int, width: float) -> int:
    return max(4, int(round(c * width)))


def _torch_bias_init(fan_in: int):
    """PyTorch's Linear bias init U(±1/√fan_in); the bias initializer sees only (K,), so bind fan_in."""
    bound = 1.0 / float(fan_in) ** 0.5

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def torch_dense(features: int, fan_in: int, dtype=jnp.float32, name=None) -> nn.Dense:
    """``nn.Dense`` with PyTorch's ``nn.Linear`` init: weight and bias U(±1/√fan_in)."""
    return nn.Dense(features, dtype=dtype, param_dtype=jnp.float32, kernel_init=torch_kernel_init,
                    bias_init=_torch_bias_init(fan_in), name=name)


def _conv(features, kernel, dtype, strides=1, padding=0, name=None):
    return nn.Conv(features, kernel, strides=strides, padding=padding, use_bias=False, dtype=dtype,
                   param_dtype=jnp.float32, kernel_init=torch_kernel_init, name=name)


class BatchNorm(nn.Module):
    """PyTorch's ``BatchNorm2d`` over the last axis, as the authors trained with it.

    Training mode normalizes with the batch mean and *biased* variance and updates the
    running estimates as ``r ← (1 − momentum)·r + momentum·stat`` (PyTorch's convention:
    momentum 0.1 weighs the new batch), with the *unbiased* variance (× n/(n − 1), n =
    elements per channel) in the running variance — flax's ``nn.BatchNorm`` keeps the
    biased one, a drift tests/parity/ catches. Statistics are reduced in float32; the
    output is in ``dtype``. Variables: params scale, bias (C,); batch_stats mean, var (C,).
    """

    use_running_average: bool
    momentum: float = 0.1
    epsilon: float = 1e-5
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        C = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (C,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (C,), jnp.float32)
        ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((C,), jnp.float32))
        ra_var = self.variable("batch_stats", "var", lambda: jnp.ones((C,), jnp.float32))
        if self.use_running_average:
            mean, var = ra_mean.value, ra_var.value
        else:
            xf, axes, n = x.astype(jnp.float32), tuple(range(x.ndim - 1)), x.size // C
            mean = jnp.mean(xf, axes)
            var = jnp.mean(jnp.square(xf - mean), axes)
            if not self.is_initializing():
                m = self.momentum
                ra_mean.value = (1.0 - m) * ra_mean.value + m * mean
                ra_var.value = (1.0 - m) * ra_var.value + m * var * (n / max(n - 1, 1))
        mul = scale * jax.lax.rsqrt(var + self.epsilon)
        return x.astype(self.dtype) * mul.astype(self.dtype) + (bias - mean * mul).astype(self.dtype)


def _bn(train: bool, dtype, name=None):
    return BatchNorm(use_running_average=not train, dtype=dtype, name=name)


class PreActBlock(nn.Module):
    """Pre-activation basic block. ``shortcut_from`` is "preact" (the authors': the shortcut,
    identity or 1×1 projection, takes ``relu(bn1(x))``) or "x" (He et al.: identity takes x)."""

    features: int
    stride: int = 1
    shortcut_from: str = "preact"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool):
        out = nn.relu(_bn(train, self.dtype, "bn1")(x))
        shortcut = out if self.shortcut_from == "preact" else x
        if self.stride != 1 or x.shape[-1] != self.features:
            shortcut = _conv(self.features, (1, 1), self.dtype, strides=self.stride, name="shortcut")(out)
        out = _conv(self.features, (3, 3), self.dtype, strides=self.stride, padding=1, name="conv1")(out)
        out = nn.relu(_bn(train, self.dtype, "bn2")(out))
        out = _conv(self.features, (3, 3), self.dtype, padding=1, name="conv2")(out)
        return out + shortcut


class BasicBlock(nn.Module):
    """Post-activation basic block (He et al. 2016a; the authors' ``ResNet_Zoo.BasicBlock``)."""

    features: int
    stride: int = 1
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool):
        out = _conv(self.features, (3, 3), self.dtype, strides=self.stride, padding=1, name="conv1")(x)
        out = nn.relu(_bn(train, self.dtype, "bn1")(out))
        out = _conv(self.features, (3, 3), self.dtype, padding=1, name="conv2")(out)
        out = _bn(train, self.dtype, "bn2")(out)
        shortcut = x
        if self.stride != 1 or x.shape[-1] != self.features:
            shortcut = _conv(self.features, (1, 1), self.dtype, strides=self.stride, name="shortcut_conv")(x)
            shortcut = _bn(train, self.dtype, "shortcut_bn")(shortcut)
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
        x = _conv(_ch(64, self.width), (3, 3), self.dtype, padding=1, name="conv1")(x.astype(self.dtype))
        if self.stem_bn:
            x = nn.relu(_bn(train, self.dtype, "bn1")(x))
        for i, n in enumerate(self.stages):
            for j in range(n):
                x = self.block(_ch(64 * 2**i, self.width), stride=2 if (j == 0 and i > 0) else 1,
                               dtype=self.dtype, name=f"layer{i + 1}_{j}", **dict(self.block_kwargs))(x, train)
        if self.final_bn:
            x = nn.relu(_bn(train, self.dtype, "bn_final")(x))
        # Global mean = the authors' avg_pool2d(4) on the 4×4 map of a 32×32 input.
        x = jnp.mean(x.astype(jnp.float32), axis=(1, 2)).astype(self.dtype)
        return torch_dense(self.num_classes, x.shape[-1], self.dtype, "linear")(x).astype(jnp.float32)


class MLP(nn.Module):
    """A plain ReLU MLP on flattened inputs (used by the fast method-level test)."""

    hidden: Sequence[int] = (512, 512)
    num_classes: int = 10
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = True):
        x = x.reshape((x.shape[0], -1)).astype(self.dtype)
        for h in self.hidden:
            x = nn.relu(torch_dense(h, x.shape[-1], self.dtype)(x))
        return torch_dense(self.num_classes, x.shape[-1], self.dtype)(x).astype(jnp.float32)


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
