"""sopjax: Sparse Over-Parameterization (SOP) for training classifiers on noisy labels, in JAX.

The public API (docs/api.md), in the style of optax: the per-sample tables, the optimizer
that trains them next to your network, the losses and the noise score for your own
training loop; ``fit`` and ``Config`` for a whole run with its records.

    >>> import sopjax
    >>> tables = sopjax.init_tables(key, num_samples, num_classes)      # u (N, 1), v (N, K)
    >>> params = {"net": net_params, "tables": tables}
    >>> tx = sopjax.sop_optimizer(optax.adamw(1e-3), lr_u=10.0, lr_v=10.0)
    >>> loss, aux = sopjax.sop_loss(logits, y, tables["u"][idx], tables["v"][idx])

Names are loaded on first use (PEP 562), so ``import sopjax.core.losses`` or the theory
scripts do not import the training stack.
"""

from __future__ import annotations

import importlib

__version__ = "0.2.0"

# name -> module that defines it
_EXPORTS = {
    # the tables and their optimizer (paper Algorithm 1)
    "init_tables": "sopjax.core.tables",
    "sop_optimizer": "sopjax.core.optim",
    "table_labels": "sopjax.core.optim",
    "table_lr": "sopjax.core.optim",
    # the losses (paper eqs. 4–9; SOP+ §4, App. A.3) and the noise score (eq. 5)
    "cross_entropy": "sopjax.core.losses",
    "sop_loss": "sopjax.core.losses",
    "sop_plus_loss": "sopjax.core.losses",
    "noise_score": "sopjax.core.losses",
    # finding label issues: a run's ranked, flagged training labels (docs/label_issues.md)
    "find_label_issues": "sopjax.find_label_issues",
    # whole runs: config, data, training, logging
    "Config": "sopjax.configs.config",
    "load_config": "sopjax.configs.files",
    "Arrays": "sopjax.data.arrays",
    "LabelSet": "sopjax.data.noise",
    "fit": "sopjax.trainers.fit",
    "Callback": "sopjax.trainers.loop",
    "RunLogs": "sopjax.trainers.logs",
    "TrainState": "sopjax.core.state",
}
_ALIASES = {"load_config": "load"}  # exported name -> name in its module

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'sopjax' has no attribute {name!r}")
    value = importlib.import_module(module)
    # The module sopjax.find_label_issues is itself callable (it forwards to its function), and
    # importing it binds it to this attribute anyway: export the module, not the function.
    value = value if module == f"sopjax.{name}" else getattr(value, _ALIASES.get(name, name))
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
