"""A run's data as host arrays, its validation split, its fingerprint, and the checks made
before any work is done or any file written (each raises ValueError with one line that
names the fix)."""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np

from sopjax.core import rng as streams
from sopjax.data import noise
from sopjax.data.noise import LabelSet


@dataclasses.dataclass(frozen=True)
class Arrays:
    """Host arrays of one run: x_train (N, …), labels (a LabelSet over N), x_test, y_test (int32);
    x_val (V, …), y_val (V,) int32: the validation images and the labels they are scored
    against, or None; val_rows (V,) int: the training rows the validation images are (they are
    also trained on), or None when they were held out of training (``--val-holdout``);
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
    val_rows: np.ndarray | None = None
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


def val_count(val_size: int, num_train: int) -> int:
    """Validation images of a split asked for as ``val_size``: at most N // 10 (the authors'
    5,000 of 50,000), at least 1; 0 when ``val_size`` is 0."""
    return 0 if val_size <= 0 else max(1, min(val_size, num_train // 10))


def split_validation(arrays: Arrays, val_size: int, seed: int, holdout: bool = False) -> Arrays:
    """The run's validation split of :func:`val_count` images, for model selection.

    Default, the authors' way (``train_val_split`` in ``data_loader/cifar10.py`` and
    ``cifar100.py`` of github.com/shengliu66/SOP): every image is still trained on; the
    validation images are a class-balanced seeded subset of the training rows (classes by
    clean label, 500 per class of CIFAR-10's 50,000), labelled by :func:`validation_labels`.
    ``holdout``: the rows are removed from training and scored against their given labels
    (45,000 train at 50,000, Table A.1's ResNet-34 "training examples").
    Returns ``arrays`` unchanged when ``val_size`` is 0 or a split exists."""
    if val_size <= 0 or arrays.x_val is not None:
        return arrays
    n_val = val_count(val_size, len(arrays.x_train))
    if holdout:
        return _hold_out(arrays, n_val, seed)
    by = arrays.labels.noisy if arrays.labels.clean is None else arrays.labels.clean  # your own data: given
    rows = balanced_rows(by, n_val, seed)
    return dataclasses.replace(arrays, x_val=arrays.x_train[rows], val_rows=rows,
                               y_val=validation_labels(arrays.labels, rows, arrays.num_classes))


def _hold_out(arrays: Arrays, n_val: int, seed: int) -> Arrays:
    N = len(arrays.x_train)
    perm = np.random.default_rng([seed, streams.VAL_SPLIT]).permutation(N)
    val, keep = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    labels = arrays.labels.take(keep)
    return dataclasses.replace(arrays, x_train=arrays.x_train[keep], labels=labels, x_val=arrays.x_train[val],
                               y_val=np.asarray(arrays.labels.noisy[val], np.int32))


def balanced_rows(clean: np.ndarray, n_val: int, seed: int) -> np.ndarray:
    """Sorted rows (n_val,) of a seeded subset with each clean class in proportion to its size
    (largest remainder, so exactly ``n_val``); the authors take the last 10% of a shuffled
    order within each class."""
    classes, counts = np.unique(clean, return_counts=True)
    quota = n_val * counts / counts.sum()
    take = np.floor(quota).astype(int)
    take[np.argsort(-(quota - take), kind="stable")[: n_val - take.sum()]] += 1
    rng = np.random.default_rng([seed, streams.VAL_SPLIT])
    rows = [rng.permutation(np.flatnonzero(clean == c))[:k] for c, k in zip(classes, take)]
    return np.sort(np.concatenate(rows))


def validation_labels(labels: LabelSet, rows: np.ndarray, num_classes: int) -> np.ndarray:
    """(V,) int32 labels the validation rows are scored against, as the authors' loaders set them:
    for a synthetic set (sym, symflip, asym, asymclean) a fresh draw of the same noise on these
    rows' clean labels (their ``val_dataset.symmetric_noise()``/``asymmetric_noise()``, for
    CIFAR-100 asym with new class pairs), independent of the rows' training labels; for clean
    and CIFAR-N sets the clean labels (their CIFAR-100N branch replaces the training labels
    only; the released code has no CIFAR-10N branch, and CIFAR-10N follows CIFAR-100N)."""
    if labels.clean is None:  # your own data: no true labels, so the given ones
        return np.asarray(labels.noisy[rows], np.int32)
    clean = np.asarray(labels.clean[rows], np.int32)
    if labels.name == "clean" or labels.name not in noise.SYNTHETIC:
        return clean
    seed = int(np.random.default_rng([labels.seed, streams.VAL_LABELS]).integers(2**31))
    return noise.make_label_set(labels.name, clean, num_classes, labels.rate, seed).noisy


def describe_split(arrays: Arrays, full_size: int, batch_size: int, val_size: int, holdout: bool) -> str:
    """Two lines for the run log: how many images train and validate, whether the validation images
    are training images, the steps per epoch here, and the same arithmetic for the full
    ``full_size``-image training set (even for a ``--subset`` run): sopjax drops each epoch's
    last partial batch (390 steps of 128 for 50,000), the authors' PyTorch loader keeps it (391)."""
    N, B = len(arrays.x_train), batch_size
    if arrays.x_val is None:
        val = "no validation split (--val-size 0)"
    elif arrays.val_rows is not None:
        clean = arrays.labels.clean
        against = "their clean labels" if clean is not None and np.array_equal(arrays.y_val, clean[arrays.val_rows]) \
            else f"their own draw of the {arrays.labels.name} noise"
        val = (f"{len(arrays.x_val):,} of them also validate (a class-balanced subset of the training images, "
               f"scored against {against}, as the authors' loaders; --val-holdout holds them out instead)")
    else:
        val = f"{len(arrays.x_val):,} more validate, held out of training (--val-holdout), scored against their " \
              "given labels"
    full = full_size - (val_count(val_size, full_size) if holdout else 0)
    steps = f"{full:,} train / {B} = {full / B:.1f}: {full // B} full batches per epoch"
    if full % B:
        steps += f" (the authors' loader: {-(-full // B)} steps, its last batch {full % B} images)"
    return f"split: {N:,} images train, {N // B} steps of {B} per epoch; {val}\nfull set: {steps}"


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
