"""Tests of theory.convex: program (26), its certificate (Lemma B.2), recovery (Prop. 3.5)."""

import numpy as np
import pytest

from theory import convex as cx
from theory import linear_model as lm


@pytest.mark.parametrize("lam", [1.0, 0.3, 0.1, 0.03])
def test_kkt_holds_for_ecos_and_fails_when_perturbed(lam):
    P = lm.make_problem(20, 40, 3, 3, seed=21)
    sol = cx.program(20, 40).solve(P.J, P.y, lam)
    assert sol.ok
    assert cx.kkt_violation(P.J, P.y, sol.theta, sol.s, lam) <= 1e-5
    assert cx.kkt_violation(P.J, P.y, sol.theta, sol.s, lam, nu=sol.nu) <= 1e-5
    rng = np.random.default_rng(0)
    bad_theta = sol.theta + 1e-2 * rng.standard_normal(sol.theta.shape)
    assert cx.kkt_violation(P.J, P.y, bad_theta, sol.s, lam) >= 1e-3
    # a feasible but suboptimal point: move mass from Jθ into s
    d = P.J @ (1e-1 * rng.standard_normal(40))
    assert cx.kkt_violation(P.J, P.y, sol.theta - np.linalg.pinv(P.J) @ d, sol.s + d, lam) >= 1e-3


def test_exact_recovery_phase_transition_endpoints():
    prog = cx.program(100, 150)
    for (r, k), expect in (((5, 5), True), ((60, 60), False)):
        P = lm.make_problem(100, 150, r, k, seed=31)
        sol = prog.solve(P.J, P.y, 0.1)
        assert sol.ok
        ok = bool(lm.relative_error(sol.theta, P.theta_star) < 1e-3 and lm.relative_error(sol.s, P.s_star) < 1e-3)
        assert ok is expect, (r, k)


def test_other_solver_agrees_and_bad_solver_is_named():
    P = lm.make_problem(20, 40, 3, 3, seed=4)
    th_e, s_e, st_e = cx.solve_l2_l1(P.J, P.y, 0.3)
    th_c, s_c, st_c = cx.solve_l2_l1(P.J, P.y, 0.3, solver="CLARABEL")
    assert st_e == st_c == "optimal"
    assert lm.relative_distance(th_e, th_c) <= 1e-5
    with pytest.raises(ValueError, match="not installed"):
        cx.solve_l2_l1(P.J, P.y, 0.3, solver="NO_SUCH_SOLVER")
    with pytest.raises(ValueError, match="lam"):
        cx.solve_l2_l1(P.J, P.y, 0.0)


@pytest.fixture(scope="module")
def random_batch():
    """50 random problems of mixed rank, sparsity and λ (N = 40, p = 60)."""
    rng = np.random.default_rng(12)
    rs, ks = rng.integers(1, 30, 50), rng.integers(0, 35, 50)
    probs = [lm.make_problem(40, 60, int(r), int(k), seed=100 + i) for i, (r, k) in enumerate(zip(rs, ks))]
    lams = 10 ** rng.uniform(-3, 0, 50)
    return np.stack([q.J for q in probs]), np.stack([q.y for q in probs]), lams


def test_batched_solver_matches_cvxpy_on_50_random_problems(random_batch):
    # Reference: CVXPY with CLARABEL at tight tolerances. ECOS at its defaults is
    # itself off by up to ~6e-4 on a few of these (small λ, dense s), see docs/notes.md.
    J, y, lams = random_batch
    sol = cx.solve_batch(J, y, lams)
    assert sol.certified.all() and not sol.fallback.any()
    assert np.all(sol.backward_error <= 1e-11)
    # rows certify in different rounds, so the regrouping of unfinished rows is exercised
    assert len(set(sol.iterations.tolist())) >= 2
    prog = cx.program(40, 60, "CLARABEL")
    for i in range(len(J)):
        ref = prog.solve(J[i], y[i], lams[i], tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12)
        assert ref.ok
        assert lm.relative_error(sol.theta[i], ref.theta) <= 1e-6, i
        # s★ = 0 rows (k = 0) have s ≈ 0: measure s against max(‖s_ref‖, 1e-3‖y‖)
        assert np.linalg.norm(sol.s[i] - ref.s) <= 1e-6 * max(np.linalg.norm(ref.s), 1e-3 * np.linalg.norm(y[i])), i
        assert cx.kkt_violation(J[i], y[i], sol.theta[i], sol.s[i], lams[i]) <= 1e-9


def test_batched_and_ecos_give_identical_fig4_success_maps():
    from theory import phase_transition as pt

    cfg = pt.Fig4Config(N=40, p=60, rs=(2, 10, 25), ks=(2, 10, 25), trials=4, flow_trials=0)
    a = pt.compute_fig4(cfg, seed=3, solver="BATCHED")
    b = pt.compute_fig4(cfg, seed=3, solver="ECOS")
    for key in ("success_theta", "success_s", "success_rate"):
        np.testing.assert_array_equal(a[key], b[key])
    assert a["success_rate"][0, 0] == 1.0 and a["success_rate"][-1, -1] == 0.0


def test_certificate_fails_on_a_wrong_answer_and_ecos_takes_over(random_batch):
    J, y, lams = random_batch
    # one interior-point step certifies nothing: every row must come from ECOS, intact
    sol = cx.solve_batch(J[:3], y[:3], lams[:3], max_iter=1)
    assert not sol.certified.any() and sol.fallback.all() and all(sol.ok)
    ref = cx.solve_batch(J[:3], y[:3], lams[:3])
    assert np.all(lm.relative_error(sol.theta, ref.theta) <= 1e-4)  # ECOS's own accuracy, see above
    # without a fallback solver, uncertified rows are NaN, never passed off as results
    bare = cx.solve_batch(J[:3], y[:3], lams[:3], max_iter=1, solver=None)
    assert np.isnan(bare.theta).all() and bare.status == ["uncertified"] * 3
    # the certificate itself: exact for the solution, large once ν moves off it
    import jax.numpy as jnp

    from theory.linear_model import x64
    K = J[0] @ J[0].T
    with x64():
        good = cx._certificate(jnp.asarray(K), jnp.asarray(y[0]), lams[0], jnp.asarray(ref.nu[0]))[0]
        nu_bad = np.clip(ref.nu[0] + 1e-3 * lams[0], -lams[0], lams[0])
        bad = cx._certificate(jnp.asarray(K), jnp.asarray(y[0]), lams[0], jnp.asarray(nu_bad))[0]
    assert float(good) <= 1e-11 and float(bad) >= 1e-6


def test_batched_solver_rejects_bad_input():
    with pytest.raises(ValueError, match="lam"):
        cx.solve_batch(np.ones((2, 3, 4)), np.ones((2, 3)), 0.0)
    with pytest.raises(ValueError, match="J"):
        cx.solve_batch(np.ones((3, 4)), np.ones(3), 0.1)
