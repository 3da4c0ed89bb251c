"""The decoded-data cache: uint8 ``.npy`` arrays of a decoded source, in a folder per source.

A folder is complete once its ``source.txt`` exists (written last, and the folder renamed
into place whole); an incomplete or unreadable one is decoded again, never reported as an
error, since the cache only saves time.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import shutil

import numpy as np


def user_cache_dir() -> pathlib.Path:
    """``$XDG_CACHE_HOME/sopjax`` (default ``~/.cache/sopjax``): downloads and decoded arrays,
    never the source tree or a data folder found elsewhere, which may be shared or read-only."""
    return pathlib.Path(os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache") / "sopjax"


def cache_dir(explicit=None) -> pathlib.Path:
    """``explicit``, else ``$SOPJAX_CACHE_DIR``, else ``<user cache>/decoded``."""
    return pathlib.Path(explicit or os.environ.get("SOPJAX_CACHE_DIR") or user_cache_dir() / "decoded")


def source_stamp(path: pathlib.Path) -> str:
    """Cache key of a source: its absolute path, and the sizes and mtimes of its files (an
    extracted folder's own mtime does not change when a file in it is rewritten)."""
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    h = hashlib.sha256(str(path.resolve()).encode())
    for f in files:
        st = f.stat()
        h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()[:16]


def read_cache(cache: pathlib.Path, files) -> list | None:
    """The cached arrays, or None when the cache is incomplete (``source.txt`` is written
    last) or unreadable (then it is decoded again)."""
    if not (cache / "source.txt").is_file() or not all(f.is_file() for f in files):
        return None
    try:
        arrs = [np.load(f, allow_pickle=False) for f in files]
    except (OSError, ValueError) as e:
        print(f"warning: the decoded-data cache {cache} cannot be read ({e}); decoding again")
        return None
    if len(arrs[0]) != len(arrs[1]) or len(arrs[2]) != len(arrs[3]):
        print(f"warning: the decoded-data cache {cache} is inconsistent; decoding again")
        return None
    return arrs


def write_cache(cache: pathlib.Path, files, arrs, src: str) -> None:
    """Save the decoded arrays into a temporary folder renamed into place, so a kill never
    leaves a partial cache; the cache only saves time, so an unwritable one is skipped."""
    tmp = cache.with_name(f"{cache.name}.partial-{os.getpid()}")
    try:
        tmp.mkdir(parents=True, exist_ok=True)
        for f, a in zip(files, arrs):
            np.save(tmp / f.name, a)
        (tmp / "source.txt").write_text(src)  # last: marks the cache complete
        if cache.exists():  # an incomplete cache of an older version
            shutil.rmtree(cache)
        os.rename(tmp, cache)
    except OSError as e:
        if not (cache / "source.txt").is_file():  # another process may have filled it meanwhile
            print(f"warning: cannot write the decoded-data cache {cache} ({e.strerror}); set $SOPJAX_CACHE_DIR "
                  "to a writable folder to load faster next time")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
