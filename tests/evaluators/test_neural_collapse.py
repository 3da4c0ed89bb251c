"""NC1–NC4 on synthetic features with known values (Papyan, Han, Donoho 2020)."""

import numpy as np
import pytest

from sopjax.evaluators import neural_collapse as nc


def simplex_etf(K, D, scale=3.0):
    """K class means forming a simplex ETF in R^D (D ≥ K): centered, equal norms, cos = −1/(K−1)."""
    M = np.eye(K)[:, :] - 1.0 / K
    M = np.pad(M, ((0, 0), (0, D - K)))
    return scale * M / np.linalg.norm(M, axis=1, keepdims=True)


def collapsed(K=5, D=8, n=7):
    """Features equal to their class mean (an ETF), classifier W = means, zero bias."""
    means = simplex_etf(K, D)
    y = np.repeat(np.arange(K), n)
    return means[y], y, means.copy(), np.zeros(K)


def random_rotation(D, rng):
    Q, R = np.linalg.qr(rng.standard_normal((D, D)))
    return Q * np.sign(np.diag(R))


def test_perfect_simplex_etf_is_fully_collapsed():
    H, y, W, b = collapsed()
    m = nc.nc_metrics(H, y, W, b, 5)
    for k in ("nc1", "nc2_equinorm", "nc2_etf", "nc2_maxangle", "nc3", "nc4"):
        assert m[k] == pytest.approx(0.0, abs=1e-10), k


def test_nc2_detects_unequal_norms_and_non_etf_angles():
    # Orthonormal class means (cos 0, not −1/(K−1)) are not a simplex ETF once centered
    # only if norms differ; scale one mean to break equinorm and the ETF Gram.
    K = 4
    means = np.eye(K) * np.array([1.0, 1.0, 1.0, 3.0])[:, None]
    y = np.arange(K)
    m = nc.nc_metrics(means, y, means, np.zeros(K), K)
    assert m["nc2_equinorm"] > 0.1 and m["nc2_etf"] > 0.1 and m["nc2_maxangle"] > 0.05


def test_all_measures_invariant_to_rotation():
    rng = np.random.default_rng(0)
    K, D, n = 4, 6, 30
    y = rng.integers(0, K, K * n)
    H = rng.standard_normal((K, D))[y] + 0.7 * rng.standard_normal((len(y), D))
    W, b = rng.standard_normal((K, D)), rng.standard_normal(K)
    Q = random_rotation(D, rng)
    before = nc.nc_metrics(H, y, W, b, K)
    after = nc.nc_metrics(H @ Q.T, y, W @ Q.T, b, K)
    assert before["nc4"] > 0 and before["nc1"] > 0.01  # a non-trivial case
    for k, v in before.items():
        assert after[k] == pytest.approx(v, rel=1e-8, abs=1e-12), k


def test_nc1_known_value_two_classes():
    # Means ±1 on one axis, within-class offsets ±σ on that axis: Σ_W = σ², Σ_B = 1 ⇒ NC1 = σ²/2.
    sigma = 0.3
    y = np.array([0, 0, 1, 1])
    H = np.array([[-1 - sigma], [-1 + sigma], [1 - sigma], [1 + sigma]])
    m = nc.nc_metrics(H, y, np.array([[-1.0], [1.0]]), np.zeros(2), 2)
    assert m["nc1"] == pytest.approx(sigma**2 / 2)


def test_nc3_known_values():
    H, y, W, b = collapsed(K=3, D=3)
    assert nc.nc_metrics(H, y, -W, b, 3)["nc3"] == pytest.approx(4.0)  # anti-aligned: ‖2a‖² with ‖a‖_F = 1
    assert nc.nc_metrics(H, y, 5 * W, b, 3)["nc3"] == pytest.approx(0.0, abs=1e-12)  # scale-free


def test_nc4_counts_disagreement_with_nearest_center():
    K, n = 5, 7
    H, y, W, b = collapsed(K=K, n=n)
    W_swapped = W[[1, 0, 2, 3, 4]]  # classifier calls class 0 "1" and class 1 "0"
    assert nc.nc_metrics(H, y, W_swapped, b, K)["nc4"] == pytest.approx(2 / K)


def test_empty_class_is_left_out_and_bad_shapes_raise():
    H, y, W, b = collapsed(K=5)
    keep = y != 4
    m = nc.nc_metrics(H[keep], y[keep], W, b, 5)
    # The four remaining ETF vectors are no longer a 4-class ETF around their own mean.
    assert np.isfinite(list(m.values())).all() and m["nc1"] == pytest.approx(0.0, abs=1e-10)
    with pytest.raises(ValueError, match="shapes"):
        nc.nc_metrics(H, y, W[:, :3], b, 5)
    with pytest.raises(ValueError, match="two classes"):
        nc.nc_metrics(H[y == 0], y[y == 0], W, b, 5)


def test_all_measures_invariant_to_feature_scale():
    # Each measure is a ratio; scaling h (and W inversely, so logits stay) must not move it.
    rng = np.random.default_rng(1)
    K, D = 3, 5
    y = np.repeat(np.arange(K), 20)
    H = rng.standard_normal((K, D))[y] * np.array([1.0, 2.0, 3.0])[y, None] + 0.5 * rng.standard_normal((len(y), D))
    W, b = rng.standard_normal((K, D)), rng.standard_normal(K)
    before, after = nc.nc_metrics(H, y, W, b, K), nc.nc_metrics(4.0 * H, y, W / 4.0, b, K)
    assert before["nc2_equinorm"] > 0.05
    for k, v in before.items():
        assert after[k] == pytest.approx(v, rel=1e-8, abs=1e-12), k


def test_last_layer_returns_the_heads_input_and_weights():
    # The logits must be exactly H Wᵀ + b: catches capturing the wrong Dense (an MLP hidden
    # layer) or its output instead of its input.
    import jax

    from sopjax import models

    # The MLP has three Dense layers, so only the last one is right; (a ResNet's only Dense
    # is its head, and compiling one here would cost tens of seconds).
    for arch in ("mlp",):
        m = models.make_model(arch, 10, 0.125)
        x = jax.random.normal(jax.random.PRNGKey(0), (3, 8, 8, 3))
        v = m.init(jax.random.PRNGKey(1), x, train=False)
        logits, H, W, b = jax.jit(lambda v, x: nc.last_layer(m.apply, v, x))(v, x)
        assert H.shape == (3, 64) and W.shape == (10, 64) and b.shape == (10,)
        np.testing.assert_allclose(logits, H @ W.T + b, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(logits, m.apply(v, x, train=False), rtol=1e-5, atol=1e-6)


def test_nc_record_given_vs_true_labels():
    # Features collapsed onto the true classes: NC1 is 0 against the true labels and
    # positive against labels where one sample's label is wrong.
    H, y, W, b = collapsed(K=3, D=3, n=4)
    given = y.copy()
    given[0] = 1
    r = nc.nc_record(H, given, y, W, b, 3)
    assert r["nc1_true"] == pytest.approx(0.0, abs=1e-10) and r["nc1_given"] > 0.01
    assert set(r) == {f"{k}_{t}" for k in ("nc1", "nc2_equinorm", "nc2_etf", "nc2_maxangle", "nc3", "nc4")
                      for t in ("given", "true")}
