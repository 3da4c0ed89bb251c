"""A restricted unpickler for the two pickle formats this project reads.

Official CIFAR python batches and CIFAR-N ``.pt`` files are pickles from outside;
unpickling an untrusted file can run arbitrary code. :func:`loads` resolves only
the globals that rebuild numpy arrays (plus ``_codecs.encode``, which protocol-2
pickles use to store bytes) and refuses everything else.
"""

from __future__ import annotations

import codecs
import io
import pickle

import numpy as np

from sopjax.infra.errors import DataError

try:  # numpy ≥ 2 moved the private module; pickles from numpy 1 name the old path
    from numpy._core.multiarray import _reconstruct
except ImportError:  # pragma: no cover
    from numpy.core.multiarray import _reconstruct

_ALLOWED = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("_codecs", "encode"): codecs.encode,
}


class UnsafePickleError(pickle.UnpicklingError, DataError):
    """Raised when a pickle asks for anything but numpy array reconstruction (a DataError:
    the CLI reports it in one line)."""


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refusing to load global {module}.{name}: only numpy arrays are allowed in this file. "
                "The file is not a plain CIFAR / CIFAR-N data file; re-download it from the official source."
            ) from None

    def persistent_load(self, pid):
        raise UnsafePickleError("refusing persistent ids (torch tensors); expected numpy arrays only")


def loads(data: bytes, encoding: str = "ASCII"):
    """Unpickle ``data`` allowing only numpy arrays, dtypes and builtin containers.

    Raises UnsafePickleError (a pickle.UnpicklingError) for any other global.
    ``encoding='bytes'`` reads Python-2 pickles (the official CIFAR batches).
    """
    return _NumpyOnlyUnpickler(io.BytesIO(data), encoding=encoding).load()
