"""SOP+ loss (paper §4, App. A.3; the authors' overparametrization_loss with λ_C, λ_B)."""

import jax
import jax.numpy as jnp
import numpy as np

from sopjax.core import losses


def _batch(seed=0, B=16, K=10):
    k = jax.random.split(jax.random.PRNGKey(seed), 5)
    weak = 2 * jax.random.normal(k[0], (B, K))
    strong = 2 * jax.random.normal(k[1], (B, K))
    labels = jax.random.randint(k[2], (B,), 0, K)
    u = jnp.clip(0.5 * jax.random.normal(k[3], (B, 1)), -0.95, 0.95)
    v = jnp.clip(0.3 * jax.random.normal(k[4], (B, K)), -0.95, 0.95)
    return weak, strong, labels, u, v


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_value_is_sop_plus_kl_weak_to_strong_plus_balance_on_adjusted_prediction():
    weak, strong, labels, u, v = _batch()
    loss, aux = losses.sop_plus_loss(weak, strong, labels, u, v, lambda_c=0.9, lambda_b=0.1)
    sop, _ = losses.sop_loss(weak, labels, u, v)
    p, q = _softmax(np.asarray(weak, np.float64)), _softmax(np.asarray(strong, np.float64))
    kl = np.mean(np.sum(p * (np.log(p) - np.log(q)), -1))          # KL(p_weak ‖ p_strong)
    y = np.eye(10)[np.asarray(labels)]
    U2 = np.clip(np.asarray(u) ** 2 * y, 0, 1)
    V2 = np.clip(np.asarray(v) ** 2 * (1 - y), 0, 1)
    ph = np.maximum(p + U2 - V2, 1e-4)
    ph = np.clip(ph / ph.sum(-1, keepdims=True), 1e-4, 1)
    balance = -np.mean(np.log(np.clip(ph.mean(0), 1e-4, 1)))       # −Σ_k (1/K) log mean_i p̂_ik
    np.testing.assert_allclose(aux["consistency"], kl, rtol=1e-5)
    np.testing.assert_allclose(aux["balance"], balance, rtol=1e-5)
    np.testing.assert_allclose(loss, float(sop) + 0.9 * kl + 0.1 * balance, rtol=1e-5)
    # the reverse direction KL(p_strong ‖ p_weak) is a different number on this batch
    assert abs(np.mean(np.sum(q * (np.log(q) - np.log(p)), -1)) - kl) > 0.05


def test_consistency_pulls_only_the_strong_view():
    weak, strong, labels, u, v = _batch(1)
    f = lambda w, s: losses.sop_plus_loss(w, s, labels, u, v)[1]["consistency"]
    g_weak = jax.grad(f, argnums=0)(weak, strong)
    g_strong = jax.grad(f, argnums=1)(weak, strong)
    assert np.all(np.asarray(g_weak) == 0.0)   # the weak view is a stopped target
    B = weak.shape[0]
    # d/dz_strong KL(p ‖ softmax(z_strong)) = (softmax(z_strong) − p) / B for the batch mean
    expected = (jax.nn.softmax(strong) - jax.nn.softmax(weak)) / B
    np.testing.assert_allclose(g_strong, expected, rtol=1e-5, atol=1e-7)


def test_balance_gradient_reaches_u_and_v_stays_mse_only():
    weak, strong, labels, u, v = _batch(2)
    gu_plus = jax.grad(lambda u_: losses.sop_plus_loss(weak, strong, labels, u_, v, 0.9, 0.1)[0])(u)
    gu_sop = jax.grad(lambda u_: losses.sop_loss(weak, labels, u_, v)[0])(u)
    gu_bal = jax.grad(lambda u_: losses.sop_plus_loss(weak, strong, labels, u_, v)[1]["balance"])(u)
    assert np.abs(np.asarray(gu_bal)).max() > 1e-4
    np.testing.assert_allclose(gu_plus, gu_sop + 0.1 * gu_bal, rtol=1e-5, atol=1e-9)
    gv_plus = jax.grad(lambda v_: losses.sop_plus_loss(weak, strong, labels, u, v_)[0])(v)
    gv_mse = jax.grad(lambda v_: losses.sop_loss(weak, labels, u, v_)[1]["mse"])(v)
    np.testing.assert_allclose(gv_plus, gv_mse, rtol=1e-5, atol=1e-9)


def test_zero_weights_give_plain_sop_on_the_weak_view():
    weak, strong, labels, u, v = _batch(3)
    loss, _ = losses.sop_plus_loss(weak, strong, labels, u, v, lambda_c=0.0, lambda_b=0.0)
    np.testing.assert_allclose(loss, losses.sop_loss(weak, labels, u, v)[0], rtol=1e-6)
