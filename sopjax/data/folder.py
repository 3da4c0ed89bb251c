"""Streaming input for datasets larger than device memory, built on ``grain``.

The layout of Clothing1M and WebVision: a folder of images and a list file of
``<path> <label>`` lines (paths relative to the folder). :func:`make_loader` returns a
``grain.DataLoader`` whose batches are ``(images, indices)``: images (B, size, size, 3)
uint8, indices (B,) int32 dataset positions (line numbers of the list, from 0), so u, v
and the given labels stay indexed by dataset position (the step gathers ``y[idx]``,
``u[idx]``, ``v[idx]`` on the device, as in the device-resident path, which stays the
default for CIFAR).

Deterministic: the order is grain's ``IndexSampler`` permutation for ``seed``; the
random flip draws from grain's per-record generator. Resumable: the iterator's
``get_state()`` is a small JSON-able bytes string; ``set_state`` on a new iterator continues
where it stopped. Decoding and augmentation run on ``worker_count`` host processes; on
several hosts each process reads only its shard (``shard_index`` = process index).
"""

from __future__ import annotations

import dataclasses
import hashlib
import pathlib

import grain
import numpy as np
from absl import flags
from PIL import Image

from sopjax.data.image_folder import read_image_folder
from sopjax.infra.errors import DataError


@dataclasses.dataclass(frozen=True)
class ImageList:
    """paths (N,) absolute image paths, labels (N,) int32 given labels, in list order."""

    paths: tuple
    labels: np.ndarray


def _parse(line: str, lineno: int, root: pathlib.Path, num_classes: int, where: str) -> tuple[str, int]:
    parts = line.rsplit(None, 1)
    if len(parts) != 2:
        raise ValueError(f"{where} line {lineno}: expected '<path> <label>', got {line.strip()!r}")
    try:
        label = int(parts[1])
    except ValueError:
        raise ValueError(f"{where} line {lineno}: label {parts[1]!r} is not an integer") from None
    if not 0 <= label < num_classes:
        raise ValueError(f"{where} line {lineno}: label {label} is outside [0, {num_classes}); fix the line "
                         "or pass the right number of classes")
    path = root / parts[0]
    if not path.is_file():
        raise ValueError(f"{where} line {lineno}: image {parts[0]!r} not found under {root}; fix or remove the line")
    return str(path), label


def read_list(list_file, root, num_classes: int) -> ImageList:
    """Read a ``<path> <label>`` list (blank lines skipped; paths may contain spaces).

    Raises ValueError naming the file and line (1-based) of a malformed line, a label
    outside [0, num_classes), or an image that does not exist.
    """
    list_file, root = pathlib.Path(list_file), pathlib.Path(root)
    paths, labels = [], []
    for lineno, line in enumerate(list_file.read_text().splitlines(), 1):
        if line.strip():
            p, y = _parse(line, lineno, root, num_classes, str(list_file))
            paths.append(p)
            labels.append(y)
    if not paths:
        raise ValueError(f"{list_file} lists no images")
    return ImageList(tuple(paths), np.asarray(labels, np.int32))


class ImageSource:
    """grain random-access source: record i = {"path": str, "index": i}."""

    def __init__(self, images: ImageList):
        self._paths = images.paths
        self._digest = hashlib.sha1("\n".join(images.paths).encode()).hexdigest()[:16]

    def __repr__(self) -> str:  # grain checks a resumed state against repr(source)
        return f"ImageSource(n={len(self._paths)}, sha1={self._digest})"

    def __len__(self) -> int:
        return len(self._paths)

    def __getitem__(self, i):
        return {"path": self._paths[i], "index": np.int32(i)}


@dataclasses.dataclass
class Decode(grain.transforms.Map):
    """Decode one image (Pillow) to RGB uint8 (size, size, 3); resized if it has another size."""

    size: int

    def map(self, rec):
        try:
            with Image.open(rec["path"]) as im:
                im = im.convert("RGB")
                if im.size != (self.size, self.size):
                    im = im.resize((self.size, self.size), Image.BILINEAR)
                return {"image": np.asarray(im, np.uint8), "index": rec["index"]}
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:  # Pillow's decode errors
            raise DataError(f"cannot decode image {rec['path']} (line {int(rec['index']) + 1} of the list: "
                            f"{type(e).__name__}: {e}); replace the file (the checkpoints stay valid), or "
                            "remove its line and use a new --workdir") from None


class RandomFlip(grain.transforms.RandomMap):
    """Horizontal flip with probability ½ from grain's per-record generator (deterministic)."""

    def random_map(self, rec, rng: np.random.Generator):
        return {**rec, "image": rec["image"][:, ::-1] if rng.random() < 0.5 else rec["image"]}


class RandomCrop(grain.transforms.RandomMap):
    """A random ``size × size`` crop of the image zero-padded by ``size // 8`` on each side
    (torchvision's ``RandomCrop(32, padding=4)`` at 32), from grain's per-record generator."""

    def random_map(self, rec, rng: np.random.Generator):
        img = rec["image"]
        size, pad = img.shape[0], img.shape[0] // 8
        padded = np.pad(img, ((pad, pad), (pad, pad), (0, 0)))
        dy, dx = rng.integers(0, 2 * pad + 1, 2)
        return {**rec, "image": padded[dy:dy + size, dx:dx + size]}


class ToPair(grain.transforms.Map):
    """A batch dict → (images (B, …) uint8, indices (B,) int32)."""

    def map(self, batch):
        return batch["image"], batch["index"].astype(np.int32)


def make_loader(images: ImageList, batch_size: int, seed: int, size: int = 32, num_epochs: int = 1,
                shuffle: bool = True, flip: bool = False, worker_count: int = 0, shard_index: int = 0,
                shard_count: int = 1, drop_remainder: bool = False, crop: bool = False) -> grain.DataLoader:
    """A deterministic, resumable loader of ``(images, indices)`` batches (see the module doc).

    Iterate ``iter(loader)``; checkpoint ``it.get_state()``; resume with a loader built with
    the same arguments and ``it.set_state(state)``. ``shard_index``/``shard_count``: this
    process's part of every epoch (pass ``jax.process_index()``/``jax.process_count()``).
    ``crop``/``flip``: random crop from a zero padding of size // 8, horizontal flip.
    """
    sampler = grain.samplers.IndexSampler(
        len(images.paths), shuffle=shuffle, seed=seed, num_epochs=num_epochs,
        shard_options=grain.sharding.ShardOptions(shard_index, shard_count, drop_remainder=True))
    if worker_count > 0:
        if not flags.FLAGS.is_parsed():  # grain's workers read absl flags, which a non-absl program never parses
            flags.FLAGS.mark_as_parsed()
    ops = [Decode(size)] + ([RandomCrop()] if crop else []) + ([RandomFlip()] if flip else [])
    ops += [grain.transforms.Batch(batch_size, drop_remainder=drop_remainder), ToPair()]
    return grain.DataLoader(data_source=ImageSource(images), sampler=sampler, operations=ops,
                            worker_count=worker_count)


@dataclasses.dataclass(frozen=True)
class FolderData:
    """train: the training list; test: a clean evaluation list or None; num_classes K;
    image_size: the side images are decoded to (pixels)."""

    train: ImageList
    test: ImageList | None
    num_classes: int
    image_size: int
    sources: dict  # {"image_root", "label_file", "test_label_file"} as given


def _check_paths(image_root, label_file, test_label_file, test_folder) -> None:
    if not image_root:
        raise ValueError("a folder dataset needs --image-root DIR (class subfolders, or the root of --label-file's "
                         "paths)")
    for flag, path, kind in (("--image-root", image_root, "folder"), ("--label-file", label_file, "file"),
                             ("--test-label-file", test_label_file, "file"), ("--test-folder", test_folder, "folder")):
        if path is not None and not pathlib.Path(path).exists():
            raise ValueError(f"{flag} {path} does not exist; pass an existing path")
        if path is not None and (pathlib.Path(path).is_dir() != (kind == "folder")):
            raise ValueError(f"{flag} {path} is {'a file' if kind == 'folder' else 'a folder'}; pass a {kind}"
                             + (" of '<path> <label>' lines" if kind == "file" else " of images"))
    if test_folder is not None and label_file is not None:
        raise ValueError("--test-folder goes with the class-subfolder layout; with --label-file pass --test-label-file")


def _from_subfolders(image_root, num_classes, test_folder) -> tuple[ImageList, ImageList | None, tuple]:
    paths, labels, names = read_image_folder(image_root)
    if num_classes is not None and num_classes != len(names):
        raise ValueError(f"--num-classes {num_classes} but {image_root} has {len(names)} class subfolders; drop "
                         "--num-classes (it is read from the folders) or fix the folders")
    test = None
    if test_folder is not None:
        t_paths, t_labels, _ = read_image_folder(test_folder, names)
        test = ImageList(t_paths, t_labels)
    return ImageList(paths, labels), test, names


def load_folder(image_root, label_file, num_classes: int | None, image_size: int = 32, test_label_file=None,
                subset: int = 0, test_folder=None) -> FolderData:
    """Read and check a folder dataset: ``label_file`` ('<path> <label>' lines, :func:`read_list`;
    ``num_classes`` required), or without it the class subfolders of ``image_root``
    (:func:`sopjax.data.image_folder.read_image_folder`; classes and their names from the
    folders, test images from ``test_folder`` in the same layout). ``subset`` keeps the first
    images. Raises ValueError naming the file, line and fix of a bad line or a bad setting."""
    _check_paths(image_root, label_file, test_label_file, test_folder)
    if label_file is not None and not (isinstance(num_classes, int) and num_classes >= 2):
        raise ValueError(
            f"--num-classes must be an integer >= 2 with --label-file (e.g. 14 for Clothing1M), got {num_classes!r}"
        )
    if image_size < 8:
        raise ValueError(f"--image-size must be at least 8 pixels, got {image_size}")
    names = None
    if label_file is None:
        train_list, test_list, names = _from_subfolders(image_root, num_classes, test_folder)
        num_classes = len(names)
    else:
        train_list = read_list(label_file, image_root, num_classes)
        test_list = read_list(test_label_file, image_root, num_classes) if test_label_file else None
    if subset:
        if subset > len(train_list.paths):
            raise ValueError(f"--subset {subset} exceeds the {len(train_list.paths)} training images")
        train_list = ImageList(train_list.paths[:subset], train_list.labels[:subset])
    sources = {"image_root": str(image_root), "label_file": None if label_file is None else str(label_file),
               "test_label_file": None if test_label_file is None else str(test_label_file),
               **({} if names is None else {"layout": "class subfolders", "class_names": list(names),
                                            "test_folder": None if test_folder is None else str(test_folder)})}
    return FolderData(train_list, test_list, num_classes, image_size, sources)


CLASS_NAMES_FILE = "classes.txt"


def read_class_names(label_file, image_root, num_classes: int | None = None) -> tuple | None:
    """Class names from ``classes.txt`` (the first line names class 0, the next class 1, …),
    looked up next to ``label_file`` first, then in ``image_root``; None when neither has one.
    Raises ValueError when the file holds an empty name, or not exactly ``num_classes`` names
    (any number when None)."""
    for d in (pathlib.Path(label_file).parent, pathlib.Path(image_root)):
        f = d / CLASS_NAMES_FILE
        if f.is_file():
            names = [line.strip() for line in f.read_text().strip("\n").split("\n")]
            num_classes = len(names) if num_classes is None else num_classes
            if len(names) != num_classes or not all(names):
                raise ValueError(f"{f} must hold {num_classes} non-empty class names, one per line "
                                 f"(the first names class 0), got {len(names)} lines; fix it or remove it")
            return tuple(names)
    return None


def list_hash(images: ImageList | None) -> str | None:
    """SHA-256 of a list's image paths and labels (not of the pixels), or None for no list."""
    if images is None:
        return None
    h = hashlib.sha256("\n".join(images.paths).encode())
    h.update(np.ascontiguousarray(images.labels, np.int32).data)
    return h.hexdigest()
