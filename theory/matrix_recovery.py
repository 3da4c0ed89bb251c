"""Robust low-rank matrix recovery by double over-parameterization (DOP), against convex RPCA.

Source: You, Zhu, Qu, Ma, NeurIPS 2020 (slides /work/shared/seeds/002_*.txt,
"A Double Over-Parameterization Method" and "Implicit Algorithmic Bias: Main Theory").
Observe ``y = A(L★) + s★`` with L★ rank r (n × n) and s★ a fraction ρ of gross
outliers; fit

    ℓ(U, g, h) = ½ ‖A(U Uᵀ) + g⊙g − h⊙h − y‖²      (PSD case; X = U Vᵀ in the general case)

with U (and V) n × n, by gradient descent from small initialization (U₀ = V₀ = w·I,
g₀ = h₀ = w·1), step τ on U, V and α·τ on g, h. The slides' theorem: in the limit
w, τ → 0 (A symmetric, commuting) the limit solves ``min ‖X‖_* + (1/α)‖s‖₁ s.t.
y = A(X) + s``, and α = √n is the λ = 1/√n of Candès, Li, Ma, Wright (2009) that
recovers (L★, s★) under incoherence and sparsity. Baselines: that convex program
with CVXPY, and the inexact-ALM solver of ``pyrpca`` (Lin, Chen, Ma 2010).

Run:
    python -m theory.matrix_recovery --quick          # ~1–2 min, writes to runs/matrix_recovery-<time>/
    python -m theory.matrix_recovery --out figures    # regenerate the committed dop_matrix_* figures

Writes ``dop_matrix_curves.{png,json}`` (relative error ‖X − L★‖_F/‖L★‖_F vs iteration
for several α, plus plain GD on ½‖UUᵀ − y‖² without s; final error vs α next to the
convex program at λ = 1/α) and ``dop_matrix_phase.{png,json}`` (success rate over
rank × corruption fraction for DOP at α = √n, convex RPCA and IALM at λ = 1/√n).

All arithmetic is float64 (JAX under a scoped ``enable_x64``; numpy; CVXPY).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import json
import pathlib
import time

import cvxpy as cp
import jax
import jax.numpy as jnp
import numpy as np

from sopjax.core.overparam import sparse_term
from sopjax.infra import cli, extras, memory
from sopjax.infra.jsonio import atomic_path, dumps
from sopjax.infra.preflight import probe_dir
from sopjax.infra.provenance import code_version
from theory.linear_model import x64

# --------------------------------------------------------------------------- data


@dataclasses.dataclass(frozen=True)
class Problem:
    """One instance of ``Y = L★ + S★`` (robust PCA, A the identity).

    Attributes (float64 numpy, n × n):
        Y: observation. L_star: rank-r ground truth (U★U★ᵀ if psd, else U★V★ᵀ,
        U★, V★ standard Gaussian / √n so that L★'s nonzero eigenvalues are O(1)).
        S_star: gross outliers on a uniform random support of round(ρ n²) entries
        (symmetric pairs in the PSD case), values uniform in ±[1, 2]·max|L★| so
        none hides inside L★'s range. psd, seed: as drawn.
    """

    Y: np.ndarray
    L_star: np.ndarray
    S_star: np.ndarray
    psd: bool
    seed: int


def check_sizes(n: int, r: int, rho: float) -> None:
    """Raise ValueError (naming the fix) unless 1 ≤ r ≤ n, n ≥ 2 and 0 ≤ ρ < 1."""
    if n < 2:
        raise ValueError(f"n must be at least 2, got {n}")
    if not 1 <= r <= n:
        raise ValueError(f"rank r must be in [1, n={n}], got {r}")
    if not 0.0 <= rho < 1.0:
        raise ValueError(f"corruption fraction rho must be in [0, 1), got {rho}")


def make_problem(n: int, r: int, rho: float, seed: int, psd: bool = True) -> Problem:
    """Draw one instance; see :class:`Problem`. Raises ValueError for bad sizes."""
    check_sizes(n, r, rho)
    rng = np.random.default_rng(seed)
    U = rng.standard_normal((n, r)) / np.sqrt(n)
    L = U @ U.T if psd else U @ (rng.standard_normal((n, r)) / np.sqrt(n)).T
    S = np.zeros((n, n))
    if psd:  # corrupt symmetric pairs so that Y stays symmetric, as A★ = A must be
        iu = np.triu_indices(n)
        k = int(round(rho * iu[0].size))
        pick = rng.choice(iu[0].size, size=k, replace=False)
        vals = rng.choice([-1.0, 1.0], k) * rng.uniform(1, 2, k) * np.abs(L).max()
        S[iu[0][pick], iu[1][pick]] = vals
        S = np.triu(S) + np.triu(S, 1).T
    else:
        k = int(round(rho * n * n))
        pick = rng.choice(n * n, size=k, replace=False)
        S.flat[pick] = rng.choice([-1.0, 1.0], k) * rng.uniform(1, 2, k) * np.abs(L).max()
    return Problem(L + S, L, S, psd, seed)


def relative_error(X, L_star) -> np.ndarray:
    """‖X − L★‖_F / ‖L★‖_F over the last two axes (float64)."""
    X, L_star = np.asarray(X), np.asarray(L_star)
    return np.linalg.norm(X - L_star, axis=(-2, -1)) / np.linalg.norm(L_star, axis=(-2, -1))


# --------------------------------------------------------------------------- DOP gradient descent


def objective(U, V, g, h, Y, psd: bool):
    """ℓ = ½‖X + g⊙g − h⊙h − Y‖_F², X = UUᵀ (psd) or UVᵀ; V is ignored when psd."""
    X = U @ U.T if psd else U @ V.T
    return 0.5 * jnp.sum((X + sparse_term(g, h) - Y) ** 2)


def gradients(U, V, g, h, Y, psd: bool):
    """Closed-form ∇ℓ of :func:`objective`: (∇U, ∇V, ∇g, ∇h).

    With R = X + g⊙g − h⊙h − Y: ∇U = (R + Rᵀ)U (psd) or R V; ∇V = RᵀU (zeros if psd);
    ∇g = 2 g⊙R; ∇h = −2 h⊙R. Written out because the descent runs ~10⁴ steps per
    instance over whole grids; tests/theory/test_matrix_recovery.py checks it against jax.grad.
    """
    X = U @ U.T if psd else U @ V.T
    R = X + sparse_term(g, h) - Y
    if psd:
        return (R + R.T) @ U, jnp.zeros_like(V), 2 * g * R, -2 * h * R
    return R @ V, R.T @ U, 2 * g * R, -2 * h * R


@dataclasses.dataclass(frozen=True)
class GDConfig:
    """Discrepant-rate GD settings. τ = step · min(1/‖Y‖₂, 1/(α·max|Y|)) per instance and α
    (both ranges of the step's stability); ``init`` is w; ``iters`` a multiple of ``record_every``."""

    iters: int = 10000
    record_every: int = 20
    init: float = 1e-10
    step: float = 0.25
    psd: bool = True


def step_size(Y: np.ndarray, alpha, step: float) -> np.ndarray:
    """τ for each α (see :class:`GDConfig`); Y (…, n, n), alpha broadcastable to Y's batch shape."""
    spec = np.linalg.norm(Y, ord=2, axis=(-2, -1))
    peak = np.abs(Y).max(axis=(-2, -1))
    return step * np.minimum(1.0 / spec, 1.0 / (np.asarray(alpha) * peak))


@functools.partial(jax.jit, static_argnames=("psd", "iters", "every", "use_s"))
def _descend(Y, L_star, alpha, tau, w, psd, iters, every, use_s):
    n = Y.shape[-1]
    U = V = w * jnp.eye(n)
    g = h = (w if use_s else 0.0) * jnp.ones_like(Y)  # g = h = 0 is a fixed point: plain ℓ2 GD

    def one(state, _):
        U, V, g, h = state
        dU, dV, dg, dh = gradients(U, V, g, h, Y, psd)
        return (U - tau * dU, V - tau * dV, g - alpha * tau * dg, h - alpha * tau * dh), None

    def chunk(state, _):
        state, _ = jax.lax.scan(one, state, None, length=every)
        U, V = state[0], state[1]
        X = U @ U.T if psd else U @ V.T
        return state, jnp.linalg.norm(X - L_star) / jnp.linalg.norm(L_star)

    (U, V, g, h), curve = jax.lax.scan(chunk, (U, V, g, h), None, length=iters // every)
    return (U @ U.T if psd else U @ V.T), sparse_term(g, h), curve


def dop_descent(Y, L_star, alpha, cfg: GDConfig, use_s: bool = True):
    """Run DOP gradient descent for a batch of instances and α values at once.

    Args:
        Y, L_star: (B, n, n) float64 (or (n, n)); alpha: scalar or (B,) learning-rate
            ratios; ``use_s=False`` drops g⊙g − h⊙h (plain GD on ½‖UUᵀ − Y‖²).
    Returns:
        X (B, n, n), S (B, n, n), curve (B, iters // record_every) relative errors
        after every ``record_every`` steps, tau (B,). float64 numpy.
    Raises:
        ValueError: Y not square, shapes differ, α ≤ 0, iters not a multiple of record_every.
    """
    Y, L_star = np.asarray(Y, np.float64), np.asarray(L_star, np.float64)
    if Y.ndim < 2 or Y.shape[-1] != Y.shape[-2] or Y.shape != L_star.shape:
        raise ValueError(f"Y and L_star must be square and alike, got {Y.shape} and {L_star.shape}")
    if cfg.iters < 1 or cfg.record_every < 1 or cfg.iters % cfg.record_every:
        raise ValueError(f"iters ({cfg.iters}) must be a positive multiple of record_every ({cfg.record_every})")
    Yb, Lb = Y.reshape(-1, *Y.shape[-2:]), L_star.reshape(-1, *Y.shape[-2:])
    alpha = np.broadcast_to(np.asarray(alpha, np.float64), Yb.shape[:1])
    if np.any(alpha <= 0):
        raise ValueError(f"alpha must be positive, got {alpha}")
    tau = step_size(Yb, alpha if use_s else 1e-12, cfg.step)
    run = jax.vmap(_descend, in_axes=(0, 0, 0, 0, None, None, None, None, None))
    with x64():
        X, S, curve = run(Yb, Lb, alpha, tau, cfg.init, cfg.psd, cfg.iters, cfg.record_every, use_s)
        X, S, curve = np.asarray(X), np.asarray(S), np.asarray(curve)
    shape = Y.shape[:-2]
    return (X.reshape(*shape, *Y.shape[-2:]), S.reshape(*shape, *Y.shape[-2:]),
            curve.reshape(*shape, -1), tau.reshape(shape))


# --------------------------------------------------------------------------- convex baselines

SCS_SIGINT = -5  # SCS's status after it caught a Ctrl-C (scs.SIGINT)


class ConvexRPCA:
    """Principal component pursuit ``min ‖L‖_* + λ‖S‖₁ s.t. L + S = Y`` (Candès et al. 2009) in CVXPY.

    Built once for a size n (Y and λ are ``cp.Parameter``s, so each :meth:`solve` only
    refills numbers). ``solve`` returns (L, S) float64 (n, n) and CVXPY's status; both
    arrays are NaN unless the status is "optimal". Raises ValueError for a solver that
    is not installed. Default CLARABEL (interior point, ~1e-8 accuracy, handles the
    nuclear norm's semidefinite cone); "SCS" also works, to ~1e-4.
    """

    def __init__(self, n: int, solver: str = "CLARABEL"):

        solver = solver.upper()
        if solver not in cp.installed_solvers():
            raise ValueError(f"solver {solver!r} is not installed; installed: {cp.installed_solvers()}; "
                             "pip install 'sopjax[dop]' adds SCS and CLARABEL")
        self.n, self.solver = n, solver
        self.Y, self.lam = cp.Parameter((n, n)), cp.Parameter(nonneg=True)
        self.L, self.S = cp.Variable((n, n)), cp.Variable((n, n))
        # S as a variable with L + S = Y keeps λ·‖S‖₁ affine in the parameters (DPP: compiled once)
        self.problem = cp.Problem(cp.Minimize(cp.normNuc(self.L) + self.lam * cp.sum(cp.abs(self.S))),
                                  [self.L + self.S == self.Y])

    def solve(self, Y: np.ndarray, lam: float):
        self.Y.value, self.lam.value = np.asarray(Y, np.float64), float(lam)
        try:
            if self.solver == "SCS":
                self._solve_scs()
            else:
                self.problem.solve(solver=self.solver)
            status = self.problem.status
        except Exception as e:  # a solver failure is a failed cell, never a result
            status = f"solver_error: {type(e).__name__}"
        if status != "optimal":
            nan = np.full((self.n, self.n), np.nan)
            return nan, nan, status
        return np.asarray(self.L.value), np.asarray(self.S.value), status


    def _solve_scs(self) -> None:
        """SCS catches Ctrl-C itself and reports a failed solve, which would hide the
        interruption as a failed cell; solved in CVXPY's documented steps (get_problem_data,
        solve_via_data, unpack_results) to see SCS's raw status. Raises KeyboardInterrupt."""
        data, chain, inverse = self.problem.get_problem_data("SCS")
        raw = chain.solve_via_data(self.problem, data, True, False, {})  # warm start, as solve() does
        if raw.get("info", {}).get("status_val") == SCS_SIGINT:
            raise KeyboardInterrupt
        self.problem.unpack_results(raw, chain, inverse)


def ialm_rpca(Y: np.ndarray, lam: float, tol: float = 1e-9, max_iter: int = 5000, rho: float = 1.1):
    """The same program by inexact ALM (``pyrpca.rpca_pcp_ialm``; Lin, Chen, Ma 2010). Returns (L, S).

    ``rho`` (growth of the penalty μ) is 1.1, not pyrpca's 1.5: its stopping rule looks
    at the primal residual only, and with 1.5 μ grows so fast that L + S = Y is met
    before the objective is (on n = 20 instances it stopped at relative errors of
    1e-2–0.3 where CVXPY's optimum recovers L★ to 1e-9; with 1.1 they agree).
    """
    rpca_pcp_ialm = extras.require("pyrpca", "the inexact-ALM RPCA baseline").rpca_pcp_ialm
    L, S = rpca_pcp_ialm(np.asarray(Y, np.float64), lam, max_iter=max_iter, tol=tol, rho=rho, verbose=False)
    return np.asarray(L), np.asarray(S)


# --------------------------------------------------------------------------- figures: compute


@dataclasses.dataclass(frozen=True)
class CurvesConfig:
    """Error vs iteration for several α on one instance, and final error vs α next to the convex program."""

    n: int = 40
    r: int = 3
    rho: float = 0.1
    alpha_factors: tuple = (0.25, 0.5, 1.0, 2.0, 4.0)  # curves at α = factor·√n
    sweep_factors: tuple = tuple(np.round(np.geomspace(0.125, 4.0, 11), 4))
    gd: GDConfig = GDConfig(iters=20000, record_every=50)


@dataclasses.dataclass(frozen=True)
class PhaseConfig:
    """Success rate over (rank r, corruption fraction ρ): DOP at α = √n, convex RPCA and IALM at λ = 1/√n."""

    n: int = 40
    ranks: tuple = (1, 2, 4, 6, 8, 10, 12, 14)
    rhos: tuple = (0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35)
    trials: int = 4
    threshold: float = 1e-2
    gd: GDConfig = GDConfig(iters=20000, record_every=200)


QUICK = {
    "curves": CurvesConfig(n=20, r=2, rho=0.05, sweep_factors=(0.125, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 4.0),
                           gd=GDConfig(iters=6000, record_every=20)),
    "phase": PhaseConfig(n=20, ranks=(1, 2, 4, 6), rhos=(0.05, 0.1, 0.2, 0.3), trials=2,
                         gd=GDConfig(iters=6000, record_every=200)),
}


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0])


def compute_curves(cfg: CurvesConfig, seed: int, solver: str = "SCS") -> dict:
    """Run the α curves, plain ℓ2 GD, and the α sweep (with convex and IALM at λ = 1/α). JSON-able dict."""
    check_sizes(cfg.n, cfg.r, cfg.rho)
    P = make_problem(cfg.n, cfg.r, cfg.rho, seed, psd=cfg.gd.psd)
    root_n, t = np.sqrt(cfg.n), time.perf_counter()
    alphas = np.array(cfg.alpha_factors) * root_n
    k = len(alphas)
    _, _, curves, taus = dop_descent(np.repeat(P.Y[None], k, 0), np.repeat(P.L_star[None], k, 0), alphas, cfg.gd)
    _, _, l2_curve, _ = dop_descent(P.Y, P.L_star, 1.0, cfg.gd, use_s=False)
    sweep = np.array(cfg.sweep_factors) * root_n
    m = len(sweep)
    Xs, Ss, _, _ = dop_descent(np.repeat(P.Y[None], m, 0), np.repeat(P.L_star[None], m, 0), sweep, cfg.gd)
    gd_s = time.perf_counter() - t
    prog, t = ConvexRPCA(cfg.n, solver), time.perf_counter()
    convex = [prog.solve(P.Y, 1.0 / a) for a in sweep]
    cvx_s, t = time.perf_counter() - t, time.perf_counter()
    ialm = [ialm_rpca(P.Y, 1.0 / a)[0] for a in sweep]
    ialm_s = time.perf_counter() - t
    steps = np.arange(1, curves.shape[-1] + 1) * cfg.gd.record_every
    return {
        "figure": "dop_matrix_curves", "config": dataclasses.asdict(cfg), "seed": seed, "solver": solver,
        "sqrt_n": root_n, "alphas": alphas, "taus": taus, "steps": steps, "rel_error": curves,
        "rel_error_l2_no_s": l2_curve[0] if l2_curve.ndim > 1 else l2_curve,
        "sweep_alphas": sweep, "sweep_dop_final": relative_error(Xs, P.L_star),
        "sweep_dop_s_error": relative_error(Ss, P.S_star),
        "sweep_convex": np.array([relative_error(c[0], P.L_star) for c in convex]),
        "sweep_convex_status": [c[2] for c in convex],
        "sweep_ialm": np.array([relative_error(L, P.L_star) for L in ialm]),
        "timings_s": {"gd_total": gd_s, "convex_total": cvx_s, "ialm_total": ialm_s},
    }


def compute_phase(cfg: PhaseConfig, seed: int, solver: str = "SCS") -> dict:
    """Success rates (rel. error of L below ``threshold``) over the (rank, ρ) grid. JSON-able dict."""
    for r in cfg.ranks:
        for rho in cfg.rhos:
            check_sizes(cfg.n, r, rho)
    cells = [(i, j, t) for i in range(len(cfg.ranks)) for j in range(len(cfg.rhos)) for t in range(cfg.trials)]
    probs = [make_problem(cfg.n, cfg.ranks[i], cfg.rhos[j], _seed(seed, i, j, t), cfg.gd.psd) for i, j, t in cells]
    Y, L = np.stack([p.Y for p in probs]), np.stack([p.L_star for p in probs])
    lam, timings = 1.0 / np.sqrt(cfg.n), {}
    t = time.perf_counter()
    X, _, _, _ = dop_descent(Y, L, np.sqrt(cfg.n), cfg.gd)
    timings["dop_gd_total"], t = time.perf_counter() - t, time.perf_counter()
    prog = ConvexRPCA(cfg.n, solver)
    cvx = [prog.solve(p.Y, lam) for p in probs]
    timings["convex_total"], t = time.perf_counter() - t, time.perf_counter()
    ialm = np.stack([ialm_rpca(p.Y, lam)[0] for p in probs])
    timings["ialm_total"] = time.perf_counter() - t
    errs = {
        "dop": relative_error(X, L),
        "convex": np.array([relative_error(c[0], p.L_star) for c, p in zip(cvx, probs)]),
        "ialm": relative_error(ialm, L),
    }
    rates, shape = {}, (len(cfg.ranks), len(cfg.rhos), cfg.trials)
    for name, e in errs.items():
        e = e.reshape(shape)
        ok = np.isfinite(e)  # a failed convex solve is not counted, either way
        rates[name] = np.where(ok.sum(-1) > 0, (ok & (e < cfg.threshold)).sum(-1) / np.maximum(ok.sum(-1), 1), np.nan)
    return {"figure": "dop_matrix_phase", "config": dataclasses.asdict(cfg), "seed": seed, "solver": solver,
            "alpha": np.sqrt(cfg.n), "lam": lam, "success_rate": rates,
            "rel_error": {k: v.reshape(shape) for k, v in errs.items()},
            "cell_seeds": [_seed(seed, i, j, t) for i, j, t in cells],
            "convex_failed": [dict(rank=cfg.ranks[i], rho=cfg.rhos[j], trial=t, status=c[2])
                              for (i, j, t), c in zip(cells, cvx) if c[2] != "optimal"],
            "timings_s": timings}


# --------------------------------------------------------------------------- figures: draw and save


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(rec: dict):
    """Left: rel. error vs iteration per α (and ℓ2 GD without s). Right: final error vs α."""
    plt = _plt()
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    for alpha, c in zip(rec["alphas"], np.asarray(rec["rel_error"])):
        a.plot(rec["steps"], c, label=f"DOP α = {alpha / rec['sqrt_n']:.3g}·√n")
    a.plot(rec["steps"], rec["rel_error_l2_no_s"], "k--", label="GD on ½‖UUᵀ−Y‖² (no s)")
    a.set(xscale="log", yscale="log", xlabel="iteration", ylabel="‖X − L★‖_F / ‖L★‖_F", title="error vs iteration")
    a.legend(fontsize=8)
    x = np.asarray(rec["sweep_alphas"])
    b.plot(x, rec["sweep_dop_final"], "o-", label=f"DOP after {rec['config']['gd']['iters']} steps")
    b.plot(x, np.asarray(rec["sweep_convex"], float), "s--", label=f"convex RPCA, λ = 1/α ({rec['solver']})")
    b.plot(x, rec["sweep_ialm"], "x:", label="IALM (pyrpca), λ = 1/α")
    b.axvline(rec["sqrt_n"], color="gray", lw=1, label="α = √n")
    b.set(xscale="log", yscale="log", xlabel="α (learning-rate ratio) = 1/λ", ylabel="relative error of L",
          title="final error vs α")
    b.legend(fontsize=8)
    c = rec["config"]
    fig.suptitle(f"Robust PCA by double over-parameterization: n={c['n']}, r={c['r']}, ρ={c['rho']}, "
                 f"init {c['gd']['init']:g}, seed {rec['seed']}")
    return fig


def plot_phase(rec: dict):
    """Three panels of success rate over (ρ, r)."""
    plt = _plt()
    c = rec["config"]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2), constrained_layout=True)
    titles = {"dop": f"DOP GD, α = √n, {c['gd']['iters']} steps", "convex": f"convex RPCA ({rec['solver']}), λ = 1/√n",
              "ialm": "IALM (pyrpca), λ = 1/√n"}
    for ax, (name, title) in zip(axes, titles.items()):
        # cells by index: the grids are not evenly spaced
        im = ax.imshow(np.asarray(rec["success_rate"][name], float), vmin=0, vmax=1, cmap="gray", origin="lower",
                       aspect="auto")
        ax.set_xticks(range(len(c["rhos"])), [f"{x:g}" for x in c["rhos"]])
        ax.set_yticks(range(len(c["ranks"])), [str(r) for r in c["ranks"]])
        ax.set(xlabel="corruption fraction ρ", ylabel="rank r", title=title)
    fig.colorbar(im, ax=axes, label=f"success rate (rel. error < {c['threshold']:g})")
    fig.suptitle(f"Phase transition, n={c['n']}, {c['trials']} trials per cell, seed {rec['seed']}")
    return fig


def json_default(o):
    """JSON for numpy values; non-finite floats become null."""
    if isinstance(o, np.ndarray):
        return np.where(np.isfinite(o), o, None).tolist() if o.dtype.kind == "f" else o.tolist()
    if isinstance(o, (np.floating, np.integer, np.bool_)):
        return None if isinstance(o, np.floating) and not np.isfinite(o) else o.item()
    raise TypeError(type(o))


def save(out: pathlib.Path, stem: str, fig, record: dict) -> None:
    """Write ``stem.png`` and ``stem.json`` (strict JSON: NaN and inf as null), each whole:
    a temporary file renamed into place, removed if the write fails or is interrupted."""
    out.mkdir(parents=True, exist_ok=True)
    record = {**record, "code_version": code_version()}
    text = dumps(json.loads(json.dumps(record, default=json_default)), indent=1)
    for suffix, write in ((".png", lambda p: fig.savefig(p, dpi=100, bbox_inches="tight", format="png")),
                          (".json", lambda p: p.write_text(text))):
        final = out / f"{stem}{suffix}"
        if final.exists():
            print(f"replacing {final} (--force)")
        with atomic_path(final) as tmp:
            write(tmp)
    print(f"wrote {out / stem}.png and .json")


def check_out(out: pathlib.Path, stems, force: bool) -> None:
    """Refuse, before any compute and creating nothing, an ``out`` that is a file, cannot be
    written, or already holds ``stem``.png/.json (unless ``force``). Raises ValueError naming the fix."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder; pick another --out")
    taken = [f"{s}{ext}" for s in stems for ext in (".png", ".json") if (out / f"{s}{ext}").exists()]
    if taken and not force:
        raise ValueError(f"--out {out} already holds {', '.join(taken)}; pass --force to overwrite them, or pick a "
                         "fresh --out")
    probe = out
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise ValueError(f"--out {out}: {probe} is a file, not a folder; pick another --out")
    probe_dir(probe, "pick a writable --out")


def check_seed(seed: int) -> int:
    """``seed`` if it lies in [0, 2**63); ValueError naming ``--seed`` otherwise."""
    if not 0 <= seed < 2**63:
        raise ValueError(f"--seed must be an integer in [0, 2**63), e.g. --seed 0; got {seed}")
    return seed


def default_out(name: str) -> pathlib.Path:
    """A fresh ``runs/<name>-<UTC time>`` directory, so a run never overwrites committed figures."""
    return pathlib.Path("runs") / f"{name}-{datetime.datetime.now(datetime.timezone.utc):%Y%m%dT%H%M%S%f}"


# --------------------------------------------------------------------------- CLI


def main(argv=None) -> int:
    """0 on success; 2 with one line on bad input, an --out that holds these figures (without
    --force) or a size that will not fit in memory; 130 on Ctrl-C, 143 on SIGTERM."""
    ap = cli.OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=("curves", "phase", "all"), default="all")
    ap.add_argument("--quick", action="store_true", help="n = 20, small grid (~1–2 min)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n", type=int, default=None, help="matrix size (default 40, quick 20)")
    ap.add_argument(
        "--out",
        type=pathlib.Path,
        default=None,
        help="output folder (default: a new runs/matrix_recovery-<time>/; `--out figures --force` regenerates the "
        "committed ones)",
    )
    ap.add_argument("--force", action="store_true", help="overwrite dop_matrix_* files already in --out")
    ap.add_argument("--solver", default="SCS", help="CVXPY solver for convex RPCA (SCS, CLARABEL)")
    ap.add_argument("--debug", action="store_true", help="show tracebacks")
    try:
        args = ap.parse_args(argv)
    except SystemExit as e:  # --help, or a bad flag (already reported in one line)
        return e.code if isinstance(e.code, int) else 2
    return cli.guarded(_run, args)


def memory_estimate(name: str, c) -> float:
    """Bytes that part ``name`` with config ``c`` needs at least: the float64 n × n arrays of the
    batched descent (Y, L★, S★, their stacks, U, V, g, h: 11 per instance) or, if larger, one
    convex solve (CVXPY's semidefinite program: ≈ 11–13 kB per matrix entry measured at
    n = 60–100; 8 kB counted) next to the instances kept meanwhile."""
    batch = len(c.ranks) * len(c.rhos) * c.trials if name == "phase" else max(len(c.alpha_factors),
                                                                                len(c.sweep_factors))
    entries = float(c.n) ** 2
    return max(11 * batch * entries * 8, 4 * batch * entries * 8 + 8000 * entries)


def _run(args) -> int:
    parts = ("curves", "phase") if args.part == "all" else (args.part,)
    cfgs = {"curves": QUICK["curves"] if args.quick else CurvesConfig(),
            "phase": QUICK["phase"] if args.quick else PhaseConfig()}
    if args.n is not None:
        cfgs = {k: dataclasses.replace(v, n=args.n) for k, v in cfgs.items()}
    check_seed(args.seed)
    for name in parts:  # validate everything before any compute or output
        c = cfgs[name]
        for r, rho in ([(c.r, c.rho)] if name == "curves" else [(r, rho) for r in c.ranks for rho in c.rhos]):
            check_sizes(c.n, r, rho)
        memory.check_fits(memory_estimate(name, c), f"--part {name} at n = {c.n}", "lower --n")
    ConvexRPCA(2, args.solver)
    extras.require("pyrpca", "python -m theory.matrix_recovery")  # before any output is written
    out = args.out or default_out("matrix_recovery")
    check_out(out, [f"dop_matrix_{name}" for name in parts], args.force)
    t0 = time.perf_counter()
    for name in parts:
        t = time.perf_counter()
        compute, plot = (compute_curves, plot_curves) if name == "curves" else (compute_phase, plot_phase)
        rec = compute(cfgs[name], args.seed, args.solver.upper())
        rec["wall_s"] = time.perf_counter() - t
        fig = plot(rec)
        save(out, rec["figure"], fig, rec)
        _plt().close(fig)
        _report(rec)
    print(f"all done in {time.perf_counter() - t0:.1f} s; output in {out}")
    return 0


def _report(rec: dict) -> None:
    if rec["figure"] == "dop_matrix_curves":
        for a, e in zip(rec["sweep_alphas"], rec["sweep_dop_final"]):
            print(f"  α = {a:7.3f}: DOP {e:.2e}")
        print(
            f"  final errors by curve α {np.round(rec['alphas'], 3).tolist()}: "
            f"{[f'{c[-1]:.2e}' for c in np.asarray(rec['rel_error'])]}; "
            f"ℓ2 GD without s: {rec['rel_error_l2_no_s'][-1]:.2e}"
        )
        print(f"  convex (λ = 1/α): {[f'{e:.1e}' for e in rec['sweep_convex']]}")
    else:
        for k, v in rec["success_rate"].items():
            print(f"  {k}: mean success {np.nanmean(v):.2f}")
    print(
        "  timings: " + ", ".join(f"{k}={v:.1f}s" for k, v in rec["timings_s"].items()) + f"; wall {rec['wall_s']:.1f}s"
    )


if __name__ == "__main__":
    cli.exit(main())
