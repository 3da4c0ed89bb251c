"""The over-parameterized linear model of paper §3 and its gradient dynamics.

Everything here is float64. JAX code runs inside a scoped ``enable_x64`` so that
importing this module never switches the whole process to 64-bit (the training
library in ``sopjax`` stays float32).

Public API
----------
- :func:`make_problem` / :func:`make_problems`: the data of §3.2 (``y = Jθ + s★``).
- :func:`gradient_descent`: eq. (16), jitted, vmapped over α and over trials.
- :func:`flow_limit`: the exact t → ∞ limit of the gradient flow (17) at finite γ.
- :func:`coherence`: μ(J) of Definition 3.4, and :func:`recovery_condition` (28).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


def x64():
    """Scoped 64-bit JAX: ``jax.enable_x64(True)``, or the experimental one on old JAX."""
    if hasattr(jax, "enable_x64"):
        return jax.enable_x64(True)
    from jax.experimental import enable_x64  # pragma: no cover - JAX < 0.7

    return enable_x64()


# --------------------------------------------------------------------------- data


@dataclasses.dataclass(frozen=True)
class Problem:
    """One instance (or a batch of instances) of model (13).

    Attributes (float64 numpy; a leading trial axis ``T`` when batched):
        J: (N, p) rank-r Jacobian, ``A @ B`` with standard Gaussian A (N, r), B (r, p).
        y: (N,) observations ``J θ + s★``.
        theta_star: (p,) minimum-norm ground truth, ``pinv(J) (y − s★)`` (eq. 14).
        s_star: (N,) k-sparse corruption, standard Gaussian on a uniform support.
        seed: the seed the instance was drawn from (an array of seeds when batched).
    """

    J: np.ndarray
    y: np.ndarray
    theta_star: np.ndarray
    s_star: np.ndarray
    seed: int | np.ndarray


def _check_sizes(N: int, p: int, r: int, k: int) -> None:
    if not (N >= 1 and p >= 1):
        raise ValueError(f"N and p must be positive, got N={N}, p={p}")
    if not 1 <= r <= min(N, p):
        raise ValueError(f"rank r must lie in [1, min(N, p)] = [1, {min(N, p)}], got {r}")
    if not 0 <= k <= N:
        raise ValueError(f"sparsity k must lie in [0, N] = [0, {N}], got {k}")


def make_problem(N: int, p: int, r: int, k: int, seed: int) -> Problem:
    """Draw one instance of §3.2's simulation data, reproducibly from ``seed``.

    Follows the paper's recipe (§3.2, "Numerical verification"): ``J = A·B``;
    ``s★`` has k i.i.d. N(0, 1) entries on a uniformly random support; a standard
    Gaussian θ gives ``y = Jθ + s★``; ``θ★ = pinv(J)(y − s★)`` (eq. 14).

    Returns a :class:`Problem` of float64 arrays J (N, p), y (N,), theta_star (p,),
    s_star (N,). Raises ValueError if r ∉ [1, min(N, p)] or k ∉ [0, N].
    """
    P = _build(N, p, r, k, [seed])
    return Problem(J=P.J[0], y=P.y[0], theta_star=P.theta_star[0], s_star=P.s_star[0], seed=seed)


def make_problems(N: int, p: int, r: int, k: int, seed: int, trials: int) -> Problem:
    """A batch of ``trials`` independent instances, stacked on a leading axis.

    Trial ``t`` is ``make_problem(N, p, r, k, seed=[seed, t])``-style: its stream is
    derived from ``(seed, t)``, so a trial does not change when ``trials`` grows.
    Arrays: J (T, N, p), y (T, N), theta_star (T, p), s_star (T, N); ``seed`` holds
    the per-trial integer seeds. Raises ValueError as :func:`make_problem`.
    """
    seeds = [int(np.random.SeedSequence([seed, t]).generate_state(1)[0]) for t in range(trials)]
    return _build(N, p, r, k, seeds)


def _build(N: int, p: int, r: int, k: int, seeds) -> Problem:
    """The draws of each seed (A, B, support, s★ values, θ, in that order), then the
    algebra for the whole batch at once (one stacked matmul, not one per trial)."""
    _check_sizes(N, p, r, k)
    A, B, S, theta = (np.empty((len(seeds),) + shape) for shape in ((N, r), (r, p), (N,), (p,)))
    for i, sd in enumerate(seeds):
        rng = np.random.default_rng(sd)
        A[i], B[i] = rng.standard_normal((N, r)), rng.standard_normal((r, p))
        S[i] = 0.0
        S[i, rng.choice(N, size=k, replace=False)] = rng.standard_normal(k)
        theta[i] = rng.standard_normal(p)
    J = A @ B
    y = np.einsum("tnp,tp->tn", J, theta) + S
    # θ★ = pinv(J)(y − s★) = pinv(J)·Jθ, the projection of θ onto row(J) = row(B)
    # (A has full column rank): Bᵀ(BBᵀ)⁻¹Bθ costs an r×r solve instead of an SVD.
    Bt = np.einsum("trp,tp->tr", B, theta)
    theta_star = np.einsum("trp,tr->tp", B, np.linalg.solve(B @ B.transpose(0, 2, 1), Bt[..., None])[..., 0])
    return Problem(J=J, y=y, theta_star=theta_star, s_star=S, seed=np.asarray(seeds))


# ----------------------------------------------------------------- the dynamics


def alpha_for(lam, gamma):
    """The learning-rate ratio matched to λ at init scale γ: α = −log γ / (2λ) (eq. 23)."""
    return -np.log(gamma) / (2.0 * np.asarray(lam, dtype=np.float64))


# τ·α·max|y| ≤ 1/TAU_ACCURACY. Stability alone needs 4; accuracy needs more, because GD's
# limit sits O(τ) away from the flow limit (the invariant u⊙v = γ² of eq. 20 shrinks by
# 1 − 4α²τ²r² per step). On Fig. 2's instance at λ = 0.01 the θ gap is 4.5% at 4, 0.73% at 32.
TAU_ACCURACY = 32.0


def default_tau(J, y, alpha_max: float) -> float:
    """Step size τ for eq. (16): stable, and accurate to ~1% of the flow limit up to ``alpha_max``.

    Rule: ``τ = 1 / (‖J‖₂² + TAU_ACCURACY·α_max·max(‖y‖_∞, 1))`` with TAU_ACCURACY = 32.

    Why: near a solution the residual obeys ``r⁺ ≈ (I − τ(JJᵀ + 4α·diag(u²+v²))) r``,
    and on the flow ``u² + v² = sqrt(s² + 4γ⁴) ≲ |s| ≈ |y − Jθ|``, so a factor 4
    keeps GD stable. GD's limit, though, is O(τ) away from the flow limit, and the
    gap grows with α·τ·|y|: at 4 it is 4.5% (θ) on Fig. 2's instance at λ = 0.01,
    at 32 it is 0.73% (0.9% at λ = 0.01, ≤ 2e-5 at λ ≥ 0.03). For a batch of
    problems take the max over it.
    """
    sig2, ymax = _tau_scales(J, y)
    return 1.0 / (sig2 + TAU_ACCURACY * float(alpha_max) * ymax)


def _tau_scales(J, y) -> tuple[float, float]:
    """``max ‖J‖₂²`` and ``max(‖y‖_∞, 1)`` over a batch: the two scales of :func:`default_tau`."""
    J = np.asarray(J, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if J.ndim == 2:
        J, y = J[None], y[None]
    sig2 = max(float(np.linalg.norm(Ji, 2)) ** 2 for Ji in J)
    return sig2, max(float(np.max(np.abs(y))), 1.0)


class GDInfo(NamedTuple):
    """Diagnostics of :func:`gradient_descent` (numpy, one entry per run).

    iterations: int, GD steps taken. residual: float, final ‖Jθ + s − y‖₂ / ‖y‖₂.
    change: float, the estimated distance of (θ, s) to GD's own limit, relative to
    ‖(θ, s)‖ (geometric extrapolation of the last two chunk-to-chunk changes; inf
    while the changes do not shrink). converged: bool, residual ≤ tol and change ≤
    xtol. finite: bool, no NaN/inf appeared. tau: the τ used (per α).
    """

    iterations: np.ndarray
    residual: np.ndarray
    change: np.ndarray
    converged: np.ndarray
    finite: np.ndarray
    tau: np.ndarray


_CHUNK = 200  # steps between convergence checks inside the while_loop


def _gd_single(K, y, alpha, gamma, tau, tol, xtol, max_iter):
    """Eq. (16) for one (J, y, α), written on w with θ = Jᵀw.

    GD keeps θ_k = Jᵀ w_k with w_{k+1} = w_k − τ r_k (θ starts at 0 and every update
    is Jᵀ times something), so Jθ = K w with K = JJᵀ: one N×N mat-vec per step
    instead of two N×p ones, and exactly the same iterates.

    Stopping rule: a small residual is not enough. In the slow regime (s★ sparser
    than N − rank J) the residual is ~0 long before (θ, s) settle. So every chunk
    measures d = ‖(θ, s) − (θ, s)_prev‖ (‖Δθ‖² = ΔwᵀKΔw), q = d / d_prev, and
    estimates the distance still to go as the geometric tail d·q/(1 − q); it stops
    when that is ≤ xtol·‖(θ, s)‖ and the residual is ≤ tol.
    """
    N = y.shape[0]
    ynorm = jnp.maximum(jnp.linalg.norm(y), 1e-300)

    def residual(w, u, v):
        return K @ w + u * u - v * v - y

    def step(_, carry):
        w, u, v = carry
        r = residual(w, u, v)
        return w - tau * r, u - 2 * alpha * tau * u * r, v + 2 * alpha * tau * v * r

    def done(res, est):
        return (res <= tol) & (est <= xtol)

    def cond(c):
        it, _, res, _, est = c
        return (it < max_iter) & ~done(res, est) & jnp.isfinite(res)

    def body(c):
        it, state, _, d_prev, _ = c
        new = jax.lax.fori_loop(0, _CHUNK, step, state)
        dw, ds = new[0] - state[0], (new[1] ** 2 - new[2] ** 2) - (state[1] ** 2 - state[2] ** 2)
        d = jnp.sqrt(dw @ K @ dw + ds @ ds)
        s = new[1] ** 2 - new[2] ** 2
        scale = jnp.maximum(jnp.sqrt(new[0] @ K @ new[0] + s @ s), 1e-300)
        q = d / jnp.maximum(d_prev, 1e-300)
        # d·q/(1−q) while the changes shrink; at the rounding floor they stop shrinking.
        est = jnp.where(q < 1, d * q / (1 - q), jnp.where(d <= 1e-12 * scale, d, jnp.inf)) / scale
        return it + _CHUNK, new, jnp.linalg.norm(residual(*new)) / ynorm, d, est

    init = (jnp.zeros(N), jnp.full(N, gamma), jnp.full(N, gamma))
    res0 = jnp.linalg.norm(residual(*init)) / ynorm
    c0 = (jnp.asarray(0), init, res0, jnp.asarray(jnp.inf), jnp.asarray(jnp.inf))
    it, (w, u, v), res, _, est = jax.lax.while_loop(cond, body, c0)
    return w, u * u - v * v, it, res, est


# vmapped over α (inner) and problems (outer); jitted once per shape.
_gd_alphas = jax.vmap(_gd_single, in_axes=(None, None, 0, None, 0, None, None, None))
_gd_batch = jax.jit(jax.vmap(_gd_alphas, in_axes=(0, 0, None, None, None, None, None, None)))


def gradient_descent(J, y, alpha, gamma, tau=None, tol=1e-8, xtol=1e-7, max_iter=4_000_000):
    """Gradient descent of eq. (16) on ``h(θ,u,v) = ½‖Jθ + u⊙u − v⊙v − y‖²``, run to its limit.

    Learning rate τ for θ and ατ for u and v, from θ = 0, u = v = γ·1 (eq. 19).
    Jitted and float64, a ``lax.while_loop`` that checks every 200 steps, vmapped
    over α values and over a leading trial axis of J and y.

    Args:
        J: (N, p) or (T, N, p) array.
        y: (N,) or (T, N) array.
        alpha: scalar or (A,) learning-rate ratios.
        gamma: scalar init scale γ > 0.
        tau: θ step size: a scalar, one value per α, or None for :func:`default_tau`
            at each α (over the whole trial batch), so every run is stable and the
            small-α runs are not slowed to the largest α's step.
        tol: relative residual ``‖Jθ + s − y‖₂ / ‖y‖₂`` to reach (float64 rounding
            sets a floor near 1e-15).
        xtol: estimated relative distance of (θ, s) to GD's own limit to reach (see
            :class:`GDInfo`); both tests must pass to stop before ``max_iter``.
        max_iter: iteration cap (counted in GD steps, rounded up to 200).

    Returns:
        ``(theta, s, info)``: theta (…, p) and s = u⊙u − v⊙v (…, N) as float64
        numpy, with leading axes ``(T, A)`` as given (scalar axes dropped), and a
        :class:`GDInfo`. Non-converged or non-finite runs are reported in ``info``,
        never raised, so a sweep can mark its cells.

    Raises:
        ValueError: on shape mismatch, γ ≤ 0, α ≤ 0 or τ ≤ 0.
    """
    J = np.asarray(J, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    alpha_arr = np.atleast_1d(np.asarray(alpha, dtype=np.float64))
    batched, scalar_alpha = J.ndim == 3, np.ndim(alpha) == 0
    if not batched:
        J, y = J[None], y[None]
    if J.ndim != 3 or y.shape != J.shape[:2]:
        raise ValueError(f"J must be (N, p) or (T, N, p) with y (N,) or (T, N); got {J.shape}, {y.shape}")
    if not gamma > 0 or np.any(alpha_arr <= 0):
        raise ValueError(f"need gamma > 0 and alpha > 0, got gamma={gamma}, alpha={alpha}")
    if tau is None:
        sig2, ymax = _tau_scales(J, y)  # once for all α, not once per α
        tau = 1.0 / (sig2 + TAU_ACCURACY * alpha_arr * ymax)
    tau = np.broadcast_to(np.asarray(tau, dtype=np.float64), alpha_arr.shape)
    if not np.all(tau > 0):
        raise ValueError(f"tau must be positive, got {tau}")
    K = np.einsum("tnp,tmp->tnm", J, J)
    w, s, it, res, est = _gd_chunked(K, y, alpha_arr, float(gamma), tau, (float(tol), float(xtol), int(max_iter)))
    theta = np.einsum("tnp,tan->tap", J, w)
    finite = np.isfinite(res) & np.all(np.isfinite(theta), axis=-1)
    info = GDInfo(iterations=it, residual=res, change=est, converged=finite & (res <= tol) & (est <= xtol),
                  finite=finite, tau=tau)

    def squeeze(a):
        if scalar_alpha:
            a = a[:, 0]
        return a if batched else a[0]

    return squeeze(theta), squeeze(s), GDInfo(*(squeeze(x) for x in info[:5]),
                                              tau=info.tau[0] if scalar_alpha else info.tau)


def _gd_chunked(K, y, alpha, gamma, tau, stop):
    """Run :func:`_gd_batch` over cache-sized chunks of trials, one thread per core.

    The whole batch's K (T·N²·8 bytes) is re-read every step, so a batch that
    outgrows the CPU cache turns GD memory-bound; chunks are independent XLA
    calls that release the GIL.
    """
    chunk = max(1, min(len(K), (1 << 21) // (8 * K[0].size * len(alpha))))

    def run(c):
        with x64():
            out = _gd_batch(jnp.asarray(K[c:c + chunk]), jnp.asarray(y[c:c + chunk]), jnp.asarray(alpha),
                            gamma, jnp.asarray(tau), *stop)
            return [np.asarray(a) for a in out]

    starts = list(range(0, len(K), chunk))
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(len(starts), os.cpu_count() or 1)) as pool:
        parts = list(pool.map(run, starts))
    return tuple(np.concatenate(p) for p in zip(*parts))


def gd_trajectory(J, y, alpha, gamma, tau, steps, every=1):
    """The GD iterates of eq. (16) themselves, for checking the invariants of eq. (20).

    Returns float64 numpy arrays theta (S, p), u (S, N), v (S, N) with
    ``S = steps // every`` snapshots (after steps every, 2·every, …). Uses the
    explicit θ update (not the w-form of :func:`gradient_descent`), so a test of
    "θ stays in the row space of J" is a test of the real iteration.
    """
    J = np.asarray(J, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    with x64():
        Jj, yj = jnp.asarray(J), jnp.asarray(y)

        def step(carry, _):
            theta, u, v = carry
            r = Jj @ theta + u * u - v * v - yj
            return (theta - tau * Jj.T @ r, u - 2 * alpha * tau * u * r, v + 2 * alpha * tau * v * r), None

        def chunk(carry, _):
            carry, _ = jax.lax.scan(step, carry, None, length=every)
            return carry, carry

        init = (jnp.zeros(J.shape[1]), jnp.full(J.shape[0], gamma), jnp.full(J.shape[0], gamma))
        _, (th, u, v) = jax.jit(lambda c: jax.lax.scan(chunk, c, None, length=steps // every))(init)
        return np.asarray(th), np.asarray(u), np.asarray(v)


# ------------------------------------------------------------ gradient-flow limit


def flow_limit(J, y, alpha, gamma, tol=1e-13, max_iter=500, return_nu=False):
    """Exact t → ∞ limit of the gradient flow (17) at finite γ (no step-size error).

    Derivation. With init (19) the flow (17) integrates in closed form (eq. 20):
    ``u̇ = −2α u⊙r`` gives ``u_t = γ·exp(2αν_t)``, ``v̇ = 2α v⊙r`` gives
    ``v_t = γ·exp(−2αν_t)``, and ``θ̇ = −Jᵀr`` gives ``θ_t = Jᵀν_t``, where
    ``ν_t = −∫₀ᵗ r`` (eq. 21). Hence ``s_t = u⊙u − v⊙v = 2γ²·sinh(4αν_t)``. The
    limit is a global minimiser of (15) (Prop. 3.3), i.e. ``y = Jθ∞ + s∞``, so
    ν∞ is a root of

        F(ν) = JJᵀν + 2γ²·sinh(4αν) − y.

    F = ∇Φ for ``Φ(ν) = ½νᵀJJᵀν + (γ²/2α)·Σᵢ cosh(4αν_i) − yᵀν``, whose Hessian
    ``JJᵀ + 8αγ²·diag(cosh(4αν))`` is positive definite, so Φ is strictly convex
    and the root is unique. We minimise Φ by Newton's method with Armijo
    backtracking (globally convergent for a strictly convex, smooth Φ) to
    ``‖F(ν)‖ ≤ tol·max(‖y‖, 1)``, then return ``θ = Jᵀν``, ``s = 2γ² sinh(4αν)``.

    For small γ the cosh term starts below the rounding of JJᵀ and Newton cannot
    see the null-space directions, so below γ = e⁻⁸ we follow a continuation path:
    solve at γ_j = e⁻⁸, e⁻¹², … → γ with α_j = α·log γ_j / log γ (fixed
    λ = −log γ/(2α)), warm-starting each solve from the last ν. Along that path ν
    tends to the dual of (26), so every warm start is already close.

    Args: J (N, p), y (N,), scalar alpha > 0 and gamma > 0 (numpy or jax arrays).
    Returns: ``(theta (p,), s (N,))`` float64 numpy (and ν if ``return_nu``).
    Raises: ValueError for bad shapes or parameters; RuntimeError if Newton fails
    to reach ``tol`` within ``max_iter`` steps (it names the residual reached).
    """
    J = np.asarray(J, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if J.ndim != 2 or y.shape != (J.shape[0],):
        raise ValueError(f"flow_limit takes J (N, p) and y (N,); got {J.shape}, {y.shape}")
    if not (alpha > 0 and gamma > 0):
        raise ValueError(f"need alpha > 0 and gamma > 0, got {alpha}, {gamma}")
    K = J @ J.T
    nu = np.zeros_like(y)
    for a_j, g_j in _continuation(alpha, gamma):
        nu = _flow_newton(K, y, a_j, g_j, nu, tol, max_iter)
    theta, s = J.T @ nu, 2 * gamma * gamma * np.sinh(4.0 * alpha * nu)
    return (theta, s, nu) if return_nu else (theta, s)


def _flow_newton(K, y, alpha, gamma, nu, tol, max_iter):
    """Damped Newton for F(ν) = Kν + 2γ² sinh(4αν) − y = 0 from ``nu``; see flow_limit."""
    c = 4.0 * alpha
    g2 = gamma * gamma

    def phi(nu):
        with np.errstate(over="ignore"):
            return 0.5 * nu @ K @ nu + (g2 / c) * np.sum(np.cosh(c * nu)) - y @ nu

    def F_of(nu):
        return K @ nu + 2 * g2 * np.sinh(c * nu) - y

    scale = max(np.linalg.norm(y), 1.0)
    F = F_of(nu)
    for _ in range(max_iter):
        fnorm = np.linalg.norm(F)
        if fnorm <= tol * scale:
            break
        H = K + 2 * g2 * c * np.diag(np.cosh(c * nu))
        try:
            step = np.linalg.solve(H, -F)
        except np.linalg.LinAlgError:  # tiny γ: H is K (rank r) plus ~γ², singular to rounding
            step = np.linalg.lstsq(H, -F, rcond=None)[0]
        # Far from the root the quadratic model of cosh is poor and H is nearly
        # singular (K has rank r < N), so cap each step's change of the exponent
        # 4αν at 2: a positive rescaling keeps it a descent direction for Φ.
        big = c * np.abs(step).max()
        if big > 2.0:
            step *= 2.0 / big
        f0, slope, t = phi(nu), F @ step, 1.0
        while t >= 1e-12:
            cand = nu + t * step
            Fc = F_of(cand)
            fc = phi(cand)
            # Armijo on Φ, or (once Φ's decrease is below rounding) a drop in ‖F‖.
            if (np.isfinite(fc) and fc <= f0 + 1e-4 * t * slope) or np.linalg.norm(Fc) < (1 - 1e-4 * t) * fnorm:
                break
            t *= 0.5
        else:
            break  # no progress representable: we sit at the root to rounding
        nu, F = cand, Fc
    fnorm = np.linalg.norm(F)
    floor = 1e3 * np.finfo(float).eps * (np.linalg.norm(K, 2) * np.abs(nu).max() + scale)
    if not fnorm <= max(tol * scale, floor):
        raise RuntimeError(f"flow_limit: Newton stopped at ‖F‖ = {fnorm:.3e} (alpha={alpha}, gamma={gamma})")
    return nu


def flow_limit_batch(J, y, alpha, gamma, nu0=None, tol=1e-13, max_iter=100):
    """:func:`flow_limit` for a batch of problems at once: vmapped damped Newton in JAX.

    Same equation and stopping rule as :func:`flow_limit` (F(ν) = JJᵀν + 2γ² sinh(4αν)
    − y = 0, ‖F‖ ≤ tol·max(‖y‖, 1)) and the same small-γ continuation (γ_j = e⁻⁸,
    e⁻¹², … at fixed λ, each solve warm-started from the last). The line search tries
    the steps 1, ½, …, 2⁻³⁰ at once and takes the
    largest that passes Armijo on Φ (or lowers ‖F‖). ``nu0`` (B, N) is a starting
    point, e.g. the dual of (26), which the flow's ν approaches as γ → 0: Φ is
    strictly convex, so the root does not depend on it, only the iteration count.
    Rows that do not reach ``tol`` are redone by :func:`flow_limit` (numpy, with
    its checks), so every returned row is a root or an error is raised.

    Args: J (B, N, p), y (B, N), scalar alpha > 0, gamma > 0, nu0 (B, N) or None.
    Returns: theta (B, p), s (B, N) float64 numpy and the number of rows redone.
    """
    J = np.asarray(J, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if J.ndim != 3 or y.shape != J.shape[:2]:
        raise ValueError(f"flow_limit_batch takes J (B, N, p) and y (B, N); got {J.shape}, {y.shape}")
    if not (alpha > 0 and gamma > 0):
        raise ValueError(f"need alpha > 0 and gamma > 0, got {alpha}, {gamma}")
    K = J @ J.transpose(0, 2, 1)
    nu = np.zeros_like(y) if nu0 is None else np.nan_to_num(np.asarray(nu0, dtype=np.float64))
    with x64():
        Kj, yj = jnp.asarray(K), jnp.asarray(y)
        for a_j, g_j in _continuation(alpha, gamma):
            nu, ok = _newton_batch(Kj, yj, jnp.asarray(nu), a_j, g_j, float(tol), int(max_iter))
        nu, ok = np.array(nu), np.asarray(ok)
    redo = np.flatnonzero(~ok)
    for i in redo:
        nu[i] = flow_limit(J[i], y[i], alpha, gamma, tol=tol, return_nu=True)[2]
    theta = np.einsum("bnp,bn->bp", J, nu)
    return theta, 2 * gamma * gamma * np.sinh(4.0 * alpha * nu), len(redo)


def _continuation(alpha: float, gamma: float) -> list[tuple[float, float]]:
    """The (α_j, γ_j) path of :func:`flow_limit`: γ_j = e⁻⁸, e⁻¹², … down to γ at fixed
    λ = −log γ/(2α) (so α_j = α·log γ_j / log γ); just (α, γ) when γ ≥ e⁻⁸."""
    log_g = float(np.log(gamma))
    steps = np.arange(-8.0, log_g, -4.0) if log_g < -8.0 else []
    return [(float(alpha * lg / log_g), float(np.exp(lg))) for lg in steps] + [(float(alpha), float(gamma))]


def _newton_single(K, y, nu, alpha, gamma, tol, max_iter):
    c, g2 = 4.0 * alpha, gamma * gamma
    scale = jnp.maximum(jnp.linalg.norm(y), 1.0)
    ts = 0.5 ** jnp.arange(31.0)

    def F_of(nu, Knu):
        return Knu + 2 * g2 * jnp.sinh(c * nu) - y

    def phi(nu, Knu):
        return 0.5 * nu @ Knu + (g2 / c) * jnp.sum(jnp.cosh(c * nu)) - y @ nu

    def body(st):
        it, nu, _, _ = st
        Knu = K @ nu
        F = F_of(nu, Knu)
        H = K + 2 * g2 * c * jnp.diag(jnp.cosh(c * nu))
        step = -jax.scipy.linalg.cho_solve((jnp.linalg.cholesky(H), True), F)
        step = step * jnp.minimum(1.0, 2.0 / jnp.maximum(c * jnp.max(jnp.abs(step)), 1e-300))  # as flow_limit
        Kd = K @ step
        cand = nu[None] + ts[:, None] * step[None]
        Kc = Knu[None] + ts[:, None] * Kd[None]
        f0, fn = phi(nu, Knu), jnp.linalg.norm(F)
        fc = jax.vmap(phi)(cand, Kc)
        Fc = jnp.linalg.norm(jax.vmap(F_of)(cand, Kc), axis=1)
        good = (jnp.isfinite(fc) & (fc <= f0 + 1e-4 * ts * (F @ step))) | (Fc < (1 - 1e-4 * ts) * fn)
        j = jnp.argmax(good)
        moved = jnp.any(good)
        nu = jnp.where(moved, cand[j], nu)
        Fn = jnp.where(moved, Fc[j], fn)
        return it + 1, nu, Fn, moved

    def cond(st):
        it, _, Fn, moved = st
        return (it < max_iter) & (Fn > tol * scale) & moved

    Fn0 = jnp.linalg.norm(F_of(nu, K @ nu))
    _, nu, Fn, _ = jax.lax.while_loop(cond, body, (0, nu, Fn0, jnp.asarray(True)))
    return nu, Fn <= tol * scale


_newton_batch = jax.jit(jax.vmap(_newton_single, in_axes=(0, 0, 0, None, None, None, None)), static_argnums=(6,))


def flow_limit_primal_batch(J, y, alpha, gamma, theta0, max_iter=60, rtol=1e-8):
    """The flow limit (17) at any γ > 0, for a batch, by Newton on its primal problem.

    At the limit θ = Jᵀν and s = 2γ² sinh(4αν) (see :func:`flow_limit`), i.e.
    ν = H'(s) with H'(s) = asinh(s/(2γ²))/(4α), so
    (θ, s) minimises ½‖θ‖² + Σᵢ H(sᵢ) subject to y = Jθ + s, i.e. θ minimises

        f(θ) = ½‖θ‖² + Σᵢ H(yᵢ − Jᵢθ),  H(s) = [s·asinh(s/c) − √(s² + c²)]/(4α),  c = 2γ²,

    strictly convex and smooth. Unlike the ν-form used by :func:`flow_limit`, this
    stays well posed for tiny γ: ν's part in null(Jᵀ) is fixed only through sᵢ ~ γ²
    far below float64's resolution, but θ never depends on it. The Newton step uses
    (I + JᵀDJ)⁻¹ = I − Jᵀ(D⁻¹ + JJᵀ)⁻¹J, D = diag H''(s), D⁻¹ = 4α√(s² + c²): one
    N×N Cholesky per step (ε = 1e-14·max Kᵢᵢ is added to it; that only touches the
    null(Jᵀ) part that Jᵀ removes). A backtracking line search on f; stops when the
    Newton step is ≤ 1e-3·rtol·max(‖θ‖, 1) or the line search finds no decrease; a row
    counts as converged if its last full Newton step was ≤ rtol relative (near the
    limit Newton's step is its distance to it).

    Args: J (B, N, p), y (B, N), scalar alpha, gamma > 0, theta0 (B, p) a start, e.g.
    the convex solution of (26), which this limit tends to as γ → 0 (Prop. 3.3).
    Returns: theta (B, p), s = y − Jθ (B, N) float64 numpy, converged (B,) bool and the
    last relative Newton step (B,).
    Raises: ValueError for bad shapes or parameters.
    """
    J = np.asarray(J, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    theta0 = np.nan_to_num(np.asarray(theta0, dtype=np.float64))
    if J.ndim != 3 or y.shape != J.shape[:2] or theta0.shape != (J.shape[0], J.shape[2]):
        raise ValueError(f"flow_limit_primal_batch takes J (B, N, p), y (B, N), theta0 (B, p); "
                         f"got {J.shape}, {y.shape}, {theta0.shape}")
    if not (alpha > 0 and gamma > 0):
        raise ValueError(f"need alpha > 0 and gamma > 0, got {alpha}, {gamma}")
    B, chunk = len(J), 128
    parts = []
    with x64():  # chunks of one shape: rows that converge early do not wait for a whole figure's slowest
        for c in range(0, B, chunk):
            rows = np.minimum(np.arange(c, c + chunk), B - 1)
            out = _primal_newton_batch(jnp.asarray(J[rows]), jnp.asarray(y[rows]), jnp.asarray(theta0[rows]),
                                       float(alpha), float(gamma), int(max_iter))
            parts.append([np.asarray(o)[:B - c] for o in out])
    th, rel = (np.concatenate(p) for p in zip(*parts))
    return th, y - np.einsum("bnp,bp->bn", J, th), rel <= rtol, rel


def _primal_newton_single(J, y, theta, alpha, gamma, max_iter, rtol=1e-8):
    c = 2.0 * gamma * gamma
    K = J @ J.T
    eps = 1e-14 * jnp.max(jnp.diag(K))
    ts = 0.5 ** jnp.arange(31.0)

    def f(th):
        s = y - J @ th
        return 0.5 * th @ th + jnp.sum(s * jnp.arcsinh(s / c) - jnp.sqrt(s * s + c * c)) / (4 * alpha)

    def body(st):
        it, th, _, _ = st
        s = y - J @ th
        g = th - J.T @ (jnp.arcsinh(s / c) / (4 * alpha))
        M = K + jnp.diag(4 * alpha * jnp.sqrt(s * s + c * c) + eps)
        w = jax.scipy.linalg.cho_solve((jnp.linalg.cholesky(M), True), (J @ g)[:, None])[:, 0]
        step = -(g - J.T @ w)
        f0 = f(th)
        fc = jax.vmap(lambda t: f(th + t * step))(ts)
        good = jnp.isfinite(fc) & (fc <= f0 + 1e-4 * ts * (g @ step))
        moved = jnp.any(good)
        t = ts[jnp.argmax(good)]
        # stop on the step, not on the gradient: g carries H'(s) at sᵢ ~ rounding, where
        # H' is steep (0.4λ at s = 1e-16, γ = e⁻³²), but the step it causes is tiny
        rel = jnp.linalg.norm(step) / jnp.maximum(jnp.linalg.norm(th), 1.0)
        return it + 1, jnp.where(moved, th + t * step, th), rel, moved & (rel > 1e-3 * rtol)

    def cond(st):
        return (st[0] < max_iter) & st[3]

    _, th, dec, _ = jax.lax.while_loop(cond, body, (0, theta, jnp.asarray(jnp.inf), jnp.asarray(True)))
    return th, dec


_primal_newton_batch = jax.jit(jax.vmap(_primal_newton_single, in_axes=(0, 0, 0, None, None, None)),
                               static_argnums=(5,))


# ------------------------------------------------------------------- coherence


def coherence(J, rtol: float = 1e-10):
    """Coherence μ(J) = (N/r)·max_i ‖Uᵀe_i‖² (Definition 3.4, eq. 27).

    U is the compact SVD's left factor, truncated at the numerical rank r (singular
    values above ``rtol·σ_max``). J (N, p) gives a float in [1, N/r]; a stack
    (T, N, p) gives a (T,) array (one batched SVD). Raises ValueError if J has
    fewer than 2 dimensions or is zero.
    """
    J = np.asarray(J, dtype=np.float64)
    if J.ndim < 2:
        raise ValueError(f"coherence takes a 2-D J (or a stack of them), got shape {J.shape}")
    U, sv, _ = np.linalg.svd(J, full_matrices=False)
    if sv.shape[-1] == 0 or np.any(sv[..., 0] == 0):
        raise ValueError("coherence of a zero matrix is undefined")
    keep = sv > rtol * sv[..., :1]
    r = keep.sum(axis=-1)
    lev = np.sum((U * keep[..., None, :]) ** 2, axis=-1)
    mu = J.shape[-2] / r * lev.max(axis=-1)
    return float(mu) if J.ndim == 2 else mu


def recovery_condition(N: int, r: int, k: int, mu: float) -> bool:
    """Proposition 3.5's sufficient condition ``k²·r < N / (4μ)`` (eq. 28)."""
    return k * k * r < N / (4.0 * mu)


def relative_distance(a, b) -> np.ndarray:
    """ρ = ‖a − b‖ / max(‖a‖, ‖b‖) over the last axis (Fig. 2's measure); 0 if both are 0."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    den = np.maximum(np.linalg.norm(a, axis=-1), np.linalg.norm(b, axis=-1))
    num = np.linalg.norm(a - b, axis=-1)
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)


def relative_error(est, ref) -> np.ndarray:
    """‖est − ref‖ / ‖ref‖ over the last axis (Figs. 3–4's ε_θ, ε_s)."""
    est, ref = np.asarray(est, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    return np.linalg.norm(est - ref, axis=-1) / np.maximum(np.linalg.norm(ref, axis=-1), 1e-300)
