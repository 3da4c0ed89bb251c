"""Layers with PyTorch's defaults, so a network here trains as the authors' PyTorch one does:
conv kernels kaiming_uniform(a=√5) = U(±1/√fan_in); Linear weight and bias U(±1/√fan_in);
:class:`BatchNorm` is PyTorch's ``BatchNorm2d`` (momentum 0.1 on the new batch, eps 1e-5,
unbiased variance in the running estimate)."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

# PyTorch's default conv/linear weight init (kaiming_uniform with a=√5) is
# variance_scaling(1/3, fan_in, uniform): bound √(3·(1/3)/fan_in) = 1/√fan_in.
torch_kernel_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


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


def conv(features, kernel, dtype, strides=1, padding=0, name=None):
    return nn.Conv(features, kernel, strides=strides, padding=padding, use_bias=False, dtype=dtype,
                   param_dtype=jnp.float32, kernel_init=torch_kernel_init, name=name)


def _batch_stats(xf):
    axes = tuple(range(xf.ndim - 1))
    mean = jnp.mean(xf, axes)
    return mean, jnp.mean(jnp.square(xf - mean), axes)


@jax.custom_vjp
def normalize(x, scale, bias, epsilon):
    """Training-mode BatchNorm of ``x`` (..., C) with its own batch statistics: ``(x − mean) /
    √(var + ε) · scale + bias``, statistics reduced in float32, output in ``x.dtype``.

    Its gradient is the closed form (two per-channel sums, one elementwise pass); in bfloat16
    XLA:CPU runs it faster than the autodiff of the same expression (docs/speed.md)."""
    return _normalize_fwd(x, scale, bias, epsilon)[0]


def _normalize_fwd(x, scale, bias, epsilon):
    xf = x.astype(jnp.float32)
    mean, var = _batch_stats(xf)
    rstd = jax.lax.rsqrt(var + epsilon)
    mul = scale * rstd
    y = x * mul.astype(x.dtype) + (bias - mean * mul).astype(x.dtype)
    return y, (x, mean, rstd, scale, epsilon)


def _normalize_bwd(res, dy):
    x, mean, rstd, scale, epsilon = res
    axes, n = tuple(range(x.ndim - 1)), x.size // x.shape[-1]
    dyf, xhat = dy.astype(jnp.float32), (x.astype(jnp.float32) - mean) * rstd
    dbias, dscale = jnp.sum(dyf, axes), jnp.sum(dyf * xhat, axes)
    dx = (scale * rstd / n) * (n * dyf - dbias - xhat * dscale)
    return dx.astype(x.dtype), dscale, dbias, jnp.zeros_like(epsilon)


normalize.defvjp(_normalize_fwd, _normalize_bwd)


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
            mean, var = _batch_stats(x.astype(jnp.float32))
            if not self.is_initializing():
                m, n = self.momentum, x.size // C
                ra_mean.value = (1.0 - m) * ra_mean.value + m * jax.lax.stop_gradient(mean)
                ra_var.value = (1.0 - m) * ra_var.value + m * jax.lax.stop_gradient(var) * (n / max(n - 1, 1))
            if jnp.dtype(self.dtype) != jnp.float32:
                # bfloat16: the closed-form gradient converts once per layer where autodiff's
                # converts at every term; 1.2x faster step at width 1/2 on a CPU, no gain in
                # float32 (docs/speed.md). The statistics above feed only the running estimates here.
                return normalize(x.astype(self.dtype), scale, bias, jnp.float32(self.epsilon))
        mul = scale * jax.lax.rsqrt(var + self.epsilon)
        return x.astype(self.dtype) * mul.astype(self.dtype) + (bias - mean * mul).astype(self.dtype)


def bn(train: bool, dtype, name=None):
    return BatchNorm(use_running_average=not train, dtype=dtype, name=name)
