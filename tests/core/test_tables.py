"""The per-sample tables' running label-issue sums (sopjax.core.tables)."""

import jax.numpy as jnp
import numpy as np

from sopjax.core import tables


def test_issue_terms_are_added_at_the_batch_rows_only_once_u_trains():
    stats = tables.init_sample_stats(6, start_step=3)
    idx = jnp.array([4, 1], jnp.int32)
    u_rows = jnp.array([[0.5], [3.0]])  # U² = 0.25 and 1 (clamped)
    logits = jnp.log(jnp.array([[0.2, 0.8], [0.6, 0.4]]))
    y = jnp.array([1, 0], jnp.int32)  # p_y = 0.8, 0.6
    before = tables.accumulate_issue(stats, jnp.int32(2), idx, u_rows, logits, y)
    np.testing.assert_array_equal(before["issue_sum"], 0.0)
    np.testing.assert_array_equal(before["issue_count"], 0.0)
    after = tables.accumulate_issue(stats, jnp.int32(3), idx, u_rows, logits, y)
    after = tables.accumulate_issue(after, jnp.int32(4), idx, u_rows, logits, y)
    expected = np.zeros(6)
    expected[[4, 1]] = 2 * 0.5 * (np.array([0.25, 1.0]) + 1 - np.array([0.8, 0.6]))
    np.testing.assert_allclose(after["issue_sum"], expected, rtol=1e-6)
    np.testing.assert_array_equal(after["issue_count"], [0, 2, 0, 0, 2, 0])
    assert int(after["start_step"]) == 3


def test_tables_that_never_train_never_count():
    stats = tables.init_sample_stats(2, start_step=tables.NEVER + 10)
    out = tables.accumulate_issue(stats, jnp.int32(10**9), jnp.array([0, 1]), jnp.ones((2, 1)), jnp.zeros((2, 3)),
                                  jnp.array([0, 2]))
    assert float(out["issue_count"].sum()) == 0.0
