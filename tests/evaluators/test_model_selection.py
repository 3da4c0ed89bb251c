"""Noisy-label validation split and test accuracy at the best validation epoch."""


import numpy as np

from sopjax.data import arrays as arrays_lib
from sopjax.data import noise
from sopjax.evaluators import report


def _arrays(N=200):
    rng = np.random.default_rng(0)
    clean = rng.integers(0, 10, N).astype(np.int32)
    labels = noise.make_label_set("sym", clean, 10, 0.5, seed=1)
    x = np.arange(N, dtype=np.uint8)[:, None, None, None] * np.ones((1, 2, 2, 3), np.uint8)  # row i holds i
    return arrays_lib.Arrays(x, labels, x[:10], clean[:10], 10)


def test_split_is_disjoint_seeded_capped_and_keeps_the_noisy_labels():
    a = _arrays()
    s = arrays_lib.split_validation(a, 5000, seed=3)
    assert len(s.x_val) == 20 and len(s.x_train) == 180            # capped at N // 10
    val_rows, train_rows = s.x_val[:, 0, 0, 0].astype(int), s.x_train[:, 0, 0, 0].astype(int)
    assert not set(val_rows) & set(train_rows) and len(set(val_rows) | set(train_rows)) == 200
    np.testing.assert_array_equal(s.y_val, a.labels.noisy[val_rows])   # given labels, not the clean ones
    assert (s.y_val != a.labels.clean[val_rows]).any()
    np.testing.assert_array_equal(s.labels.noisy, a.labels.noisy[train_rows])
    np.testing.assert_array_equal(s.labels.clean, a.labels.clean[train_rows])
    again = arrays_lib.split_validation(a, 5000, seed=3)
    np.testing.assert_array_equal(again.x_val, s.x_val)
    assert not np.array_equal(arrays_lib.split_validation(a, 5000, seed=4).x_val, s.x_val)
    assert arrays_lib.split_validation(a, 0, seed=3) is a and arrays_lib.split_validation(s, 10, seed=3) is s


def test_model_selection_reports_test_acc_at_the_best_val_epoch():
    hist = [{"test_acc": t, "val_acc": v, "test_size": 10} for t, v in [(0.5, 0.3), (0.9, 0.4), (0.6, 0.6), (0.7, 0.5)]]
    sel = report.model_selection(hist)
    assert sel["best_val_epoch"] == 3 and sel["test_acc_at_best_val"] == 0.6 and sel["val_acc_best"] == 0.6
    assert report.model_selection([{"test_acc": 0.5}])["test_acc_at_best_val"] is None
