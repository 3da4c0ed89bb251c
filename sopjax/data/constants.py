"""Per-dataset normalization constants of the SOP authors' data loaders.

Source: ``data_loader/data_loaders.py`` of github.com/shengliu66/SOP (``transforms.Normalize``
after ``ToTensor``, i.e. on images scaled to [0, 1]). These are the values the CIFAR
literature copies (kuangliu/pytorch-cifar, DivideMix); the CIFAR-10 "std" triple is not
the per-channel pixel std (≈ 0.247, 0.243, 0.261), but it is what the authors trained with.

Quirk reproduced on purpose: the authors' CIFAR-100 loader normalizes the *strong*
(AutoAugment) view of SOP+ with the CIFAR-10 constants, while its weak view and test
images use the CIFAR-100 ones. :func:`strong_view_stats` returns what the strong view used.

Every value is a float32 (3,) array, RGB order, in units of [0, 1] intensity.
"""

from __future__ import annotations

import numpy as np

_STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "cifar100": ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)),
}
# CIFAR-N relabels the same images, and the authors load them through the same loaders.
_ALIASES = {"cifar10n": "cifar10", "cifar100n": "cifar100"}

DATASETS = tuple(_STATS) + tuple(_ALIASES)


def _key(dataset: str) -> str:
    name = _ALIASES.get(dataset, dataset)
    if name not in _STATS:
        raise ValueError(f"no normalization constants for dataset {dataset!r}; choose one of {DATASETS}")
    return name


def normalization_stats(dataset: str) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std), each float32 (3,), of the authors' loader for ``dataset``'s train (weak view)
    and test images. Raises ValueError for an unknown dataset."""
    mean, std = _STATS[_key(dataset)]
    return np.asarray(mean, np.float32), np.asarray(std, np.float32)


def strong_view_stats(dataset: str) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) the authors' loader used for SOP+'s strong view of ``dataset``: the CIFAR-10
    constants for both CIFAR-10 and CIFAR-100 (``CIFAR100DataLoader.transform_train_aug``).
    Raises ValueError for an unknown dataset."""
    _key(dataset)
    return normalization_stats("cifar10")
