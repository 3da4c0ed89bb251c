"""AutoAugment CIFAR-10 policy and Cutout on the device (sopjax/autoaugment.py) against PIL."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps

from sopjax.pp import autoaugment as aa


def _image(seed=0, H=32):
    """A smooth-ish random RGB image, not spanning the full 0..255 range (so autocontrast acts)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(40, 200, (H // 4, H // 4, 3))
    return (np.kron(base, np.ones((4, 4, 1))) + rng.integers(-20, 20, (H, H, 3))).clip(0, 255).astype(np.uint8)


def _ours(fn, img, v):
    return np.asarray(jax.jit(fn)(jnp.asarray(img, jnp.float32), jnp.float32(v))).astype(np.uint8)


PIL_OPS = {
    "Invert": (aa.invert, lambda im, v: ImageOps.invert(im)),
    "AutoContrast": (aa.auto_contrast, lambda im, v: ImageOps.autocontrast(im)),
    "Equalize": (aa.equalize, lambda im, v: ImageOps.equalize(im)),
    "Solarize": (aa.solarize, lambda im, v: ImageOps.solarize(im, v)),
    "Posterize": (aa.posterize, lambda im, v: ImageOps.posterize(im, int(v))),
    "Brightness": (aa.brightness, lambda im, v: ImageEnhance.Brightness(im).enhance(v)),
    "Color": (aa.color, lambda im, v: ImageEnhance.Color(im).enhance(v)),
    "Contrast": (aa.contrast, lambda im, v: ImageEnhance.Contrast(im).enhance(v)),
    "Sharpness": (aa.sharpness, lambda im, v: ImageEnhance.Sharpness(im).enhance(v)),
    "TranslateX": (aa.translate_x, lambda im, v: im.transform(im.size, Image.AFFINE, (1, 0, v, 0, 1, 0))),
    "TranslateY": (aa.translate_y, lambda im, v: im.transform(im.size, Image.AFFINE, (1, 0, 0, 0, 1, v))),
    "ShearX": (aa.shear_x, lambda im, v: im.transform(im.size, Image.AFFINE, (1, v, 0, 0, 1, 0))),
    "ShearY": (aa.shear_y, lambda im, v: im.transform(im.size, Image.AFFINE, (1, 0, 0, v, 1, 0))),
    "Rotate": (aa.rotate, lambda im, v: im.rotate(v)),
}


@pytest.mark.parametrize("name", sorted(PIL_OPS))
def test_operation_matches_pil(name):
    ours_fn, pil_fn = PIL_OPS[name]
    img = _image(1)
    # every argument the policy uses for this op, with its sign flipped for the geometric ones
    args = sorted({float(aa.magnitude(o, lv)) for sub in aa.POLICY for o, _, lv in sub if o == name})
    args += [-a for a in args if name in ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate") and a]
    for v in args:
        ours = _ours(ours_fn, img, v).astype(int)
        theirs = np.asarray(pil_fn(Image.fromarray(img), int(v) if name in ("TranslateX", "TranslateY") else v)).astype(
            int
        )
        diff = np.abs(ours - theirs)
        # rounding of the grayscale/blend arithmetic may differ by one level; a rotation's
        # nearest-neighbour sampling may pick the neighbour on a few boundary pixels
        assert diff.max() <= (255 if name == "Rotate" else 1), f"{name}({v}): max diff {diff.max()}"
        assert np.mean(diff > 0) <= (0.03 if name == "Rotate" else 0.02), f"{name}({v}): {np.mean(diff > 0):.3f} differ"


def test_policy_table_and_magnitudes():
    assert len(aa.POLICY) == 25 and all(len(s) == 2 for s in aa.POLICY)
    assert {o for s in aa.POLICY for o, _, _ in s} <= set(aa.OPS)
    # the authors' level → argument mapping (autoaug2arsaug), spot values
    assert aa.magnitude("Solarize", 2) == 205 and aa.magnitude("Solarize", 8) == 52
    assert aa.magnitude("Posterize", 7) == 2 and aa.magnitude("Rotate", 2) == 6
    assert aa.magnitude("TranslateY", 9) == 9 and aa.magnitude("ShearY", 8) == pytest.approx(0.24)
    assert aa.magnitude("Contrast", 6) == pytest.approx(1.18) and aa.magnitude("Color", 0) == pytest.approx(0.1)


def test_autoaugment_is_per_sample_and_keyed():
    x = jnp.asarray(np.stack([_image(2)] * 64))
    f = jax.jit(aa.autoaugment)
    out = np.asarray(f(jax.random.PRNGKey(0), x))
    assert out.shape == x.shape and out.dtype == np.uint8
    distinct = {o.tobytes() for o in out}
    assert len(distinct) > 20                       # one draw per image, not one per batch
    assert np.mean([(o == np.asarray(x[0])).all() for o in out]) > 0.05   # some images left as they were
    np.testing.assert_array_equal(out, np.asarray(f(jax.random.PRNGKey(0), x)))
    assert not np.array_equal(out, np.asarray(f(jax.random.PRNGKey(1), x)))


def test_cutout_zeroes_one_clipped_square_per_image():
    x = jnp.ones((200, 32, 32, 3))
    out = np.asarray(jax.jit(aa.cutout)(jax.random.PRNGKey(0), x))
    holes = out[..., 0] == 0
    assert (out == 0).sum(-1).max() in (0, 3) and holes.any(axis=(1, 2)).all()
    area = holes.sum(axis=(1, 2))
    assert area.max() == 256 and area.min() >= 64          # 16×16, clipped to ≥ 8×8 at a corner
    rows, cols = holes.any(2), holes.any(1)
    assert (rows.sum(1) * cols.sum(1) == area).all()       # each hole is one axis-aligned rectangle
    assert (holes[:, 0, :].any(1)).mean() > 0.1            # centres are uniform over the image, edges included


def test_strong_view_shape_and_normalization():
    x = jnp.asarray(np.stack([_image(3)] * 8))
    mean, std = np.full(3, 0.5, np.float32), np.full(3, 0.25, np.float32)
    out = np.asarray(jax.jit(aa.strong_view)(jax.random.PRNGKey(0), x, mean, std))
    assert out.shape == x.shape and out.dtype == np.float32
    assert out.min() >= -2.0 - 1e-6 and out.max() <= 2.0 + 1e-6   # (x/255 − 0.5)/0.25 ∈ [−2, 2]
    assert (out == 0).all(-1).sum(axis=(1, 2)).min() >= 64        # each has its cutout hole
