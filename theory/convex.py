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
import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import cho_solve

from theory.linear_model import x64

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
                "Install it (e.g. `pip install ecos`; pip install 'sopjax[dop]' adds SCS and CLARABEL)."
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
        if status not in OK_STATUSES:
            nan = np.full(self.N, np.nan)
            return Solution(np.full(self.p, np.nan), nan, nan.copy(), status)
        # CVXPY's dual of `Jθ + s == y` is −ν in Lemma B.2's convention.
        nu = -np.asarray(self.constraint.dual_value, dtype=np.float64)
        return Solution(np.asarray(self.theta.value), np.asarray(self.s.value), nu, status)


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

    If ``nu`` is not given, ``ν_S = λ·sign(s_S)`` on the support S and ν off S is
    fitted to ``Jᵀν = θ`` by least squares within ``|ν| ≤ λ`` (scipy's BVLS), so the
    certificate does not depend on a solver's dual, which is not unique. Entries with
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
        # ν is not unique when rank J < N: fit ν_F inside its box [−λ, λ] (bounded least
        # squares), so a valid certificate is found whenever one exists.
        from scipy.optimize import lsq_linear

        nu = np.zeros(N)
        nu[support] = lam * np.sign(s[support])
        if (~support).any():
            rhs = theta - J[support].T @ nu[support]
            nu[~support] = lsq_linear(J[~support].T, rhs, bounds=(-lam, lam), method="bvls").x
    nu = np.asarray(nu, dtype=np.float64)
    stationarity = np.abs(theta - J.T @ nu).max() / max(1.0, np.abs(theta).max())
    on_support = np.abs(nu[support] - lam * np.sign(s[support])).max(initial=0.0) / lam
    off_support = np.maximum(np.abs(nu[~support]) - lam, 0.0).max(initial=0.0) / lam
    feasibility = np.abs(y - J @ theta - s).max() / max(1.0, np.abs(y).max())
    return float(max(stationarity, on_support, off_support, feasibility))


# ------------------------------------------------------- batched dual solver (JAX)
#
# Program (26) has the dual  max_ν yᵀν − ½‖Jᵀν‖²  s.t. ‖ν‖∞ ≤ λ,  with θ = Jᵀν and
# s = y − Jθ. It is a box-constrained QP in N variables with Hessian K = JJᵀ (rank r),
# so one interior-point code, vmapped, solves every trial and λ of a figure; an exact
# solve on the identified support and a KKT certificate make each answer exact.

@dataclasses.dataclass(frozen=True)
class BatchSolution:
    """Solves of (26) for a batch of B problems (float64 numpy).

    theta (B, p), s (B, N), nu (B, N): the solution and its dual (Lemma B.2's sign).
    certified (B,): the JAX solve passed its KKT certificate. backward_error (B,): the
    certificate's value, a relative change of y for which (θ, s) is exactly optimal.
    forward_bound (B,): a rigorous bound on ‖θ − θ_opt‖/‖θ‖ from the duality gap (loose:
    ~1e-6, as it is the square root of a gap at rounding level); both NaN for rows
    without a certificate. iterations (B,): interior-point iterations. fallback (B,):
    the row was re-solved by CVXPY (its certificate failed). status: CVXPY-style
    strings, "optimal" for every row that holds a result; other rows are NaN.
    """

    theta: np.ndarray
    s: np.ndarray
    nu: np.ndarray
    certified: np.ndarray
    backward_error: np.ndarray
    forward_bound: np.ndarray
    iterations: np.ndarray
    fallback: np.ndarray
    status: list

    @property
    def ok(self) -> np.ndarray:
        return np.array([st in OK_STATUSES for st in self.status])


def _x64():

    return x64()


def _certificate(K, y, lam, nu):
    """KKT certificate (Lemma B.2) of a box-feasible dual point ``nu``.

    Let A = {|νᵢ| = λ}, σ = sign ν_A, θ = Jᵀν, s = y − Kν. Put s'_F = 0 off A and
    s'_A = σ·max(σ s_A, 0). Then (θ, s') meets every KKT condition of (26) exactly
    (θ = Jᵀν; νᵢ = λ·sign s'ᵢ where s'ᵢ ≠ 0; |νᵢ| ≤ λ elsewhere) for the data
    y' = Jθ + s', so it is *the* optimum for y'. Returns the backward error
    ‖y' − y‖∞ / max(‖y‖∞, 1) and the forward bound sqrt(2·gap)/‖θ‖ ≥ ‖θ − θ_opt‖/‖θ‖
    for y itself, from the duality gap gap = Σᵢ |sᵢ|(λ − sign(sᵢ)νᵢ) (non-negative
    terms; but a gap at rounding level still gives a bound of only ~1e-7).
    """

    s = y - K @ nu
    on = jnp.abs(nu) >= lam
    wrong = jnp.where(on, jnp.maximum(-jnp.sign(nu) * s, 0.0), jnp.abs(s))
    backward = jnp.max(wrong) / jnp.maximum(jnp.max(jnp.abs(y)), 1.0)
    gap = jnp.sum(jnp.abs(s) * (lam - jnp.sign(s) * nu))
    theta_norm = jnp.sqrt(jnp.maximum(nu @ K @ nu, 0.0))
    return backward, jnp.sqrt(2.0 * jnp.maximum(gap, 0.0)) / jnp.maximum(theta_norm, 1e-300)


def _polish(K, y, lam, nu, a, b, n_ref):
    """Exact solve on the guessed support of an interior point (ν, a, b), and its certificate.

    The support A is where a multiplier exceeds its slack (b > λ − ν: ν = +λ; a > ν + λ:
    ν = −λ); the rest F gets s_F = 0, i.e. K_FF ν_F = y_F − K_FA ν_A: consistent once A
    is the true support, but singular (rank ≤ r). Solved by iterative refinement with
    the Cholesky factor of K_FF + εI (ε = 1e-11·max Kᵢᵢ; identity on A): each step
    cuts the range part of the error by ε/σ_min⁺(K_FF), and the steps keep the interior
    point's null-space part of ν_F, inside the box. Once A is right, this certifies
    1–3 interior-point iterations earlier than refining with the interior point's
    own factor. Returns the best iterate by :func:`_certificate` (clipped into the
    box), its backward error and forward bound.
    """

    z = jnp.where(b > lam - nu, lam, jnp.where(a > nu + lam, -lam, 0.0))
    m = (z == 0).astype(nu.dtype)
    eps = 1e-11 * jnp.max(jnp.diag(K))
    chol = jnp.linalg.cholesky(m[:, None] * K * m[None, :] + jnp.diag(1.0 - m + eps))

    def step(_, st):
        x, best, b_best, f_best = st
        x = jnp.clip(x + m * cho_solve((chol, True), (m * (y - K @ x))[:, None])[:, 0], -lam, lam)
        bk, fw = _certificate(K, y, lam, x)
        better = bk < b_best
        return x, jnp.where(better, x, best), jnp.where(better, bk, b_best), jnp.where(better, fw, f_best)

    inf = jnp.asarray(jnp.inf, nu.dtype)
    x0 = jnp.where(z != 0, z, nu)
    return jax.lax.fori_loop(0, n_ref, step, (x0, x0, inf, inf))[1:]


def _ipm_direction(chol, r_d, l, u, a, b, rc_l, rc_u):
    """Newton direction of the box-QP KKT system for complementarity targets rc_l, rc_u.

    Eliminating the multipliers (Δa = (rc_l − aΔν)/l, Δb = (rc_u + bΔν)/u) leaves
    H Δν = −r_d + rc_l/l − rc_u/u with H = K + diag(a/l + b/u) positive definite;
    ``chol`` is H's Cholesky factor, shared by the predictor and the corrector.
    """

    dnu = cho_solve((chol, True), -r_d + rc_l / l - rc_u / u)
    return dnu, (rc_l - a * dnu) / l, (rc_u + b * dnu) / u


def _max_step(x, dx):
    """Largest α ≤ 1 with x + α·dx ≥ 0 (x > 0)."""

    return jnp.minimum(1.0, jnp.min(jnp.where(dx < 0, -x / jnp.where(dx < 0, dx, -1.0), jnp.inf)))


def _ipm_factor(K, lam, nu, a, b):
    """Cholesky factor of the interior point's Newton matrix K + diag(a/l + b/u)."""

    return jnp.linalg.cholesky(K + jnp.diag(a / (nu + lam) + b / (lam - nu)))


def _ipm_step(K, y, lam, nu, a, b, chol):
    """One Mehrotra predictor-corrector step on min ½νᵀKν − yᵀν over |ν| ≤ λ.

    Slacks l = ν + λ, u = λ − ν, multipliers a, b ≥ 0 (a: lower bound, b: upper):
    Kν − y − a + b = 0, a⊙l = b⊙u = μ → 0; ``chol`` factors K + diag(a/l + b/u).
    """

    N = y.shape[0]
    l, u = nu + lam, lam - nu
    r_d = K @ nu - y - a + b
    mu = (a @ l + b @ u) / (2 * N)
    d_aff = _ipm_direction(chol, r_d, l, u, a, b, -a * l, -b * u)
    s_p = _max_step(jnp.concatenate([l, u]), jnp.concatenate([d_aff[0], -d_aff[0]]))
    s_d = _max_step(jnp.concatenate([a, b]), jnp.concatenate([d_aff[1], d_aff[2]]))
    mu_aff = ((a + s_d * d_aff[1]) @ (l + s_p * d_aff[0]) + (b + s_d * d_aff[2]) @ (u - s_p * d_aff[0])) / (2 * N)
    sigma = jnp.clip(mu_aff / jnp.maximum(mu, 1e-300), 0.0, 1.0) ** 3
    rc_l = sigma * mu - a * l - d_aff[1] * d_aff[0]
    rc_u = sigma * mu - b * u + d_aff[2] * d_aff[0]
    dnu, da, db = _ipm_direction(chol, r_d, l, u, a, b, rc_l, rc_u)
    s_p = 0.99 * _max_step(jnp.concatenate([l, u]), jnp.concatenate([dnu, -dnu]))
    s_d = 0.99 * _max_step(jnp.concatenate([a, b]), jnp.concatenate([da, db]))
    return nu + s_p * dnu, a + s_d * da, b + s_d * db


def _advance(K, y, lam, nu, a, b, n_steps):
    """``n_steps`` interior-point iterations for a batch: K (B, N, N), y, nu, a, b (B, N),
    lam (B,). Rows that go non-finite are frozen. Returns (nu, a, b).

    The polish is a separate program (:func:`_polish`, called after this one): a
    second Cholesky in the same XLA program, or two beside each other, deadlocked
    XLA's CPU runtime here.
    """

    factor, step = jax.vmap(_ipm_factor), jax.vmap(_ipm_step)

    def body(_, st):
        new = step(K, y, lam, *st, factor(K, lam, *st))
        ok = jnp.all(jnp.isfinite(new[0]), axis=1, keepdims=True)
        return tuple(jnp.where(ok, n, o) for n, o in zip(new, st))

    return jax.lax.fori_loop(0, n_steps, body, (nu, a, b))


_dual_cache: dict = {}


def _compiled():
    """The jitted kernels: Gram matrices JJᵀ and :func:`_advance` (one compile per shape)."""
    if not _dual_cache:

        _dual_cache["gram"] = jax.jit(lambda J: J @ J.transpose(0, 2, 1))
        _dual_cache["advance"] = jax.jit(_advance)
        _dual_cache["polish"] = jax.jit(jax.vmap(_polish, in_axes=(0, 0, 0, 0, 0, 0, None)), static_argnums=(6,))
    return _dual_cache["gram"], _dual_cache["advance"], _dual_cache["polish"]


# Interior-point iterations before the first polish, then between polishes: on Fig. 4's
# grid the support is found after 4–15 (mostly 7–12); a polish costs about 1.5 iterations.
FIRST_POLISH, POLISH_EVERY = 7, 3


def solve_batch(J, y, lam, btol: float = 1e-11, max_iter: int = 30, solver: str | None = DEFAULT_SOLVER,
                chunk: int = 128, n_ref: int = 3) -> BatchSolution:
    """Solve (26) for a batch of problems at once, in JAX float64, with a certificate each.

    Interior point on the dual (Mehrotra; see :func:`_ipm_step`), vmapped over up to
    ``chunk`` problems per call. After FIRST_POLISH iterations, and every POLISH_EVERY
    after that, each problem's support is guessed, solved exactly (:func:`_polish`)
    and certified (:func:`_certificate`); certified problems leave the batch, the
    rest are regrouped into full chunks, so no call iterates on a finished problem.

    Args:
        J: (B, N, p); y: (B, N); lam: scalar or (B,) λ > 0 (float64 numpy or jax).
        btol: certify a row when its KKT backward error is ≤ btol: (θ, s) then solves
            (26) exactly for data y' with ‖y' − y‖∞ ≤ btol·max(‖y‖∞, 1) (see :func:`_certificate`).
        max_iter: interior-point iterations per problem before giving up on a certificate
            (Fig. 4's grid: every certified row needs ≤ 19; a stuck row costs a padded
            chunk per round until then, so ECOS takes it over early).
        solver: CVXPY solver for rows without a certificate (default ECOS); None
            leaves them NaN with status "uncertified".
        chunk: problems per compiled call (one compiled shape; bounds memory).
        n_ref: refinement steps of each support polish (:func:`_polish`).

    Returns: :class:`BatchSolution` (``iterations``: interior-point iterations until
    certified, or until given up). Raises ValueError for bad shapes or λ ≤ 0.
    """
    J = np.asarray(J, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if J.ndim != 3 or y.shape != J.shape[:2]:
        raise ValueError(f"solve_batch takes J (B, N, p) and y (B, N); got {J.shape}, {y.shape}")
    B, N, p = J.shape
    lam = np.broadcast_to(np.asarray(lam, dtype=np.float64), (B,)).copy()
    if not np.all(lam > 0):
        raise ValueError(f"lam must be positive, got {lam.min()}")
    nu, backward, forward, iters = _run_dual(J, y, lam, float(btol), int(max_iter), chunk, int(n_ref))
    cert = backward <= btol
    theta = np.einsum("bnp,bn->bp", J, nu)
    s = y - np.einsum("bnp,bp->bn", J, theta)
    status = ["optimal" if c else "uncertified" for c in cert]
    fallback = np.zeros(B, dtype=bool)
    for i in np.flatnonzero(~cert) if solver else ():
        sol = program(N, p, solver.upper()).solve(J[i], y[i], lam[i])
        theta[i], s[i], nu[i], status[i], fallback[i] = sol.theta, sol.s, sol.nu, sol.status, True
    for i in np.flatnonzero(~cert & ~fallback):
        theta[i], s[i], nu[i] = np.nan, np.nan, np.nan
    return BatchSolution(theta, s, nu, cert, np.where(cert, backward, np.nan), np.where(cert, forward, np.nan),
                         iters, fallback, status)


def _run_dual(J, y, lam, btol, max_iter, chunk, n_ref):
    """Drive :func:`_advance` over the batch: rounds of chunks, certified rows retired.

    Chunks run one after another, not on a thread per core as GD does: two
    concurrent calls of this program (Cholesky custom calls inside a loop)
    deadlocked XLA's CPU runtime here.
    """

    gram, advance, polish = _compiled()
    B, N = y.shape
    # a power of two ≥ the batch (at most ``chunk``): few shapes, few compiles
    chunk = int(min(chunk, max(8, 1 << (B - 1).bit_length())))
    scale = np.maximum(np.abs(y).max(axis=1, initial=0.0), 1.0)[:, None]
    state = [np.zeros((B, N)), np.repeat(scale, N, 1), np.repeat(scale, N, 1)]  # ν, a, b
    best, backward, forward = np.zeros((B, N)), np.full(B, np.inf), np.full(B, np.inf)
    iters = np.zeros(B, dtype=np.int64)

    def pad(rows):  # every call has ``chunk`` rows (copies of the last): one compiled shape
        return np.concatenate([rows, np.full(chunk - len(rows), rows[-1])])

    with _x64():
        K = np.concatenate([np.asarray(gram(jnp.asarray(J[pad(np.arange(c, min(c + chunk, B)))])))
                            [:min(chunk, B - c)] for c in range(0, B, chunk)])
        active = np.arange(B)
        while len(active):
            done = iters[active[0]]  # every active row has taken the same number of steps
            n = min(FIRST_POLISH if done == 0 else POLISH_EVERY, max_iter - done)
            for c in range(0, len(active), chunk):
                rows = active[c:c + chunk]
                idx = pad(rows)
                Kc, yc, lc = (jnp.asarray(a[idx]) for a in (K, y, lam))
                st = advance(Kc, yc, lc, *(jnp.asarray(a[idx]) for a in state), n)
                out = [np.asarray(o)[:len(rows)] for o in st + polish(Kc, yc, lc, *st, n_ref)]
                for arr, o in zip(state + [best, backward, forward], out):
                    arr[rows] = o
                iters[rows] += n
            finite = np.all(np.isfinite(state[0][active]), axis=1)
            active = active[~(backward[active] <= btol) & (iters[active] < max_iter) & finite]
    return best, backward, forward, iters
