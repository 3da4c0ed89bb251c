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

    @property
    def shape(self) -> tuple[int, int]:
        return self.J.shape[-2:]


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
    _check_sizes(N, p, r, k)
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((N, r))
    B = rng.standard_normal((r, p))
    J = A @ B
    s_star = np.zeros(N)
    support = rng.choice(N, size=k, replace=False)
    s_star[support] = rng.standard_normal(k)
    theta = rng.standard_normal(p)
    y = J @ theta + s_star
    theta_star = np.linalg.pinv(J) @ (y - s_star)
    return Problem(J=J, y=y, theta_star=theta_star, s_star=s_star, seed=seed)


def make_problems(N: int, p: int, r: int, k: int, seed: int, trials: int) -> Problem:
    """A batch of ``trials`` independent instances, stacked on a leading axis.

    Trial ``t`` is ``make_problem(N, p, r, k, seed=[seed, t])``-style: its stream is
    derived from ``(seed, t)``, so a trial does not change when ``trials`` grows.
    Arrays: J (T, N, p), y (T, N), theta_star (T, p), s_star (T, N); ``seed`` holds
    the per-trial integer seeds. Raises ValueError as :func:`make_problem`.
    """
    seeds = [int(np.random.SeedSequence([seed, t]).generate_state(1)[0]) for t in range(trials)]
    probs = [make_problem(N, p, r, k, s) for s in seeds]
    return Problem(
        J=np.stack([q.J for q in probs]),
        y=np.stack([q.y for q in probs]),
        theta_star=np.stack([q.theta_star for q in probs]),
        s_star=np.stack([q.s_star for q in probs]),
        seed=np.asarray(seeds),
    )


# ----------------------------------------------------------------- the dynamics


def alpha_for(lam, gamma):
    """The learning-rate ratio matched to λ at init scale γ: α = −log γ / (2λ) (eq. 23)."""
    return -np.log(gamma) / (2.0 * np.asarray(lam, dtype=np.float64))


def lam_for(alpha, gamma):
    """Inverse of :func:`alpha_for`: λ = −log γ / (2α)."""
    return -np.log(gamma) / (2.0 * np.asarray(alpha, dtype=np.float64))


def default_tau(J, y, alpha_max: float) -> float:
    """Step size τ for eq. (16) that is stable up to ``alpha_max``.

    Rule: ``τ = 1 / (‖J‖₂² + 4·α_max·max(‖y‖_∞, 1))``.

    Why: near a solution the residual obeys ``r⁺ ≈ (I − τ(JJᵀ + 4α·diag(u²+v²))) r``,
    and on the flow ``u² + v² = sqrt(s² + 4γ⁴) ≲ |s| ≈ |y − Jθ|``. Plain GD is
    stable while τ times the largest eigenvalue is below 2; the rule keeps it at
    most 1 using ``‖y‖_∞`` as the scale of |s|, which leaves a factor-2 margin for
    transients where |s| overshoots. For a batch of problems take the max over it.
    """
    sig2, ymax = _tau_scales(J, y)
    return 1.0 / (sig2 + 4.0 * float(alpha_max) * ymax)


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
    converged: bool, residual ≤ tol. finite: bool, no NaN/inf appeared. tau: the τ used (per α).
    """

    iterations: np.ndarray
    residual: np.ndarray
    converged: np.ndarray
    finite: np.ndarray
    tau: np.ndarray


_CHUNK = 200  # steps between convergence checks inside the while_loop


def _gd_single(K, y, alpha, gamma, tau, tol, max_iter):
    """Eq. (16) for one (J, y, α), written on w with θ = Jᵀw.

    GD keeps θ_k = Jᵀ w_k with w_{k+1} = w_k − τ r_k (θ starts at 0 and every update
    is Jᵀ times something), so Jθ = K w with K = JJᵀ: one N×N mat-vec per step
    instead of two N×p ones, and exactly the same iterates.
    """
    N = y.shape[0]
    ynorm = jnp.maximum(jnp.linalg.norm(y), 1e-300)

    def residual(w, u, v):
        return K @ w + u * u - v * v - y

    def step(_, carry):
        w, u, v = carry
        r = residual(w, u, v)
        return w - tau * r, u - 2 * alpha * tau * u * r, v + 2 * alpha * tau * v * r

    def cond(c):
        it, (w, u, v), res = c
        return (it < max_iter) & (res > tol) & jnp.isfinite(res)

    def body(c):
        it, state, _ = c
        state = jax.lax.fori_loop(0, _CHUNK, step, state)
        return it + _CHUNK, state, jnp.linalg.norm(residual(*state)) / ynorm

    init = (jnp.zeros(N), jnp.full(N, gamma), jnp.full(N, gamma))
    res0 = jnp.linalg.norm(residual(*init)) / ynorm
    it, (w, u, v), res = jax.lax.while_loop(cond, body, (jnp.asarray(0), init, res0))
    return w, u * u - v * v, u, v, it, res


# vmapped over α (inner) and problems (outer); jitted once per shape.
_gd_alphas = jax.vmap(_gd_single, in_axes=(None, None, 0, None, 0, None, None))
_gd_batch = jax.jit(jax.vmap(_gd_alphas, in_axes=(0, 0, None, None, None, None, None)))


def gradient_descent(J, y, alpha, gamma, tau=None, tol=1e-7, max_iter=400_000, return_uv=False, chunk=None):
    """Gradient descent of eq. (16) on ``h(θ,u,v) = ½‖Jθ + u⊙u − v⊙v − y‖²``.

    Learning rate τ for θ and ατ for u and v, from θ = 0, u = v = γ·1 (eq. 19).
    Jitted and float64, a ``lax.while_loop`` that checks the residual every 200
    steps, vmapped over α values and over a leading trial axis of J and y.

    Args:
        J: (N, p) or (T, N, p) array.
        y: (N,) or (T, N) array.
        alpha: scalar or (A,) learning-rate ratios.
        gamma: scalar init scale γ > 0.
        tau: θ step size: a scalar, one value per α, or None for :func:`default_tau`
            at each α (over the whole trial batch), so every run is stable and the
            small-α runs are not slowed to the largest α's step.
        tol: stop when ``‖Jθ + s − y‖₂ / ‖y‖₂ ≤ tol``; units: relative residual.
            Below ~1e-8 float64 rounding of Jθ + s − y sets the floor.
        max_iter: iteration cap (counted in GD steps, rounded up to 200).
        return_uv: also return ``(u, v)`` as a fourth output.
        chunk: trials per compiled batch (default: what keeps K within ~2 MiB of cache).

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
        tau = 1.0 / (sig2 + 4.0 * alpha_arr * ymax)
    tau = np.broadcast_to(np.asarray(tau, dtype=np.float64), alpha_arr.shape)
    if not np.all(tau > 0):
        raise ValueError(f"tau must be positive, got {tau}")
    K = np.einsum("tnp,tmp->tnm", J, J)
    # Trials run in chunks of `chunk`: the whole batch's K (T·N²·8 bytes) is re-read
    # every step, so a batch that outgrows the CPU cache turns GD memory-bound.
    chunk = max(1, min(len(J), chunk or max(1, (1 << 21) // (8 * K[0].size * len(alpha_arr)))))
    def run(c):
        with x64():
            out = _gd_batch(jnp.asarray(K[c:c + chunk]), jnp.asarray(y[c:c + chunk]), jnp.asarray(alpha_arr),
                            float(gamma), jnp.asarray(tau), float(tol), int(max_iter))
            return [np.asarray(a) for a in out]

    # Chunks are independent XLA calls that release the GIL: one thread per core.
    starts = list(range(0, len(J), chunk))
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(len(starts), os.cpu_count() or 1)) as pool:
        parts = list(pool.map(run, starts))
    w, s, u, v, it, res = (np.concatenate(p) for p in zip(*parts))
    theta = np.einsum("tnp,tan->tap", J, w)
    finite = np.isfinite(res) & np.all(np.isfinite(theta), axis=-1)
    info = GDInfo(iterations=it, residual=res, converged=finite & (res <= tol), finite=finite, tau=tau)

    def squeeze(a):
        if scalar_alpha:
            a = a[:, 0]
        return a if batched else a[0]

    out_info = GDInfo(*(squeeze(x) for x in info[:4]), tau=info.tau[0] if scalar_alpha else info.tau)
    if return_uv:
        return squeeze(theta), squeeze(s), out_info, (squeeze(u), squeeze(v))
    return squeeze(theta), squeeze(s), out_info


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
    log_g = np.log(gamma)
    if log_g < -8.0:
        for lg in np.arange(-8.0, log_g, -4.0):
            nu = _flow_newton(K, y, alpha * lg / log_g, np.exp(lg), nu, tol, max_iter)
    nu = _flow_newton(K, y, alpha, gamma, nu, tol, max_iter)
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


# ------------------------------------------------------------------- coherence


def coherence(J, rtol: float = 1e-10) -> float:
    """Coherence μ(J) = (N/r)·max_i ‖Uᵀe_i‖² (Definition 3.4, eq. 27).

    U is the compact SVD's left factor, truncated at the numerical rank r (singular
    values above ``rtol·σ_max``). Returns a float in [1, N/r]. Raises ValueError if
    J is not 2-D or is zero.
    """
    J = np.asarray(J, dtype=np.float64)
    if J.ndim != 2:
        raise ValueError(f"coherence takes a 2-D J, got shape {J.shape}")
    U, sv, _ = np.linalg.svd(J, full_matrices=False)
    if sv.size == 0 or sv[0] == 0:
        raise ValueError("coherence of a zero matrix is undefined")
    r = int(np.sum(sv > rtol * sv[0]))
    U = U[:, :r]
    return float(J.shape[0] / r * np.max(np.sum(U * U, axis=1)))


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
