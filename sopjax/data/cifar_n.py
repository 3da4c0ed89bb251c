"""The human label sets of CIFAR-N (Wei et al., ICLR 2022), read without PyTorch.

The official files ``CIFAR-10_human.pt`` and ``CIFAR-100_human.pt`` are zips whose
``*/data.pkl`` holds a dict of int64 numpy arrays in the official CIFAR training order;
they are unpickled by :mod:`sopjax.data.safe_pickle`, which refuses anything but numpy arrays.
"""

from __future__ import annotations

import pathlib
import pickle
import zipfile

import numpy as np

from sopjax.data import safe_pickle
from sopjax.data.cifar import candidate_dirs
from sopjax.infra.errors import DataError

CIFAR10N = {"aggre": "aggre_label", "rand1": "random_label1", "rand2": "random_label2",
            "rand3": "random_label3", "worst": "worse_label"}
CIFAR100N = {"noisy100": "noisy_label"}
CIFARN_FILES = {"cifar10": "CIFAR-10_human.pt", "cifar100": "CIFAR-100_human.pt"}


def read_cifar_n(path: pathlib.Path) -> dict[str, np.ndarray]:
    """Read an official CIFAR-N ``.pt`` file without PyTorch.

    The file is a zip whose ``*/data.pkl`` holds a dict of int64 numpy arrays; it
    is unpickled by :mod:`sopjax.safe_pickle`, which refuses anything but numpy
    arrays. Returns {key: (50000,) int32}. Raises DataError for a damaged file or an array
    that is not 1-D non-negative integers (a float array would be truncated by a cast), and
    safe_pickle.UnsafePickleError for a pickle that asks for other code.
    """
    path = pathlib.Path(path)
    try:
        with zipfile.ZipFile(path) as z:
            name = next(n for n in z.namelist() if n.endswith("/data.pkl"))
            raw = z.read(name)
    except (zipfile.BadZipFile, StopIteration, OSError) as e:
        raise DataError(f"{path} is not a CIFAR-N .pt file ({e}); download the official file again.") from e
    try:
        d = safe_pickle.loads(raw)
    except safe_pickle.UnsafePickleError as e:
        raise safe_pickle.UnsafePickleError(f"{path}: {e}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as e:
        raise DataError(f"{path} is not a plain CIFAR-N label file ({type(e).__name__}: {e}); "
                        "download the official file again") from None
    if not isinstance(d, dict):
        raise DataError(f"{path}: expected a dict of label arrays, got {type(d).__name__}")
    return {k: _int_labels(path, k, v) for k, v in d.items()}


def _int_labels(path, key, v) -> np.ndarray:
    """``v`` as int32, refusing what a cast would change: floats (truncated), booleans, values
    outside int32, or anything but a 1-D array."""
    a = np.asarray(v)
    if a.dtype.kind not in "iu" or a.ndim != 1:
        raise DataError(f"{path}: {key} is an array of dtype {a.dtype} and shape {a.shape}, not 1-D integer labels; "
                        "download the official file again")
    if a.size and (a.min() < 0 or a.max() > np.iinfo(np.int32).max):
        raise DataError(f"{path}: {key} holds labels outside [0, 2**31) (min {a.min()}, max {a.max()}); "
                        "download the official file again")
    return a.astype(np.int32)


def find_cifar_n(dataset: str, data_dir=None) -> pathlib.Path:
    """The CIFAR-N file of ``dataset`` in the data directories (or their ``cifar-n/``);
    raises DataError naming where to get it."""
    fname = CIFARN_FILES[dataset]
    for d in candidate_dirs(data_dir):
        for p in (d / fname, d / "cifar-n" / fname):
            if p.is_file():
                return p
    raise DataError(f"{fname} not found in the data directories; get it from the CIFAR-N release "
                    "(github.com/UCSC-REAL/cifar-10-100n) and put it in <data-dir>/cifar-n/.")


def read_labels(name: str, clean: np.ndarray, num_classes: int, data_dir=None) -> np.ndarray:
    """The CIFAR-N label set ``name`` (a key of :data:`CIFAR10N` or :data:`CIFAR100N`) as
    (50000,) int32, checked against the images' labels ``clean``.

    Raises ValueError if the set does not belong to a ``num_classes``-class dataset;
    DataError if the file is missing, lacks the set, holds a set of another length than
    ``clean`` (a shifted or padded array would mislabel every image after the shift), or its
    clean labels disagree with ``clean`` (wrong order or wrong file).
    """
    dataset, key = ("cifar10", CIFAR10N[name]) if name in CIFAR10N else ("cifar100", CIFAR100N[name])
    if num_classes != (10 if dataset == "cifar10" else 100):
        raise ValueError(f"label set {name!r} belongs to {dataset}, not a {num_classes}-class dataset")
    path = find_cifar_n(dataset, data_dir)
    arrays = read_cifar_n(path)
    missing = sorted({"clean_label", key} - set(arrays))
    if missing:
        raise DataError(f"{path} has no {', '.join(missing)} labels (keys: {', '.join(sorted(arrays))}); "
                        "it is not the official CIFAR-N file for this label set. Download it again.")
    for k in ("clean_label", key):
        if arrays[k].shape != clean.shape:
            raise DataError(f"{path}: {k} has {len(arrays[k])} labels but the training set has {len(clean)} images; "
                            "the file is not the official one for these images. Download it again.")
    if not np.array_equal(arrays["clean_label"], clean):
        raise DataError(f"{path}: clean_label does not match the training labels; images and label file "
                        "must both be in the official CIFAR order.")
    return arrays[key]
