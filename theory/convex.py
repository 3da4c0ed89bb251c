"""The convex program (26) of paper §3 and its optimality certificate (Lemma B.2).

    min_{θ, s} ½‖θ‖₂² + λ‖s‖₁   s.t.   y = Jθ + s

Solved with CVXPY. The solver defaults to ECOS, as in the paper (§3.2 names
"the ECOS solver provided in CVXPY"). ECOS is GPL-3.0 and no longer CVXPY's default,
so any installed conic solver can be named instead (``solver="CLARABEL"``).
"""

from __future__ import annotations

import dataclasses
import functools

import cvxpy as cp
import numpy as np

DEFAULT_SOLVER = "ECOS"
OK_STATUSES = ("optimal",)


@dataclasses.dataclass(frozen=True)
class Solution:
    """A solve of (26). theta (p,), s (N,), nu (N,) float64; status is CVXPY's string.

    ``nu`` is the multiplier of ``y = Jθ + s`` with the sign of Lemma B.2
    (θ = Jᵀν, ν ∈ λ·∂‖s‖₁). ``ok`` is True only for status "optimal"; every other
    status ("optimal_inaccurate", "infeasible", "solver_error", …) has NaN arrays,
    so a failed cell can never be mistaken for a result.
    """

    theta: np.ndarray
    s: np.ndarray
    nu: np.ndarray
    status: str
    solve_time: float

    @property
    def ok(self) -> bool:
        return self.status in OK_STATUSES


class L2L1Program:
    """Program (26) for fixed sizes (N, p), built once and re-solved.

    J, y and λ are ``cp.Parameter`` objects, so CVXPY canonicalises the problem
    once (DPP) and each :meth:`solve` only refills the numbers: the same compiled
    program serves a whole λ sweep and every trial of a phase-transition grid.

    Raises ValueError for a solver that is not installed (naming the installed ones).
    """

    def __init__(self, N: int, p: int, solver: str = DEFAULT_SOLVER):
        solver = solver.upper()
        if solver not in cp.installed_solvers():
            raise ValueError(
                f"solver {solver!r} is not installed; installed: {cp.installed_solvers()}. "
                "Install it (e.g. `pip install ecos`) or pass solver='CLARABEL'."
            )
        self.N, self.p, self.solver = N, p, solver
        self.J = cp.Parameter((N, p))
        self.y = cp.Parameter(N)
        self.lam = cp.Parameter(nonneg=True)
        self.theta = cp.Variable(p)
        self.s = cp.Variable(N)
        self.constraint = self.J @ self.theta + self.s == self.y
        objective = 0.5 * cp.sum_squares(self.theta) + self.lam * cp.norm1(self.s)
        self.problem = cp.Problem(cp.Minimize(objective), [self.constraint])

    def solve(self, J, y, lam: float, **solver_opts) -> Solution:
        """Solve (26) for one (J (N, p), y (N,), λ > 0). Raises ValueError on bad input."""
        J = np.asarray(J, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        if J.shape != (self.N, self.p) or y.shape != (self.N,):
            raise ValueError(f"expected J {(self.N, self.p)} and y {(self.N,)}, got {J.shape}, {y.shape}")
        if not lam > 0:
            raise ValueError(f"lam must be positive, got {lam}")
        self.J.value, self.y.value, self.lam.value = J, y, float(lam)
        try:
            self.problem.solve(solver=self.solver, **solver_opts)
            status = str(self.problem.status)
        except cp.error.SolverError as e:  # reported as a failed cell, never hidden
            status = f"solver_error: {e}"
        t = self.problem.solver_stats.solve_time if self.problem.solver_stats else float("nan")
        if status not in OK_STATUSES:
            nan = np.full(self.N, np.nan)
            return Solution(np.full(self.p, np.nan), nan, nan.copy(), status, t or float("nan"))
        # CVXPY's dual of `Jθ + s == y` is −ν in Lemma B.2's convention.
        nu = -np.asarray(self.constraint.dual_value, dtype=np.float64)
        return Solution(np.asarray(self.theta.value), np.asarray(self.s.value), nu, status, t or float("nan"))


@functools.lru_cache(maxsize=16)
def program(N: int, p: int, solver: str = DEFAULT_SOLVER) -> L2L1Program:
    """The cached :class:`L2L1Program` for (N, p, solver)."""
    return L2L1Program(N, p, solver)


def solve_l2_l1(J, y, lam: float, solver: str = DEFAULT_SOLVER):
    """Solve program (26) ``min ½‖θ‖² + λ‖s‖₁ s.t. y = Jθ + s``.

    Args: J (N, p), y (N,) numpy or jax arrays; λ > 0; solver name (default ECOS).
    Returns: ``(theta (p,), s (N,), status)``, float64 numpy and CVXPY's status
    string. Arrays are NaN unless status is "optimal".
    Raises: ValueError for bad shapes, λ ≤ 0 or an uninstalled solver.
    """
    J = np.asarray(J)
    sol = program(J.shape[0], J.shape[1], solver.upper()).solve(J, y, lam)
    return sol.theta, sol.s, sol.status


def kkt_violation(J, y, theta, s, lam: float, nu=None, zero_tol: float = 1e-6) -> float:
    """Worst violation of the optimality conditions of (26) (Lemma B.2).

    (θ, s) solves (26) iff there is ν with ``θ = Jᵀν``, ``ν_i = λ·sign(s_i)`` where
    ``s_i ≠ 0``, ``|ν_i| ≤ λ`` where ``s_i = 0``, and ``y = Jθ + s``.

    If ``nu`` is not given it is fitted by least squares to the equality parts
    (``Jᵀν = θ`` and ``ν_S = λ·sign(s_S)`` on the support S), so the certificate
    does not depend on a solver's dual sign convention. Entries with
    ``|s_i| ≤ zero_tol·max(1, ‖s‖_∞)`` count as zero.

    Returns the max of the absolute violations, each divided by a natural scale
    (‖θ‖_∞ or 1, λ, ‖y‖_∞ or 1), as a float; a solution from a converged solver
    gives ~1e-7 or less. Raises ValueError for bad shapes or λ ≤ 0.
    """
    J, y, theta, s = (np.asarray(a, dtype=np.float64) for a in (J, y, theta, s))
    N, p = J.shape
    if y.shape != (N,) or s.shape != (N,) or theta.shape != (p,):
        raise ValueError("kkt_violation: shapes must be J (N, p), y (N,), theta (p,), s (N,)")
    if not lam > 0:
        raise ValueError(f"lam must be positive, got {lam}")
    support = np.abs(s) > zero_tol * max(1.0, np.abs(s).max())
    if nu is None:
        E = np.eye(N)[support]
        A = np.vstack([J.T, E])
        b = np.concatenate([theta, lam * np.sign(s[support])])
        nu = np.linalg.lstsq(A, b, rcond=None)[0]
    nu = np.asarray(nu, dtype=np.float64)
    stationarity = np.abs(theta - J.T @ nu).max() / max(1.0, np.abs(theta).max())
    on_support = np.abs(nu[support] - lam * np.sign(s[support])).max(initial=0.0) / lam
    off_support = np.maximum(np.abs(nu[~support]) - lam, 0.0).max(initial=0.0) / lam
    feasibility = np.abs(y - J @ theta - s).max() / max(1.0, np.abs(y).max())
    return float(max(stationarity, on_support, off_support, feasibility))
