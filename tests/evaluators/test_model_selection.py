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


def test_holdout_split_is_disjoint_seeded_capped_and_keeps_the_noisy_labels():
    a = _arrays()
    s = arrays_lib.split_validation(a, 5000, seed=3, holdout=True)
    assert len(s.x_val) == 20 and len(s.x_train) == 180            # capped at N // 10
    val_rows, train_rows = s.x_val[:, 0, 0, 0].astype(int), s.x_train[:, 0, 0, 0].astype(int)
    assert not set(val_rows) & set(train_rows) and len(set(val_rows) | set(train_rows)) == 200
    np.testing.assert_array_equal(s.y_val, a.labels.noisy[val_rows])   # given labels, not the clean ones
    assert (s.y_val != a.labels.clean[val_rows]).any()
    np.testing.assert_array_equal(s.labels.noisy, a.labels.noisy[train_rows])
    np.testing.assert_array_equal(s.labels.clean, a.labels.clean[train_rows])
    again = arrays_lib.split_validation(a, 5000, seed=3, holdout=True)
    np.testing.assert_array_equal(again.x_val, s.x_val)
    assert not np.array_equal(arrays_lib.split_validation(a, 5000, seed=4, holdout=True).x_val, s.x_val)
    assert arrays_lib.split_validation(a, 0, seed=3) is a and arrays_lib.split_validation(s, 10, seed=3) is s


def test_model_selection_reports_test_acc_at_the_best_val_epoch():
    hist = [{"test_acc": t, "val_acc": v, "test_size": 10} for t, v in [(0.5, 0.3), (0.9, 0.4), (0.6, 0.6), (0.7, 0.5)]]
    sel = report.model_selection(hist)
    assert sel["best_val_epoch"] == 3 and sel["test_acc_at_best_val"] == 0.6 and sel["val_acc_best"] == 0.6
    assert report.model_selection([{"test_acc": 0.5}])["test_acc_at_best_val"] is None


def test_default_split_validates_on_training_rows_and_the_log_says_so():
    a = _arrays(N=1000)
    s = arrays_lib.split_validation(a, 5000, seed=3)
    assert len(s.x_train) == 1000 and len(s.x_val) == 100 and s.labels is a.labels   # nothing leaves training
    np.testing.assert_array_equal(s.x_val, s.x_train[s.val_rows])
    counts = np.bincount(a.labels.clean[s.val_rows], minlength=10)
    np.testing.assert_allclose(counts, 100 * np.bincount(a.labels.clean, minlength=10) / 1000, atol=1)
    line = arrays_lib.describe_split(s, 50_000, 128, 5000, holdout=False)
    assert "1,000 images train, 7 steps of 128 per epoch; 100 of them also validate" in line
    assert "subset of the training images" in line and "own draw of the sym noise" in line
    assert "50,000 train / 128 = 390.6: 390 full batches per epoch (the authors' loader: 391 steps" in line
    held = arrays_lib.split_validation(a, 5000, seed=3, holdout=True)
    line = arrays_lib.describe_split(held, 50_000, 128, 5000, holdout=True)
    assert "900 images train" in line and "100 more validate, held out of training" in line
    assert "45,000 train / 128 = 351.6: 351 full batches" in line
