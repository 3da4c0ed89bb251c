"""A run's data as host arrays, its validation split, its fingerprint, and the checks made
before any work is done or any file written (each raises ValueError with one line that
names the fix)."""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np

from sopjax.core import rng as streams
from sopjax.data.noise import LabelSet


@dataclasses.dataclass(frozen=True)
class Arrays:
    """Host arrays of one run: x_train (N, …), labels (a LabelSet over N), x_test, y_test (int32);
    x_val, y_val: a held-out validation split and its *given* (noisy) labels, or None;
    class_names: K names (written into config.json, summary.json and noise_scores.npz), or None.

    Inputs are uint8 images (N, H, W, C), augmented and normalized on the device, or float
    features (N, …) used as they are. Build it from numpy with :meth:`from_numpy`.
    """

    x_train: np.ndarray
    labels: LabelSet
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None
    class_names: tuple | None = None

    @classmethod
    def from_numpy(cls, x_train, y_train, x_test, y_test, num_classes: int | None = None, true_labels=None,
                   class_names=None, name: str = "given") -> "Arrays":
        """Your own data as a run's arrays (e.g. from ``tfds.as_numpy`` or a Hugging Face
        dataset's ``with_format("numpy")``: docs/api.md).

        Args:
          x_train: (N, H, W, C) uint8 images or (N, …) float features.
          y_train: (N,) int given (possibly wrong) labels.
          x_test, y_test: the evaluation set (Nt, …) and its (Nt,) int labels.
          num_classes: K; default ``len(class_names)``, else 1 + the largest label seen.
          true_labels: (N,) int true training labels if known (synthetic noise), else None:
            the metrics that need them are then skipped.
          class_names: K names, or None.
          name: the label set's name in the run's records.

        Returns:
          Arrays (labels as int32). Checked by :func:`sopjax.fit` before anything is written.
        """
        y_train, y_test = np.asarray(y_train, np.int32), np.asarray(y_test, np.int32)
        if num_classes is None:
            num_classes = len(class_names) if class_names is not None else int(max(y_train.max(), y_test.max())) + 1
        return cls(np.asarray(x_train), LabelSet.given(y_train, name, true_labels), np.asarray(x_test), y_test,
                   int(num_classes), class_names=None if class_names is None else tuple(map(str, class_names)))


def split_validation(arrays: Arrays, val_size: int, seed: int) -> Arrays:
    """Hold out ``val_size`` seeded random training samples with their given (noisy) labels
    for model selection (the authors select on a noisy-label validation split taken from the
    training set). At most N // 10 samples are held out (the authors' 5,000 of 50,000), so a
    ``--subset`` run keeps 90% for training; each epoch record says the size used (val_size).
    Returns ``arrays`` unchanged when ``val_size`` is 0 or a split exists."""
    if val_size <= 0 or arrays.x_val is not None:
        return arrays
    N = len(arrays.x_train)
    val_size = max(1, min(val_size, N // 10))
    perm = np.random.default_rng([seed, streams.VAL_SPLIT]).permutation(N)
    val, keep = np.sort(perm[:val_size]), np.sort(perm[val_size:])
    labels = arrays.labels.take(keep)
    return dataclasses.replace(arrays, x_train=arrays.x_train[keep], labels=labels, x_val=arrays.x_train[val],
                               y_val=np.asarray(arrays.labels.noisy[val], np.int32))


def sha256(a: np.ndarray) -> str:
    """SHA-256 over an array's dtype, shape and bytes."""
    a = np.ascontiguousarray(a)
    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.data)
    return h.hexdigest()


def data_fingerprint(arrays: Arrays) -> dict:
    """SHA-256 of the training images, noisy and clean labels (None without them), test images
    and labels, keyed by what they are, so a resume can tell (and say) which of the data changed."""
    return {"training images": sha256(arrays.x_train), "noisy labels": sha256(arrays.labels.noisy),
            "clean labels": None if arrays.labels.clean is None else sha256(arrays.labels.clean),
            "test images": sha256(arrays.x_test),
            "test labels": sha256(arrays.y_test)}


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


def check_arrays(arrays: Arrays) -> None:
    """Check :class:`Arrays`: a non-empty training set, at least 2 classes,
    and every label set (noisy, clean if given, test) of the right length and in [0, K)."""
    K = arrays.num_classes
    if not (isinstance(K, (int, np.integer)) and K >= 2):
        raise ValueError(f"num_classes must be an integer ≥ 2, got {K!r}")
    N, Nt = len(arrays.x_train), len(arrays.x_test)
    if N == 0 or Nt == 0:
        raise ValueError(f"the data hold {N} training and {Nt} test images; both must be non-empty")
    check_labels("noisy training labels", arrays.labels.noisy, N, K)
    if arrays.labels.clean is not None:
        check_labels("clean training labels", arrays.labels.clean, N, K)
    check_labels("test labels", arrays.y_test, Nt, K)
    if arrays.class_names is not None and len(arrays.class_names) != K:
        raise ValueError(f"{len(arrays.class_names)} class names for {K} classes; pass one name per class")


def check_subset(subset: int, num_train: int) -> None:
    """``--subset`` must not exceed the training set (a larger one would silently train on all)."""
    if subset > num_train:
        raise ValueError(f"--subset {subset} exceeds the {num_train} training images; pass at most {num_train} "
                         "(0 = all)")
