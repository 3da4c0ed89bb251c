"""The on-device input pipeline: data order, augmentation and normalization.

The whole training set lives on the device as uint8 (airbench's design); every
function here is traced inside the jitted step, so no image crosses the host
during an epoch.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from sopjax.core import rng as streams


def preprocess(x, mean, std):
    """uint8 images (B, H, W, 3) → float32 ``(x/255 − mean)/std`` (mean, std (3,) in units of
    [0, 1] intensity, :mod:`sopjax.data.constants`); float inputs (features) pass through
    unchanged, cast to float32."""
    if x.dtype == jnp.uint8:
        return (x.astype(jnp.float32) / 255.0 - mean) / std
    return x.astype(jnp.float32)


def augment(rng, x):
    """Random crop from a zero-padding of size // 8 on each side (torchvision's
    ``RandomCrop(32, padding=4)`` at 32×32) and a horizontal flip with probability ½, drawn per
    image on the device.

    Args: rng, a PRNG key; x (B, H, W, C) uint8. Returns the same shape and dtype.
    """
    k_crop, k_flip = jax.random.split(rng)
    B, H, W, C = x.shape
    ph, pw = H // 8, W // 8
    padded = jnp.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
    # offsets 0..2p = shifts of −p..+p
    off = jax.random.randint(k_crop, (B, 2), 0, jnp.array([2 * ph + 1, 2 * pw + 1]))
    x = jax.vmap(lambda img, o: jax.lax.dynamic_slice(img, (o[0], o[1], 0), (H, W, C)))(padded, off)
    flip = jax.random.bernoulli(k_flip, 0.5, (B,))
    return jnp.where(flip[:, None, None, None], x[:, :, ::-1], x)


def epoch_key(rng, epoch):
    """The key of an epoch's data order: ``fold_in(fold_in(rng, SHUFFLE), epoch)`` (:mod:`sopjax.core.rng`)."""
    return jax.random.fold_in(jax.random.fold_in(rng, streams.SHUFFLE), epoch)


def epoch_batches(rng, epoch: int, num_train: int, batch_size: int) -> jax.Array:
    """(steps, batch_size) int32 dataset indices of one epoch, a permutation drawn from
    ``fold_in(fold_in(rng, SHUFFLE), epoch)`` (:mod:`sopjax.core.rng`).

    The last ``num_train % batch_size`` samples of each permutation are dropped (a
    different set every epoch), so every step has a full batch and one compiled shape.
    """
    steps = num_train // batch_size
    perm = jax.random.permutation(epoch_key(rng, epoch), num_train)
    return perm[: steps * batch_size].reshape(steps, batch_size).astype(jnp.int32)
