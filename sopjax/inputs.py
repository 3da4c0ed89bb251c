"""Checks of a run's data before any work is done or any file written (issue 9).

Each check raises ValueError with one line that names the fix.
"""

from __future__ import annotations

import numpy as np


def check_labels(name: str, y, n: int, num_classes: int) -> None:
    """``y`` must be (n,) integers in [0, num_classes)."""
    y = np.asarray(y)
    if y.shape != (n,):
        raise ValueError(f"{name} have shape {y.shape}, expected ({n},) to match the images; check the label file")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{name} have dtype {y.dtype}, expected integers; check the label file")
    outside = int(np.sum((y < 0) | (y >= num_classes)))
    if outside:
        raise ValueError(f"{outside} of the {name} lie outside [0, {num_classes}) (min {y.min()}, max {y.max()}); "
                         "fix the label file, or choose the --dataset these labels belong to")


def check_arrays(arrays) -> None:
    """Check a :class:`sopjax.train.Arrays`: a non-empty training set, at least 2 classes,
    and every label set (noisy, clean, test) of the right length and in [0, K)."""
    K = arrays.num_classes
    if not (isinstance(K, (int, np.integer)) and K >= 2):
        raise ValueError(f"num_classes must be an integer ≥ 2, got {K!r}")
    N, Nt = len(arrays.x_train), len(arrays.x_test)
    if N == 0 or Nt == 0:
        raise ValueError(f"the data hold {N} training and {Nt} test images; both must be non-empty")
    check_labels("noisy training labels", arrays.labels.noisy, N, K)
    check_labels("clean training labels", arrays.labels.clean, N, K)
    check_labels("test labels", arrays.y_test, Nt, K)


def check_subset(subset: int, num_train: int) -> None:
    """``--subset`` must not exceed the training set (a larger one would silently train on all)."""
    if subset > num_train:
        raise ValueError(f"--subset {subset} exceeds the {num_train} training images; pass at most {num_train} "
                         "(0 = all)")
