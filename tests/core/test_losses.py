"""SOP loss (paper eqs. 7–9, App. A; reference code) and cross-entropy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sopjax.core import losses


def _batch(seed=0, B=16, K=10, scale=0.5):
    k = jax.random.split(jax.random.PRNGKey(seed), 4)
    logits = jax.random.normal(k[0], (B, K))
    labels = jax.random.randint(k[1], (B,), 0, K)
    # inside the box [−1, 1] of eq. (6), where the clamps are inactive
    u = jnp.clip(scale * jax.random.normal(k[2], (B, 1)), -0.95, 0.95)
    v = jnp.clip(scale * jax.random.normal(k[3], (B, K)), -0.95, 0.95)
    return logits, labels, u, v


@pytest.mark.parametrize("variant", ["reference", "paper"])
def test_mse_gradient_in_v_matches_appendix_a4(variant):
    logits, labels, u, v = _batch()
    B, K = logits.shape
    y = jax.nn.one_hot(labels, K)
    g = jax.grad(lambda v_: losses.sop_loss(logits, labels, u, v_, variant)[1]["mse"])(v)
    h = jax.nn.one_hot(jnp.argmax(logits, -1), K)  # f replaced by onehot(argmax f)
    U2, V2 = losses.noise_squares(u, v, y)
    # App. A eq. (A.4) with the sign from differentiating s = u²y − v²(1−y), over the batch mean
    expected = -4 * (h + U2 - V2 - y) * v * (1 - y) / B
    np.testing.assert_allclose(g, expected, rtol=1e-5, atol=1e-7)
    # the whole loss trains v through the MSE term alone
    g_total = jax.grad(lambda v_: losses.sop_loss(logits, labels, u, v_, variant)[0])(v)
    np.testing.assert_allclose(g_total, expected, rtol=1e-5, atol=1e-7)


def test_ce_gradient_in_v_is_zero_under_stop_gradient():
    logits, labels, u, v = _batch(1)
    g = jax.grad(lambda v_: losses.sop_loss(logits, labels, u, v_)[1]["ce"])(v)
    assert np.all(np.asarray(g) == 0.0)
    # ...and it is not trivially zero: without the stop-gradient CE would move v (App. A eq. A.2)
    y = jax.nn.one_hot(labels, 10)

    def ce_no_sg(v_):
        U2, V2 = losses.noise_squares(u, v_, y)
        p = jnp.maximum(jax.nn.softmax(logits) + U2 - V2, losses.EPS)
        p = p / p.sum(-1, keepdims=True)
        return -jnp.mean(jnp.sum(y * jnp.log(p), -1))

    assert np.abs(np.asarray(jax.grad(ce_no_sg)(v))).max() > 1e-4


def test_variants_differ_only_in_u_gradient_of_mse():
    logits, labels, u, v = _batch(2)
    gu_ref = jax.grad(lambda u_: losses.sop_loss(logits, labels, u_, v, "reference")[0])(u)
    gu_pap = jax.grad(lambda u_: losses.sop_loss(logits, labels, u_, v, "paper")[0])(u)
    gu_ce = jax.grad(lambda u_: losses.sop_loss(logits, labels, u_, v)[1]["ce"])(u)
    np.testing.assert_allclose(gu_pap, gu_ce, rtol=1e-6)  # Alg. 1: u from CE only
    assert np.abs(np.asarray(gu_ref - gu_pap)).max() > 1e-5
    with pytest.raises(ValueError, match="variant"):
        losses.sop_loss(logits, labels, u, v, "nope")


def test_sop_with_zero_tables_is_clamped_cross_entropy():
    logits, labels, u, v = _batch(3, scale=0.0)
    loss, aux = losses.sop_loss(logits, labels, u, v)
    p = np.clip(np.asarray(jax.nn.softmax(logits)), 1e-4, 1.0)
    p = np.clip(p / p.sum(-1, keepdims=True), 1e-4, 1)
    ce = -np.mean(np.log(p[np.arange(len(labels)), np.asarray(labels)]))
    np.testing.assert_allclose(aux["ce"], ce, rtol=1e-5)
    hard = np.eye(10)[np.asarray(logits).argmax(-1)]
    np.testing.assert_allclose(
        aux["mse"], np.sum((hard - np.eye(10)[np.asarray(labels)]) ** 2) / len(labels), rtol=1e-6
    )
    np.testing.assert_allclose(
        losses.cross_entropy(logits, labels),
        -np.mean(np.asarray(jax.nn.log_softmax(logits))[np.arange(16), np.asarray(labels)]),
        rtol=1e-6,
    )
