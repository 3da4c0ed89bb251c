"""The optimizer of an SOP run: the user's transformation for the network, plain SGD for
the tables (the authors' ``train.py``: two optimizers that step together), for any
parameter tree."""

from __future__ import annotations

from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import optax

TABLE_KEYS = ("u", "v")


def _node(tree, path):
    """The subtree of ``tree`` at key path ``path`` (dict keys, sequence indices, attributes), or None."""
    for entry in path:
        try:
            if isinstance(entry, jax.tree_util.DictKey):
                tree = tree[entry.key]
            elif isinstance(entry, jax.tree_util.SequenceKey):
                tree = tree[entry.idx]
            elif isinstance(entry, jax.tree_util.GetAttrKey):
                tree = getattr(tree, entry.name)
            else:
                return None
        except (KeyError, IndexError, TypeError, AttributeError):
            return None
    return tree


def _label(path, params) -> str:
    last = path[-1] if path else None
    if not (isinstance(last, jax.tree_util.DictKey) and last.key in TABLE_KEYS):
        return "net"
    parent = _node(params, path[:-1])
    return last.key if isinstance(parent, Mapping) and all(k in parent for k in TABLE_KEYS) else "net"


def table_labels(params):
    """The default label function of :func:`sop_optimizer`: where the SOP tables are in any
    parameter tree.

    A leaf is the table u (v) when it is the value of a mapping's key "u" ("v") and that
    mapping holds both keys, "u" and "v": the dict of :func:`~sopjax.core.tables.init_tables`,
    wherever it sits (``{"net": …, "tables": tables}``, ``(net_params, tables)``,
    ``{"net": …, **tables}``). Every other leaf is "net".

    Args:
      params: any pytree (dicts, flax FrozenDicts, lists, tuples, dataclass nodes).

    Returns:
      A pytree of the same structure whose leaves are "u", "v" or "net".
    """
    return jax.tree_util.tree_map_with_path(lambda path, _: _label(path, params), params)


def table_lr(lr: float, warmup_steps: int = 0):
    """The learning rate of a table: the constant ``lr`` (the paper), or 0 for the first
    ``warmup_steps`` steps and ``lr`` after (tables that wait while the network learns the
    clean patterns). Units: optimizer steps."""
    if warmup_steps <= 0:
        return lr
    return lambda step: jnp.where(step < warmup_steps, 0.0, lr)


def sop_optimizer(net: optax.GradientTransformation, lr_u, lr_v,
                  labels: Callable | Any | None = None) -> optax.GradientTransformation:
    """The SOP optimizer for any parameter tree: plain SGD at ``lr_u`` / ``lr_v`` on the tables
    u, v, and ``net`` on every other leaf.

    The tables get no momentum, weight decay or schedule of the network's, so a row outside
    the batch (zero gradient) never moves (the authors' ``train.py``: two optimizers that
    step together; paper Algorithm 1, lines 6–8).

    Args:
      net: any optax transformation (e.g. ``optax.adamw(1e-3)``), applied to every leaf
        labelled "net".
      lr_u, lr_v: SGD learning rates of u and v, a float or an optax schedule (of the step
        count). They multiply the gradient of the batch-mean loss (Table A.1's values, as the
        authors' code uses them: 10 on CIFAR with batch 128).
      labels: where the tables are. None (default): :func:`table_labels`, i.e. any mapping
        holding both keys "u" and "v"; or a function from the parameter tree to a label tree;
        or a label tree itself (same structure as the parameters, or a prefix of it), each
        label "u", "v" or "net".

    Returns:
      An ``optax.GradientTransformation`` (an ``optax.partition``). A tree without tables
      (a cross-entropy run) is trained by ``net`` alone.

    Raises:
      ValueError: from ``init``/``update`` when a label is not "u", "v" or "net".

    Example:
      >>> params = {"net": net_params, "tables": init_tables(key, N, K)}
      >>> tx = sop_optimizer(optax.sgd(0.02, momentum=0.9), lr_u=10.0, lr_v=10.0)
      >>> opt_state = tx.init(params)
    """
    return optax.partition({"net": net, "u": optax.sgd(lr_u), "v": optax.sgd(lr_v)},
                           table_labels if labels is None else labels)
