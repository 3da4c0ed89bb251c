"""Optional dependencies: each belongs to one extra of the package, and a missing one is
reported in one line that names the ``pip install`` command.

Extras (pyproject.toml): ``plus`` (dm-pix, SOP+'s AutoAugment view), ``stream`` (grain,
folder datasets), ``dop`` (scikit-image and pyrpca, the DOP experiments), ``bench``
(cleanlab), ``parity`` (PyTorch); ``test`` and ``all`` install every one.
"""

from __future__ import annotations

import importlib


class MissingExtra(ImportError, ValueError):
    """An optional dependency is not installed. An ImportError (what it is) and a ValueError
    (so the command-line entry points print its one line and exit 2)."""


# import name -> (distribution, extra)
PACKAGES = {"dm_pix": ("dm-pix", "plus"), "grain": ("grain", "stream"), "skimage": ("scikit-image", "dop"),
            "pyrpca": ("pyrpca", "dop"), "cleanlab": ("cleanlab", "bench"), "torch": ("torch", "parity")}


def install_hint(module: str) -> str:
    """``pip install 'sopjax[<extra>]'`` for the import name ``module`` (one of :data:`PACKAGES`)."""
    return f"pip install 'sopjax[{PACKAGES[module][1]}]'"


def require(module: str, what: str):
    """Import and return the optional package ``module`` (an import name of :data:`PACKAGES`).

    Args:
      module: e.g. "dm_pix", or a submodule such as "skimage.util".
      what: the feature that needs it, for the message, e.g. "--method sop_plus".

    Raises:
      MissingExtra: one line naming the package and the install command.
    """
    try:
        return importlib.import_module(module)
    except ImportError as e:
        top = module.split(".")[0]
        raise MissingExtra(f"{what} needs the optional package {PACKAGES[top][0]} ({e}); install it with "
                           f"{install_hint(top)}") from None
