"""SOP+'s strong view on the device: AutoAugment's CIFAR-10 policy, crop and flip, normalize, Cutout 16.

Paper App. A.4 ("the default setting from unsupervised data augmentation"); the authors'
loaders (``data_loader/data_loaders.py`` of github.com/shengliu66/SOP) build the strong
view as ``Augmentation(autoaug_paper_cifar10())`` on the PIL image, then
``RandomCrop(32, padding=4)``, ``RandomHorizontalFlip``, ``ToTensor``, ``Normalize`` and
``CutoutDefault(16)`` (a zeroed square after normalization).

Here every step runs per sample inside the jitted step from one PRNG key. The policy is
the 25 sub-policies of Cubuk et al. (2019), "AutoAugment", App. Table 7 (CIFAR-10): a
sub-policy is drawn uniformly per image and each of its two operations is applied with
its probability. Magnitude levels 0–10 map to operation arguments as in the authors'
``autoaug2arsaug`` (from fast-autoaugment): shear ±0.3·l/10, translate ±l pixels, rotate
±⌊3l⌋°, solarize threshold 256 − ⌊25.6 l⌋, posterize to 4 − ⌊0.4 l⌋ bits,
enhancement factors 0.1 + 0.18 l; geometric operations take a random sign. Operations
follow PIL's (``ImageOps``/``ImageEnhance``): images stay integer-valued in [0, 255]
after every operation, affine maps use nearest-neighbour sampling with black fill.
dm-pix supplies the affine warps, rotation, solarize and the grayscale conversion.
"""

from __future__ import annotations

import dm_pix as pix
import jax
import jax.numpy as jnp
import numpy as np

from sopjax.pp.augment import augment, preprocess

OPS = ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "AutoContrast", "Invert", "Equalize",
       "Solarize", "Posterize", "Contrast", "Color", "Brightness", "Sharpness")

# Cubuk et al. (2019), App. Table 7: (operation, probability, magnitude level 0–10) pairs.
POLICY = (
    (("Invert", 0.1, 7), ("Contrast", 0.2, 6)),
    (("Rotate", 0.7, 2), ("TranslateX", 0.3, 9)),
    (("Sharpness", 0.8, 1), ("Sharpness", 0.9, 3)),
    (("ShearY", 0.5, 8), ("TranslateY", 0.7, 9)),
    (("AutoContrast", 0.5, 8), ("Equalize", 0.9, 2)),
    (("ShearY", 0.2, 7), ("Posterize", 0.3, 7)),
    (("Color", 0.4, 3), ("Brightness", 0.6, 7)),
    (("Sharpness", 0.3, 9), ("Brightness", 0.7, 9)),
    (("Equalize", 0.6, 5), ("Equalize", 0.5, 1)),
    (("Contrast", 0.6, 7), ("Sharpness", 0.6, 5)),
    (("Color", 0.7, 7), ("TranslateX", 0.5, 8)),
    (("Equalize", 0.3, 7), ("AutoContrast", 0.4, 8)),
    (("TranslateY", 0.4, 3), ("Sharpness", 0.2, 6)),
    (("Brightness", 0.9, 6), ("Color", 0.2, 6)),
    (("Solarize", 0.5, 2), ("Invert", 0.0, 3)),
    (("Equalize", 0.2, 0), ("AutoContrast", 0.6, 0)),
    (("Equalize", 0.2, 8), ("Equalize", 0.6, 4)),
    (("Color", 0.9, 9), ("Equalize", 0.6, 6)),
    (("AutoContrast", 0.8, 4), ("Solarize", 0.2, 8)),
    (("Brightness", 0.1, 3), ("Color", 0.7, 0)),
    (("Solarize", 0.4, 5), ("AutoContrast", 0.9, 3)),
    (("TranslateY", 0.9, 9), ("TranslateY", 0.7, 9)),
    (("AutoContrast", 0.9, 2), ("Solarize", 0.8, 3)),
    (("Equalize", 0.8, 8), ("Invert", 0.1, 3)),
    (("TranslateY", 0.7, 9), ("AutoContrast", 0.9, 1)),
)


def magnitude(op: str, level: float) -> float:
    """The argument of ``op`` at magnitude ``level`` (authors' ``autoaug2arsaug`` mapping)."""
    if op in ("ShearX", "ShearY"):
        return level * 0.3 / 10
    if op in ("TranslateX", "TranslateY"):
        return float(level)                     # pixels ("TranslateXAbs")
    if op == "Rotate":
        return float(int(level * 30 / 10))      # degrees
    if op == "Solarize":
        return float(256 - int(level * 256 / 10))
    if op == "Posterize":
        return float(4 - int(level * 4 / 10))   # bits kept ("Posterize2")
    if op in ("Contrast", "Color", "Brightness", "Sharpness"):
        return level * 1.8 / 10 + 0.1
    return 0.0                                  # AutoContrast, Invert, Equalize take none


def policy_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(op index (25, 2) int32, probability (25, 2) float32, argument (25, 2) float32)."""
    ops = np.array([[OPS.index(o) for o, _, _ in sub] for sub in POLICY], np.int32)
    prob = np.array([[p for _, p, _ in sub] for sub in POLICY], np.float32)
    arg = np.array([[magnitude(o, lv) for o, _, lv in sub] for sub in POLICY], np.float32)
    return ops, prob, arg


# ----------------------------------------------------------- operations on one image
# x: (H, W, 3) float32 holding integers in [0, 255]; v: the argument; returns the same.


def _affine(x, matrix, offset):
    # pix.affine_transform maps an output (row, col, channel) to the input coordinate matrix·o + offset.
    return pix.affine_transform(x, matrix, offset=offset, order=0, mode="constant", cval=0.0)


def shear_x(x, v):   # PIL (1, v, 0, 0, 1, 0): in_col = col + v·(row + ½) about the top-left corner
    m = jnp.array([[1.0, 0, 0], [v, 1, 0], [0, 0, 1]])
    return _affine(x, m, jnp.array([0.0, 0.5 * v, 0]))


def shear_y(x, v):
    m = jnp.array([[1.0, v, 0], [0, 1, 0], [0, 0, 1]])
    return _affine(x, m, jnp.array([0.5 * v, 0.0, 0]))


def translate_x(x, v):
    return _affine(x, jnp.eye(3), jnp.array([0.0, v, 0]))


def translate_y(x, v):
    return _affine(x, jnp.eye(3), jnp.array([v, 0.0, 0]))


def rotate(x, v):
    return pix.rotate(x, jnp.deg2rad(v), order=0, mode="constant", cval=0.0)


def auto_contrast(x, v):
    lo, hi = x.min(axis=(0, 1)), x.max(axis=(0, 1))
    scale = 255.0 / jnp.maximum(hi - lo, 1.0)
    return jnp.where(hi > lo, jnp.clip(jnp.floor((x - lo) * scale), 0, 255), x)


def invert(x, v):
    return 255.0 - x


def _equalize_channel(c):
    """PIL's ImageOps.equalize on one (H, W) channel."""
    h = jnp.zeros(256, jnp.float32).at[c.astype(jnp.int32).ravel()].add(1.0)
    step = jnp.floor((c.size - h[c.max().astype(jnp.int32)]) / 255.0)
    lut = jnp.floor((jnp.floor(step / 2) + jnp.cumsum(h) - h) / jnp.maximum(step, 1.0))
    return jnp.where(step > 0, jnp.clip(lut, 0, 255)[c.astype(jnp.int32)], c)


def equalize(x, v):
    return jax.vmap(_equalize_channel, in_axes=2, out_axes=2)(x)


def solarize(x, v):
    return jnp.round(pix.solarize(x / 255.0, v / 255.0) * 255.0)


def posterize(x, v):
    q = 2.0 ** (8 - v)
    return jnp.floor(x / q) * q


def _blend(degenerate, x, f):
    """PIL's Image.blend(degenerate, x, f), truncated to uint8 values."""
    return jnp.floor(jnp.clip(degenerate + f * (x - degenerate), 0, 255))


def _gray(x):
    return jnp.round(pix.rgb_to_grayscale(x / 255.0) * 255.0)   # PIL "L" (ITU-R 601-2), rounded


def contrast(x, v):
    return _blend(jnp.floor(jnp.mean(_gray(x)) + 0.5), x, v)


def color(x, v):
    return _blend(_gray(x), x, v)


def brightness(x, v):
    return _blend(jnp.zeros_like(x), x, v)


def sharpness(x, v):
    """Blend with PIL's SMOOTH filter ([[1,1,1],[1,5,1],[1,1,1]]/13), which keeps the border."""
    H, W = x.shape[:2]
    p = jnp.pad(x, ((1, 1), (1, 1), (0, 0)))
    s = sum(p[i:i + H, j:j + W] for i in range(3) for j in range(3)) + 4.0 * x
    smooth = jnp.round(s / 13.0)
    inner = jnp.zeros((H, W, 1), bool).at[1:-1, 1:-1].set(True)
    return _blend(jnp.where(inner, smooth, x), x, v)


BRANCHES = (shear_x, shear_y, translate_x, translate_y, rotate, auto_contrast, invert, equalize, solarize,
            posterize, contrast, color, brightness, sharpness)
_SIGNED = np.array([op in ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate") for op in OPS])


def _augment_one(key, x, ops, prob, arg):
    k_sub, k_apply, k_sign = jax.random.split(key, 3)
    sub = jax.random.randint(k_sub, (), 0, len(POLICY))
    apply = jax.random.uniform(k_apply, (2,)) < prob[sub]
    sign = jnp.where(jax.random.bernoulli(k_sign, 0.5, (2,)), -1.0, 1.0)
    for stage in range(2):
        op = ops[sub, stage]
        v = arg[sub, stage] * jnp.where(jnp.asarray(_SIGNED)[op], sign[stage], 1.0)
        x = jnp.where(apply[stage], jax.lax.switch(op, BRANCHES, x, v), x)
    return x


def autoaugment(rng, x):
    """AutoAugment's CIFAR-10 policy, one sub-policy drawn per image.

    Args: rng, a PRNG key; x (B, H, W, 3) uint8. Returns (B, H, W, 3) uint8.
    """
    ops, prob, arg = (jnp.asarray(a) for a in policy_arrays())
    keys = jax.random.split(rng, x.shape[0])
    out = jax.vmap(_augment_one, in_axes=(0, 0, None, None, None))(keys, x.astype(jnp.float32), ops, prob, arg)
    return jnp.clip(out, 0, 255).astype(jnp.uint8)


def cutout(rng, x, size: int = 16):
    """Zero one size×size square per image (rows/cols [c − size/2, c + size/2) with a uniform
    centre c, clipped at the border: the authors' ``CutoutDefault``). x (B, H, W, C) float."""
    B, H, W = x.shape[:3]
    cy, cx = (jax.random.randint(k, (B, 1), 0, n) for k, n in zip(jax.random.split(rng), (H, W)))
    rows = (jnp.arange(H) >= cy - size // 2) & (jnp.arange(H) < cy + size // 2)
    cols = (jnp.arange(W) >= cx - size // 2) & (jnp.arange(W) < cx + size // 2)
    hole = rows[:, :, None] & cols[:, None, :]
    return jnp.where(hole[..., None], jnp.zeros((), x.dtype), x)


def strong_view(rng, x, mean, std, cutout_size: int = 16):
    """SOP+'s strong view: autoaugment → crop (pad 4) + flip → (x/255 − mean)/std → cutout.

    Args: rng, a PRNG key; x (B, H, W, 3) uint8; mean, std (3,) float32 in [0, 1] units.
    Returns (B, H, W, 3) float32.
    """
    k_aa, k_crop, k_cut = jax.random.split(rng, 3)
    x = augment(k_crop, autoaugment(k_aa, x))
    return cutout(k_cut, preprocess(x, mean, std), cutout_size)
