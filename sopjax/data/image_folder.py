"""The class-subfolder layout of an image dataset (torchvision's ``ImageFolder``):
``root/<class name>/<any depth>/<image>``, one subfolder per class.

Classes are the subfolders' names in sorted order, so class k is the k-th name; images are
the files with an image extension, sorted by their path under the class folder. The order
is fixed by the file names alone, so row i of the tables u, v stays with one image.
"""

from __future__ import annotations

import pathlib

import numpy as np

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")


def _images(folder: pathlib.Path) -> list[str]:
    return sorted(str(p) for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def read_image_folder(root, class_names: tuple | None = None) -> tuple[tuple[str, ...], np.ndarray, tuple[str, ...]]:
    """The images and labels of a class-subfolder dataset.

    Args:
      root: the folder holding one subfolder per class.
      class_names: the classes to map the subfolders onto (e.g. the training folder's, for
        a test folder, which may lack some); default the subfolders of ``root``.

    Returns:
      (paths, labels, class_names): absolute image paths (N,), their labels (N,) int32 (the
      index of their class in ``class_names``), and the class names (K,).

    Raises:
      ValueError: naming the folder, when ``root`` does not exist or has no class subfolder,
        a class subfolder holds no image, or a subfolder is not one of ``class_names``.
    """
    root = pathlib.Path(root)
    if not root.is_dir():
        raise ValueError(f"{root} is not a folder; pass a folder with one subfolder of images per class")
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not found:
        raise ValueError(f"{root} has no class subfolders; put each class's images in {root}/<class name>/, or "
                         "pass a '<path> <label>' list as --label-file")
    names = tuple(found) if class_names is None else tuple(class_names)
    unknown = sorted(set(found) - set(names))
    if unknown:
        raise ValueError(f"{root} has class folders {', '.join(unknown)} that the training classes lack; "
                         "rename or remove them")
    paths, labels = [], []
    for name in found:
        images = _images(root / name)
        if not images:
            raise ValueError(f"{root / name} holds no image ({', '.join(IMAGE_EXTENSIONS)}); add images or "
                             "remove the folder")
        paths += images
        labels += [names.index(name)] * len(images)
    return tuple(str(pathlib.Path(p).resolve()) for p in paths), np.asarray(labels, np.int32), names
