"""Tests of theory.linear_model: GD (16), the flow limit (20), coherence (27)."""

import numpy as np
import pytest

from theory import convex as cx
from theory import linear_model as lm

GAMMA = float(np.exp(-8))


def test_make_problem_is_seeded_and_consistent():
    a, b = lm.make_problem(20, 40, 3, 3, seed=7), lm.make_problem(20, 40, 3, 3, seed=7)
    np.testing.assert_array_equal(a.J, b.J)
    assert np.linalg.matrix_rank(a.J) == 3
    assert np.count_nonzero(a.s_star) == 3
    np.testing.assert_allclose(a.J @ a.theta_star + a.s_star, a.y, atol=1e-10)
    # θ★ is the minimum-norm solution: it lies in the row space of J.
    np.testing.assert_allclose(np.linalg.pinv(a.J) @ a.J @ a.theta_star, a.theta_star, atol=1e-10)
    batch = lm.make_problems(20, 40, 3, 3, seed=7, trials=3)
    assert batch.J.shape == (3, 20, 40)
    # a trial does not depend on how many trials were asked for
    np.testing.assert_array_equal(lm.make_problems(20, 40, 3, 3, seed=7, trials=5).J[:3], batch.J)
    with pytest.raises(ValueError, match="rank r"):
        lm.make_problem(20, 40, 50, 3, seed=0)


@pytest.mark.parametrize("lam,seed", [(1.0, 101), (0.3, 202)])
def test_gd_matches_convex_in_exact_recovery_regime(lam, seed):
    P = lm.make_problem(20, 40, 3, 3, seed=seed)
    th_c, s_c, status = cx.solve_l2_l1(P.J, P.y, lam)
    assert status == "optimal"
    th_g, s_g, info = lm.gradient_descent(P.J, P.y, lm.alpha_for(lam, GAMMA), GAMMA)
    assert info.finite
    assert lm.relative_distance(th_g, th_c) <= 1e-3
    assert lm.relative_distance(s_g, s_c) <= 1e-2


@pytest.fixture(scope="module")
def nontrivial():
    """An instance and a λ whose convex solution is far from θ★ (Prop. 3.3 is non-trivial)."""
    lam = 0.01
    P = lm.make_problem(20, 40, 3, 3, seed=5)
    th_c, s_c, status = cx.solve_l2_l1(P.J, P.y, lam)
    assert status == "optimal"
    assert lm.relative_error(th_c, P.theta_star) >= 0.1
    return P, lam, th_c


def test_gamma_to_zero_limit_of_prop_3_3(nontrivial):
    P, lam, th_c = nontrivial
    rhos = []
    for log_gamma in (-8, -16, -32):
        g = float(np.exp(log_gamma))
        th, _, info = lm.gradient_descent(P.J, P.y, lm.alpha_for(lam, g), g)
        assert info.converged
        rhos.append(lm.relative_distance(th, th_c))
    assert rhos[0] > rhos[1] > rhos[2], rhos
    assert rhos[2] <= 0.1, rhos


def test_off_the_curve_gd_differs_from_convex(nontrivial):
    P, lam, _ = nontrivial
    th_far, _, status = cx.solve_l2_l1(P.J, P.y, 1.0)
    assert status == "optimal"
    th_g, _, _ = lm.gradient_descent(P.J, P.y, lm.alpha_for(lam, GAMMA), GAMMA)
    assert lm.relative_distance(th_g, th_far) >= 0.1


@pytest.fixture(scope="module")
def fig2_instance_at_lam_001():
    """Fig. 2's instance (seed 0) at λ = 0.01, where GD's residual vanishes long before θ settles."""
    P = lm.make_problem(20, 40, 3, 3, seed=0)
    a = float(lm.alpha_for(0.01, GAMMA))
    return P, a, lm.flow_limit(P.J, P.y, a, GAMMA)[0]


def test_gd_reaches_the_flow_limit_and_its_gap_is_order_tau(fig2_instance_at_lam_001):
    # Catches: stopping on the residual alone (8% away) and the old step rule (4.5% away).
    P, a, th_f = fig2_instance_at_lam_001
    tau0 = lm.default_tau(P.J, P.y, a)
    gaps = []
    for tau in (tau0, tau0 / 2):
        th, _, info = lm.gradient_descent(P.J, P.y, a, GAMMA, tau=tau)
        assert info.converged, info
        gaps.append(lm.relative_distance(th, th_f))
    assert gaps[0] <= 0.02, gaps
    assert 1.7 <= gaps[0] / gaps[1] <= 2.3, gaps  # O(τ): halving τ halves the gap


def test_gd_stops_at_its_own_limit_not_at_a_small_residual(fig2_instance_at_lam_001):
    P, a, _ = fig2_instance_at_lam_001
    th, s, info = lm.gradient_descent(P.J, P.y, a, GAMMA)
    # the same run forced on for twice as many steps (no stopping rule) barely moves
    th2, s2, info2 = lm.gradient_descent(P.J, P.y, a, GAMMA, tol=0.0, xtol=0.0, max_iter=2 * int(info.iterations))
    assert info2.iterations == 2 * info.iterations
    assert lm.relative_distance(th, th2) <= 1e-5
    # while a residual-only stop (xtol = inf) halts earlier, much farther from that limit
    th_r, _, info_r = lm.gradient_descent(P.J, P.y, a, GAMMA, tol=1e-7, xtol=np.inf)
    assert info_r.iterations < info.iterations
    assert lm.relative_distance(th_r, th2) >= 10 * lm.relative_distance(th, th2)


def test_flow_limit_solves_its_equation_and_is_checked():
    P = lm.make_problem(20, 40, 3, 3, seed=3)
    a = 50.0
    th, s, nu = lm.flow_limit(P.J, P.y, a, GAMMA, return_nu=True)
    np.testing.assert_allclose(P.J @ th + s, P.y, atol=1e-9)
    np.testing.assert_allclose(s, 2 * GAMMA**2 * np.sinh(4 * a * nu), rtol=1e-12)
    np.testing.assert_allclose(th, P.J.T @ nu, rtol=1e-12)
    with pytest.raises(ValueError):
        lm.flow_limit(P.J, P.y, -1.0, GAMMA)


def test_invariants_of_eq_20_along_gd_trajectory():
    P = lm.make_problem(20, 40, 3, 3, seed=13)
    a = 20.0
    tau = lm.default_tau(P.J, P.y, a) / 10
    th, u, v = lm.gd_trajectory(P.J, P.y, a, GAMMA, tau, steps=20000)
    # θ stays in the row space of J (it is Jᵀ times the summed residuals).
    proj = np.linalg.pinv(P.J) @ P.J
    off_row_space = np.linalg.norm(th - th @ proj.T, axis=1) / np.maximum(np.linalg.norm(th, axis=1), 1e-300)
    assert off_row_space.max() <= 1e-9
    # u⊙v = γ² for the flow; GD multiplies it by (1 − 4α²τ² r²) each step, so it
    # can only shrink, and by at most Σ_k 4α²τ²r_k² (an O(τ) total over the run).
    r_after = (th @ P.J.T) + u * u - v * v - P.y
    r = np.vstack([-P.y[None], r_after[:-1]])  # step k uses the residual before it; r_0 = −y
    drift_bound = np.cumsum(4 * a * a * tau * tau * r * r, axis=0)
    ratio = u * v / GAMMA**2
    assert np.all(ratio <= 1 + 1e-12)
    assert np.all(1 - ratio <= drift_bound * (1 + 1e-9) + 1e-12)
    assert np.max(1 - ratio) <= 2e-2


def test_coherence_extremes():
    rng = np.random.default_rng(0)
    H = np.array([[1.0]])
    for _ in range(3):  # Sylvester Hadamard, N = 8
        H = np.block([[H, H], [H, -H]])
    N, r, p = 8, 2, 5
    J_incoherent = (H[:, :r] / np.sqrt(N)) @ rng.standard_normal((r, p))
    assert lm.coherence(J_incoherent) == pytest.approx(1.0, abs=1e-12)
    J_aligned = np.eye(N)[:, :r] @ rng.standard_normal((r, p))
    assert lm.coherence(J_aligned) == pytest.approx(N / r, abs=1e-12)
    assert lm.recovery_condition(100, 1, 2, 1.0) and not lm.recovery_condition(100, 20, 20, 1.0)


def test_gradient_descent_rejects_bad_input():
    P = lm.make_problem(20, 40, 3, 3, seed=0)
    with pytest.raises(ValueError):
        lm.gradient_descent(P.J, P.y[:5], 10.0, GAMMA)
    with pytest.raises(ValueError):
        lm.gradient_descent(P.J, P.y, 10.0, 0.0)


def test_flow_limit_at_tiny_gamma_tends_to_the_convex_solution(nontrivial):
    # Prop. 3.3 through the exact limit. Catches a disabled small-γ continuation:
    # plain Newton from ν = 0 cannot see null(JJᵀ) once γ² is below its rounding.
    P, lam, th_c = nontrivial
    rhos = []
    for log_gamma in (-8.0, -24.0, -48.0):
        g = float(np.exp(log_gamma))
        th, s, nu = lm.flow_limit(P.J, P.y, lm.alpha_for(lam, g), g, return_nu=True)
        np.testing.assert_allclose(P.J @ th + s, P.y, atol=1e-9)
        rhos.append(lm.relative_distance(th, th_c))
    assert rhos[0] > rhos[1] > rhos[2], rhos
    assert rhos[2] <= 0.02, rhos  # the gap closes slowly, ~1/log(1/γ): 0.053, 0.020, 0.011


def test_flow_limit_batch_matches_flow_limit():
    P = lm.make_problems(30, 45, 4, 6, seed=9, trials=5)
    a = float(lm.alpha_for(0.1, GAMMA))
    th_b, s_b, redone = lm.flow_limit_batch(P.J, P.y, a, GAMMA)
    for t in range(5):
        th, s = lm.flow_limit(P.J[t], P.y[t], a, GAMMA)
        assert lm.relative_distance(th_b[t], th) <= 1e-10
        assert lm.relative_distance(s_b[t], s) <= 1e-8
    assert redone == 0


@pytest.mark.parametrize("log_gamma", [-8.0, -32.0])
def test_primal_flow_limit_matches_the_nu_form_at_small_gamma(log_gamma):
    # Catches a wrong H' or D⁻¹ (e.g. 2α for 4α): the primal Newton then converges to another point.
    P = lm.make_problems(20, 40, 3, 3, seed=5, trials=3)
    g = float(np.exp(log_gamma))
    a = float(lm.alpha_for(0.01, g))
    start = cx.solve_batch(P.J, P.y, 0.01).theta
    th, s, ok, step = lm.flow_limit_primal_batch(P.J, P.y, a, g, start)
    assert ok.all() and np.all(step <= 1e-8)
    for i in range(3):
        th_ref, s_ref = lm.flow_limit(P.J[i], P.y[i], a, g)
        assert lm.relative_distance(th[i], th_ref) <= 1e-9
        assert lm.relative_distance(s[i], s_ref) <= 1e-8


def test_batched_flow_limit_follows_the_gamma_continuation():
    # Catches dropping the continuation: Newton from 0 at γ = e⁻²⁴ stalls and every row is redone in numpy.
    P = lm.make_problems(20, 40, 3, 3, seed=5, trials=2)
    g = float(np.exp(-24))
    a = float(lm.alpha_for(0.01, g))
    th, s, redone = lm.flow_limit_batch(P.J, P.y, a, g)
    assert redone == 0
    assert lm.relative_distance(th[0], lm.flow_limit(P.J[0], P.y[0], a, g)[0]) <= 1e-9
