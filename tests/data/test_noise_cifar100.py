"""CIFAR-100 asymmetric noise as the SOP authors define it (in-block class-pair swaps)."""

import numpy as np

from sopjax.data import noise


def test_cifar100_asym_swaps_one_pair_per_block_at_the_rate():
    clean = np.repeat(np.arange(100), 500).astype(np.int32)      # CIFAR-100's 500 per class
    ls = noise.make_label_set("asym", clean, 100, 0.4, seed=5)
    changed = ls.noisy != clean
    for block in range(20):
        classes = np.arange(5 * block, 5 * block + 5)
        moved = [c for c in classes if changed[clean == c].any()]
        assert len(moved) == 2                                     # exactly one pair per block
        a, b = moved
        assert set(ls.noisy[(clean == a) & changed]) == {b} and set(ls.noisy[(clean == b) & changed]) == {a}
        for c in (a, b):                                           # Bernoulli(0.4) per sample
            assert abs(changed[clean == c].mean() - 0.4) < 0.08
    assert abs(ls.realized_rate - 0.16) < 0.01                     # 2 of 5 classes × 0.4
    again = noise.make_label_set("asym", clean, 100, 0.4, seed=5)
    np.testing.assert_array_equal(again.noisy, ls.noisy)
    assert not np.array_equal(noise.make_label_set("asym", clean, 100, 0.4, seed=6).noisy, ls.noisy)
