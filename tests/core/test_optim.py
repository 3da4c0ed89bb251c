"""The SOP optimizer on any parameter tree: plain SGD on the tables wherever they sit, the
user's transformation on everything else."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax.core import FrozenDict

from sopjax.core.optim import sop_optimizer, table_labels
from sopjax.core.tables import init_tables

TABLES = init_tables(jax.random.PRNGKey(0), 6, 3, std=0.1)
NET = {"Dense_0": {"kernel": jnp.ones((2, 3)), "bias": jnp.zeros(3)}}


@pytest.mark.parametrize("params, where", [
    ({"net": NET, **TABLES}, lambda t: {k: t[k] for k in ("u", "v")}),
    ({"net": NET, "tables": TABLES}, lambda t: t["tables"]),
    ((FrozenDict(NET), TABLES), lambda t: t[1]),
    ({"model": [NET, {"sop": TABLES}]}, lambda t: t["model"][1]["sop"]),
])
def test_table_labels_find_the_tables_wherever_they_sit(params, where):
    labels = table_labels(params)
    assert where(labels) == {"u": "u", "v": "v"}
    others = [leaf for leaf in jax.tree.leaves(labels) if leaf not in ("u", "v")]
    assert others and set(others) == {"net"}  # every network leaf, at any depth, is "net"


def test_a_lone_u_or_v_in_the_network_is_network():
    # a layer parameter named "u" without a sibling "v" is not a table
    assert table_labels({"net": {"u": jnp.ones(2), "w": jnp.ones(2)}}) == {"net": {"u": "net", "w": "net"}}


def _step(tx, params, grads):
    updates, _ = tx.update(grads, tx.init(params), params)
    return optax.apply_updates(params, updates)


def test_tables_get_plain_sgd_and_the_network_its_own_transformation():
    params = {"net": NET, "tables": TABLES}
    grads = jax.tree.map(jnp.ones_like, params)
    grads["tables"]["u"] = grads["tables"]["u"].at[0].set(0.0)  # row 0 outside the batch: zero gradient
    new = _step(sop_optimizer(optax.adam(0.5), lr_u=2.0, lr_v=3.0), params, grads)
    np.testing.assert_allclose(new["tables"]["u"][1:], TABLES["u"][1:] - 2.0, rtol=1e-6)
    np.testing.assert_array_equal(new["tables"]["u"][0], TABLES["u"][0])  # a row outside the batch never moves
    np.testing.assert_allclose(new["tables"]["v"], TABLES["v"] - 3.0, rtol=1e-6)
    # adam's first step moves every network leaf by about lr, whatever the gradient's size
    np.testing.assert_allclose(new["net"]["Dense_0"]["kernel"], 1.0 - 0.5, rtol=1e-5)


def test_an_explicit_label_tree_overrides_the_default():
    params = {"a": jnp.ones(3), "b": jnp.ones(3)}
    labels = {"a": "u", "b": "net"}
    new = _step(sop_optimizer(optax.sgd(0.0), lr_u=1.0, lr_v=1.0, labels=labels), params,
                jax.tree.map(jnp.ones_like, params))
    np.testing.assert_array_equal(new["a"], 0.0)
    np.testing.assert_array_equal(new["b"], 1.0)
