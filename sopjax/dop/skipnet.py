"""The deep-image-prior network: an encoder-decoder with skip connections (Ulyanov, Vedaldi,
Lempitsky, "Deep image prior", CVPR 2018; the DOP authors' ``denoising.py``)."""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


class SkipNet(nn.Module):
    """DIP encoder-decoder with skip connections (Ulyanov et al.'s ``skip``).

    Input (B, H, W, C_in) float32, H and W divisible by 2**len(channels); output
    (B, H, W, out_channels) float32 in (0, 1). Normalization is per-channel over
    (H, W), i.e. PyTorch BatchNorm in training mode at batch size 1, which is how
    DIP always runs it.
    """

    channels: Sequence[int] = (32, 32, 32, 32, 32)
    skip_channels: int = 4
    out_channels: int = 1

    @nn.compact
    def __call__(self, z):
        return jax.nn.sigmoid(nn.Conv(self.out_channels, (1, 1))(self._level(z, 0)))

    def _block(self, x, feats, kernel, stride=1):
        x = nn.Conv(feats, (kernel, kernel), strides=stride, padding="REFLECT" if kernel > 1 else "VALID")(x)
        return nn.leaky_relu(nn.InstanceNorm()(x), 0.2)

    def _level(self, x, i):
        c = self.channels[i]
        deep = self._block(x, c, 3, stride=2)
        deep = self._block(deep, c, 3)
        if i + 1 < len(self.channels):
            deep = self._level(deep, i + 1)
        b, h, w, k = deep.shape
        deep = jax.image.resize(deep, (b, 2 * h, 2 * w, k), "bilinear")
        skip = self._block(x, self.skip_channels, 1)
        x = nn.InstanceNorm()(jnp.concatenate([skip, deep], axis=-1))
        x = self._block(x, c, 3)
        return self._block(x, c, 1)
