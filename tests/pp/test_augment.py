"""The on-device pipeline: crop-and-flip augmentation and the epoch's data order."""

import jax
import jax.numpy as jnp
import numpy as np

from sopjax.data import constants as datasets_constants
from sopjax.pp import augment as pipeline


def test_crop_covers_all_nine_shifts_and_flip_mirrors_about_half():
    # One bright pixel at (16, 10): after a crop with shift (dy, dx) ∈ [−4, 4]² it lands at
    # (16 + dy, 10 + dx), or at column 31 − (10 + dx) when the image is also flipped.
    img = np.zeros((512, 32, 32, 3), np.uint8)
    img[:, 16, 10] = 255
    out = np.asarray(pipeline.augment(jax.random.PRNGKey(0), jnp.asarray(img)))
    assert out.shape == img.shape and out.dtype == np.uint8
    rows, cols = [], []
    for o in out:
        r, c = np.argwhere(o[..., 0] == 255)[0]
        rows.append(r)
        cols.append(c)
    assert set(rows) == set(range(12, 21))
    flipped = np.array(cols) > 16
    assert set(np.array(cols)[~flipped]) == set(range(6, 15))
    assert set(31 - np.array(cols)[flipped]) == set(range(6, 15))
    assert 0.4 < flipped.mean() < 0.6


def test_crop_pads_by_an_eighth_of_the_side_at_any_size():
    # A folder run at 64×64 shifts by up to 64 // 8 = 8 pixels, as its host crop did (and the
    # folder path's views are now cropped here); a fixed padding of 4 would reach ±4 only.
    img = np.zeros((1024, 64, 48, 3), np.uint8)
    img[:, 32, 10] = 255
    out = np.asarray(pipeline.augment(jax.random.PRNGKey(1), jnp.asarray(img)))
    pos = np.array([np.argwhere(o[..., 0] == 255)[0] for o in out])
    assert set(pos[:, 0] - 32) == set(range(-8, 9))
    dx = np.where(pos[:, 1] > 23, 47 - pos[:, 1], pos[:, 1]) - 10   # undo the flip (column c ↔ 47 − c)
    assert set(dx) <= set(range(-6, 7)) and {-6, 6} <= set(dx)


def test_epoch_batches_are_a_fresh_permutation_each_epoch():
    b = np.asarray(pipeline.epoch_batches(jax.random.PRNGKey(0), 3, 100, 32))
    assert b.shape == (3, 32) and len(set(b.ravel())) == 96 and b.max() < 100
    assert not np.array_equal(b, np.asarray(pipeline.epoch_batches(jax.random.PRNGKey(0), 4, 100, 32)))
    np.testing.assert_array_equal(b, np.asarray(pipeline.epoch_batches(jax.random.PRNGKey(0), 3, 100, 32)))


def test_preprocess_normalizes_uint8_and_passes_floats():
    x = np.full((1, 2, 2, 3), 255, np.uint8)
    mean, std = datasets_constants.normalization_stats("cifar10")
    np.testing.assert_allclose(np.asarray(pipeline.preprocess(jnp.asarray(x), mean, std))[0, 0, 0],
                               (1.0 - mean) / std, rtol=1e-6)
    f = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(np.asarray(pipeline.preprocess(jnp.asarray(f), mean, std)), f)
