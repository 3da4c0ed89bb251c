"""CIFAR-10/100 images: locating, downloading, verifying, decoding and caching.

Sources, in the order :func:`load_cifar` tries them inside a data directory:
1. the official python-version release, extracted (``cifar-10-batches-py/``,
   ``cifar-100-python/``) or as the tarball (``cifar-10-python.tar.gz`` …);
2. ``cifar10-jpeg.npz`` (CIFAR-10 only: the same images in the same order, stored as
   JPEGs; see the data README), decoded once with Pillow.

Every source is cached as uint8 ``.npy`` arrays under ``<cache>/`` so later runs
load in well under a second. Arrays are NHWC uint8 (N, 32, 32, 3) and int32
labels, in the official order (CIFAR-N label files index them directly).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import pathlib
import pickle
import tarfile
import tempfile
import urllib.request

import numpy as np
from PIL import Image

from sopjax.data import decode_cache, safe_pickle
from sopjax.data.decode_cache import read_cache, source_stamp, user_cache_dir, write_cache
from sopjax.infra.errors import DataError

ENV_VAR = "SOPJAX_DATA_DIR"
REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]

OFFICIAL = {
    "cifar10": dict(
        url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        archive="cifar-10-python.tar.gz",
        md5="c58f30108f718f92721af3b95e74349a",
        folder="cifar-10-batches-py",
        train=[f"data_batch_{i}" for i in range(1, 6)],
        test=["test_batch"],
        label_key=b"labels",
        num_classes=10,
    ),
    "cifar100": dict(
        url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        archive="cifar-100-python.tar.gz",
        md5="eb9058c3a382ffc7106e4002c42a8d85",
        folder="cifar-100-python",
        train=["train"],
        test=["test"],
        label_key=b"fine_labels",
        num_classes=100,
    ),
}
# Class k's name (the official release's batches.meta), for reports that show labels.
CLASS_NAMES = {"cifar10": ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")}
JPEG_NPZ = "cifar10-jpeg.npz"
JPEG_NPZ_SHA256 = "02dc9ba81d06929d787923d8d9f450912b45334f7711966ff1bf25a585131709"


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Images and clean labels of one CIFAR dataset, official order.

    x_train (50000, 32, 32, 3) uint8; y_train (50000,) int32; x_test (10000, 32, 32, 3)
    uint8; y_test (10000,) int32; ``source`` says which file the pixels came from
    (JPEG-decoded pixels differ slightly from the originals; report which).
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    source: str


def candidate_dirs(explicit: str | os.PathLike | None = None) -> list[pathlib.Path]:
    """Data directories in resolution order: flag, ``$SOPJAX_DATA_DIR``, conventional places.

    Conventional places: ``./data``, ``<repo>/data``, ``<repo>/../shared/data``, the
    download folder :func:`default_download_dir`. An explicit flag that does not exist is an error.
    """
    if explicit is not None:
        p = pathlib.Path(explicit).expanduser()
        if not p.is_dir():
            raise DataError(f"--data-dir {p} does not exist; create it or point it at the folder holding CIFAR")
        return [p]
    dirs = []
    if os.environ.get(ENV_VAR):
        dirs.append(pathlib.Path(os.environ[ENV_VAR]).expanduser())
    dirs += [pathlib.Path("data"), REPO_ROOT / "data", REPO_ROOT.parent / "shared" / "data", default_download_dir()]
    return [d for d in dirs if d.is_dir()]


def default_download_dir() -> pathlib.Path:
    """Where downloads go: ``<user cache>/data`` (:func:`user_cache_dir`)."""
    return user_cache_dir() / "data"


def file_digest(path: pathlib.Path, algo: str = "md5") -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download(url: str, dest: pathlib.Path, md5: str, timeout: float = 60.0) -> pathlib.Path:
    """Download ``url`` to ``dest`` and verify its MD5.

    Writes to a temporary file in the same folder and renames it only after the
    checksum matches, so a failed or corrupted download leaves no partial file.
    Raises DataError naming the file, the checksums and the fix.
    """
    dest = pathlib.Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=dest.name + ".", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            while chunk := resp.read(1 << 20):
                out.write(chunk)
        got = file_digest(pathlib.Path(tmp))
        if got != md5:
            raise DataError(
                f"checksum mismatch for {dest.name} from {url}: md5 {got}, expected {md5}. "
                f"Nothing was kept. Retry the download, or place the official {dest.name} in the data directory "
                f"(--data-dir or ${ENV_VAR})."
            )
        os.replace(tmp, dest)
        return dest
    except OSError as e:
        raise DataError(f"could not download {url} to {dest}: {e}. Place {dest.name} in the data directory "
                        f"(--data-dir or ${ENV_VAR}) and retry.") from e
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _unpack_batch(raw: bytes, label_key: bytes, member: str = "a batch file"):
    try:
        d = safe_pickle.loads(raw, encoding="bytes")
        x = np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        return np.ascontiguousarray(x), np.asarray(d[label_key], dtype=np.int32)
    except (pickle.UnpicklingError, EOFError, KeyError, IndexError, TypeError, ValueError, AttributeError) as e:
        raise DataError(f"{member} is not an official CIFAR python batch ({type(e).__name__}: {e}); "
                        "delete it and download or extract the official archive again") from None


def _read_official(root: pathlib.Path, name: str):
    """From the extracted folder or the tarball in ``root``; None if neither is there."""
    spec = OFFICIAL[name]
    folder, archive = root / spec["folder"], root / spec["archive"]
    if folder.is_dir():
        def read(member):
            p = folder / member
            if not p.is_file():
                raise DataError(f"{p} is missing; re-extract {spec['archive']} or delete {folder}")
            return p.read_bytes()
        where = str(folder)
    elif archive.is_file():
        with tarfile.open(archive, "r:gz") as tar:
            def read_tar(member):
                try:
                    return tar.extractfile(f"{spec['folder']}/{member}").read()
                except (KeyError, AttributeError):
                    raise DataError(f"{archive} has no {spec['folder']}/{member}; it is not the official archive. "
                                    "Delete it and re-download.") from None
            return (*_read_splits(read_tar, spec), str(archive))
    else:
        return None
    return (*_read_splits(read, spec), where)


def _read_splits(read, spec) -> tuple:
    """(x_train, y_train, x_test, y_test) from the official batch files, each read by ``read(member)``."""
    parts = {split: [_unpack_batch(read(m), spec["label_key"], f"{spec['folder']}/{m}") for m in spec[split]]
             for split in ("train", "test")}
    cat = {s: (np.concatenate([a for a, _ in v]), np.concatenate([b for _, b in v])) for s, v in parts.items()}
    return (*cat["train"], *cat["test"])


def _decode_jpegs(blob: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    out = np.empty((len(offsets) - 1, 32, 32, 3), dtype=np.uint8)
    for i in range(len(offsets) - 1):
        with Image.open(io.BytesIO(blob[offsets[i]:offsets[i + 1]].tobytes())) as im:
            out[i] = np.asarray(im.convert("RGB"))
    return out


def _read_jpeg_npz(path: pathlib.Path):
    try:
        with np.load(path, allow_pickle=False) as z:
            arrs = {k: np.array(z[k]) for k in ("train_jpeg", "train_offsets", "train_labels",
                                                 "test_jpeg", "test_offsets", "test_labels")}
        x_tr = _decode_jpegs(arrs["train_jpeg"], arrs["train_offsets"])
        x_te = _decode_jpegs(arrs["test_jpeg"], arrs["test_offsets"])
    except Exception as e:  # zip/Pillow errors all mean "this file is damaged"
        raise DataError(f"{path} is corrupt or not the cifar10-jpeg.npz described in the data README ({e}); "
                        f"its sha256 should be {JPEG_NPZ_SHA256}. Replace the file.") from e
    return x_tr, arrs["train_labels"].astype(np.int32), x_te, arrs["test_labels"].astype(np.int32), str(path)


def verify_jpeg_npz(path: pathlib.Path) -> str:
    """The sha256 of ``path``; raises DataError unless it is :data:`JPEG_NPZ_SHA256` (the
    data README's), so an altered file (relabelled, re-encoded, truncated) is never trained on."""
    digest = file_digest(path, "sha256")
    if digest != JPEG_NPZ_SHA256:
        raise DataError(f"{path} is corrupt or altered: its sha256 is {digest}, but the {JPEG_NPZ} described in the "
                        f"data README has {JPEG_NPZ_SHA256}. Replace the file with the original.")
    return digest


def load_cifar(name: str = "cifar10", data_dir=None, download_missing: bool = True, cache_dir=None) -> Dataset:
    """Load CIFAR-10 or CIFAR-100 as uint8 NHWC arrays in the official order.

    Looks in :func:`candidate_dirs` (``data_dir`` first) for the official folder or
    tarball, then (CIFAR-10) ``cifar10-jpeg.npz``. If none is found and
    ``download_missing``, downloads the official tarball into the user cache
    (:func:`default_download_dir`; reused if already there) and verifies its MD5. Decoded arrays are
    cached under ``cache_dir`` (default ``$SOPJAX_CACHE_DIR``, else ``<user cache>/decoded``,
    :func:`user_cache_dir`) keyed by source; ``cifar10-jpeg.npz`` is checked against its
    known sha256 first. ``source`` of the result names the file found by this call.

    Raises DataError if nothing is found (naming the places searched and the
    fix), on a checksum mismatch, or for a corrupt file; ValueError for an
    unknown dataset name.
    """
    if name not in OFFICIAL:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(OFFICIAL)}")
    dirs = candidate_dirs(data_dir)
    found = None
    for d in dirs:
        for kind, path in (("official", d / OFFICIAL[name]["folder"]), ("official", d / OFFICIAL[name]["archive"]),
                           ("jpeg", d / JPEG_NPZ)):
            if path.exists() and (kind == "official" or name == "cifar10"):
                found = (kind, d, path)
                break
        if found:
            break
    if found is None:
        if not download_missing:
            raise DataError(f"{name} not found in {[str(d) for d in dirs] or 'any data directory'}. "
                            f"Pass --data-dir, set ${ENV_VAR}, or allow the download of {OFFICIAL[name]['archive']}.")
        target = default_download_dir() / OFFICIAL[name]["archive"]
        if not target.is_file():  # a file there was renamed into place only after its MD5 matched
            download(OFFICIAL[name]["url"], target, OFFICIAL[name]["md5"])
        found = ("official", target.parent, target)
    kind, root, path = found
    # The npz is keyed by its verified content; the official files by path, sizes and mtimes.
    key = verify_jpeg_npz(path)[:16] if kind == "jpeg" else source_stamp(path)
    cache = decode_cache.cache_dir(cache_dir) / f"{name}-{kind}-{key}"
    files = [cache / f"{k}.npy" for k in ("x_train", "y_train", "x_test", "y_test")]
    arrs = read_cache(cache, files)
    if arrs is None:
        *arrs, _ = _read_official(root, name) if kind == "official" else _read_jpeg_npz(path)
        write_cache(cache, files, arrs, str(path))
    # The provenance is the file this call found, not whichever copy first filled the cache.
    return Dataset(name, *arrs, num_classes=OFFICIAL[name]["num_classes"], source=str(path))
