"""The optimizer of an SOP run: the user's transformation for the network, plain SGD for
the tables (the authors' ``train.py``: two optimizers that step together)."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax

TABLE_KEYS = ("u", "v")


def top_level_labels(params) -> dict:
    """The default label function: every leaf under the top-level key "u" is labelled "u",
    under "v" "v", and every other leaf "net". ``params`` must be a dict."""
    return {k: jax.tree.map(lambda _, k=k: k if k in TABLE_KEYS else "net", sub) for k, sub in params.items()}


def table_lr(lr: float, warmup_steps: int = 0):
    """The learning rate of a table: the constant ``lr`` (the paper), or 0 for the first
    ``warmup_steps`` steps and ``lr`` after (tables that wait while the network learns the
    clean patterns). Units: optimizer steps."""
    if warmup_steps <= 0:
        return lr
    return lambda step: jnp.where(step < warmup_steps, 0.0, lr)


def sop_optimizer(net: optax.GradientTransformation, lr_u, lr_v,
                  labels: Callable | None = None) -> optax.GradientTransformation:
    """Train the network with ``net`` and the tables u, v with plain SGD.

    The tables get no momentum, weight decay or schedule of the network's, so a row
    outside the batch (zero gradient) never moves (the authors' ``train.py``).

    Args:
      net: any optax transformation, applied to every leaf labelled "net".
      lr_u, lr_v: SGD learning rates of u and v, a float or an optax schedule (per step).
        They multiply the gradient of the batch-mean loss (Table A.1's values, as the
        authors' code uses them).
      labels: a function from the parameter tree to a tree of the same structure whose
        leaves are "u", "v" or "net"; default :func:`top_level_labels` (the tables are the
        top-level keys "u" and "v", e.g. ``{"net": …, "u": …, "v": …}``).

    Returns:
      An ``optax.GradientTransformation`` (an ``optax.partition``).

    Example:
      >>> tx = sop_optimizer(optax.sgd(0.02, momentum=0.9), lr_u=10.0, lr_v=10.0)
      >>> opt_state = tx.init({"net": net_params, **tables})
    """
    return optax.partition({"net": net, "u": optax.sgd(lr_u), "v": optax.sgd(lr_v)}, labels or top_level_labels)
