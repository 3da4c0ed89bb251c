"""Per-dataset normalization constants of the SOP authors' data loaders.

Source: ``data_loader/data_loaders.py`` of github.com/shengliu66/SOP (``transforms.Normalize``
after ``ToTensor``, i.e. on images scaled to [0, 1]). These are the values the CIFAR
literature copies (kuangliu/pytorch-cifar, DivideMix); the CIFAR-10 "std" triple is not
the per-channel pixel std (≈ 0.247, 0.243, 0.261), but it is what the authors trained with.

Quirk reproduced on purpose: the authors' CIFAR-100 loader normalizes the *strong*
(AutoAugment) view of SOP+ with the CIFAR-10 constants, while its weak view and test
images use the CIFAR-100 ones. :func:`strong_view_stats` returns what the strong view used.

Every value is a float32 (3,) array, RGB order, in units of [0, 1] intensity.

Any other dataset (your own arrays through ``sopjax.fit``) is normalized by
:func:`input_stats`: uint8 images by their own per-channel mean and std, float inputs not at all.
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


def input_stats(dataset: str, x_train) -> tuple[np.ndarray, np.ndarray, str]:
    """(mean, std, source) that a run normalizes its uint8 images with, ``(x/255 − mean)/std``.

    Args:
      dataset: a name of :data:`DATASETS` (the authors' constants), or any other name.
      x_train: the training inputs (N, …): uint8 images (N, H, W, C), or float features.

    Returns:
      mean, std: float32 (C,) in units of [0, 1] intensity, and a one-line source. For
      another dataset's uint8 images, the per-channel mean and std over all training pixels
      (std floored at 1e-3 so a constant channel stays finite); for float inputs, which the
      network gets as they are, 0 and 1 (unused).
    """
    if dataset in DATASETS:
        return (*normalization_stats(dataset), f"the SOP authors' {_key(dataset)} constants")
    x = np.asarray(x_train)
    if x.dtype != np.uint8:
        return np.zeros(1, np.float32), np.ones(1, np.float32), "none: float inputs are used as they are"
    pixels = x.reshape(-1, x.shape[-1])
    total = np.zeros(x.shape[-1]), np.zeros(x.shape[-1])
    for s in range(0, len(pixels), 1 << 22):  # float64 sums, a chunk at a time (no float copy of the data)
        chunk = pixels[s:s + (1 << 22)].astype(np.float64) / 255.0
        total = total[0] + chunk.sum(0), total[1] + (chunk * chunk).sum(0)
    mean = total[0] / len(pixels)
    std = np.sqrt(np.maximum(total[1] / len(pixels) - mean * mean, 0.0))
    return (mean.astype(np.float32), np.maximum(std, 1e-3).astype(np.float32),
            f"per-channel mean and std of the {len(x)} training images")
