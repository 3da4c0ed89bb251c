"""Robust matrix recovery by double over-parameterization (theory/matrix_recovery.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from theory import matrix_recovery as mr
from theory.linear_model import x64


@pytest.mark.parametrize("psd", [True, False])
def test_closed_form_gradient_is_autodiff_of_the_objective(psd):
    # catches a wrong factor or transpose in ∇U, ∇V (e.g. 2RU instead of (R+Rᵀ)U for a
    # non-symmetric residual) or a missing 2 / sign in ∇g, ∇h
    rng = np.random.default_rng(0)
    n = 6
    U, V, g, h, Y = (rng.standard_normal((n, n)) for _ in range(5))
    with x64():
        auto = jax.grad(mr.objective, argnums=(0, 1, 2, 3))(U, V, g, h, Y, psd)
        hand = mr.gradients(U, V, g, h, Y, psd)
        for a, b in zip(auto, hand):
            assert a.dtype == jnp.float64
            np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-12, atol=1e-12)


def test_dop_recovers_at_matching_alpha_where_plain_l2_gd_does_not():
    # n = 20, r = 2, 5 % corruption: α = √n matches the convex program's λ = 1/√n
    # (slides, "Implicit Algorithmic Bias"); both recover, plain GD without s fits the outliers.
    n = 20
    P = mr.make_problem(n, 2, 0.05, seed=0)
    cfg = mr.GDConfig(iters=5000, record_every=500)
    X, S, curve, _ = mr.dop_descent(P.Y, P.L_star, np.sqrt(n), cfg)
    assert mr.relative_error(X, P.L_star) <= 1e-3
    assert mr.relative_error(S, P.S_star) <= 1e-2
    assert curve[-1] < curve[0]
    X2, _, _, _ = mr.dop_descent(P.Y, P.L_star, np.sqrt(n), cfg, use_s=False)
    assert mr.relative_error(X2, P.L_star) > 0.1
    L, _, status = mr.ConvexRPCA(n, "SCS").solve(P.Y, 1 / np.sqrt(n))
    assert status == "optimal" and mr.relative_error(L, P.L_star) <= 1e-3


def test_too_large_alpha_puts_the_signal_into_s():
    # the other side of the implicit bias: α ≫ √n means λ = 1/α ≪ 1/√n, so s absorbs L★
    P = mr.make_problem(20, 2, 0.05, seed=0)
    X, _, _, _ = mr.dop_descent(P.Y, P.L_star, 4 * np.sqrt(20), mr.GDConfig(iters=2000, record_every=500))
    assert mr.relative_error(X, P.L_star) > 0.5


def test_problem_is_what_it_claims():
    P = mr.make_problem(12, 3, 0.1, seed=1)
    assert np.linalg.matrix_rank(P.L_star) == 3
    np.testing.assert_allclose(P.L_star, P.L_star.T)
    np.testing.assert_allclose(P.Y, P.L_star + P.S_star)
    np.testing.assert_allclose(P.S_star, P.S_star.T)
    frac = np.count_nonzero(np.triu(P.S_star)) / (12 * 13 / 2)
    assert abs(frac - 0.1) < 0.02
    G = mr.make_problem(12, 3, 0.1, seed=1, psd=False)
    assert np.linalg.matrix_rank(G.L_star) == 3 and not np.allclose(G.L_star, G.L_star.T)


@pytest.mark.parametrize("n,r,rho", [(1, 1, 0.1), (10, 0, 0.1), (10, 11, 0.1), (10, 2, 1.0), (10, 2, -0.1)])
def test_bad_sizes_raise(n, r, rho):
    with pytest.raises(ValueError):
        mr.make_problem(n, r, rho, seed=0)


def test_bad_descent_inputs_raise():
    P = mr.make_problem(6, 1, 0.1, seed=0)
    with pytest.raises(ValueError):
        mr.dop_descent(P.Y[:, :5], P.L_star[:, :5], 1.0, mr.GDConfig(iters=10, record_every=5))
    with pytest.raises(ValueError):
        mr.dop_descent(P.Y, P.L_star, 1.0, mr.GDConfig(iters=10, record_every=3))
    with pytest.raises(ValueError):
        mr.dop_descent(P.Y, P.L_star, -1.0, mr.GDConfig(iters=10, record_every=5))


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert mr.main(["--quick", "--n", "1"]) == 2
    assert mr.main(["--quick", "--solver", "nosuch"]) == 2
    (tmp_path / "afile").write_text("")
    assert mr.main(["--quick", "--out", str(tmp_path / "afile")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(e.startswith("error: ") for e in err) and "Traceback" not in "".join(err)
    assert not (tmp_path / "runs").exists()  # nothing half-written
