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
