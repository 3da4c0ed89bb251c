"""Regenerate the paper's theory figures (Figs. 2–4 of §3).

Run:
    python -m theory.phase_transition                 # all three, full grids, into runs/figures-<time>/
    python -m theory.phase_transition --figure 4      # one figure
    python -m theory.phase_transition --quick         # small grids, a few seconds
    python -m theory.phase_transition --out figures --force     # refresh the committed figures
    python -m theory.phase_transition --replot figures/fig4_phase_transition.json   # redraw, no solving

Each figure is written as ``figN_*.png`` plus ``figN_*.json``: the record it is drawn
from (axes, values, seeds, per-cell solver statuses, GD diagnostics), the settings,
stage timings and the code version, so ``--replot`` redraws it without solving. A
cell whose convex solve failed is NaN in the grid and listed in ``failed_cells``.

Program (26) is solved by default by the batched JAX solver (``theory.convex.
solve_batch``: every trial and λ of a figure at once, each certified by its KKT
conditions, ECOS for any that is not); ``--solver ECOS`` (or any installed CVXPY
solver) solves them one by one instead, as the paper did.

Bad input (a negative seed, an unknown solver, an --out that cannot be written or
holds figures already) exits with code 2 and one line naming the fix, before any
computing; ``--debug`` shows tracebacks.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import json
import os
import pathlib
import sys
import tempfile
import time
from typing import Callable

import numpy as np
from threadpoolctl import threadpool_limits

from sopjax.infra import cli
from sopjax.infra.provenance import code_version
from theory import convex as cx
from theory import linear_model as lm

BATCHED = "BATCHED"
REPO_FIGURES = pathlib.Path(__file__).resolve().parent.parent / "figures"


class UsageError(Exception):
    """Bad command-line input; the message names the fix (exit code 2)."""


# ----------------------------------------------------------------- configs


@dataclasses.dataclass(frozen=True)
class Fig2Config:
    """Fig. 2: (N, p, r, k) = (20, 40, 3, 3), γ = e⁻⁸, α ∈ [4, 4000], λ ∈ [1e-4, 1]."""

    N: int = 20
    p: int = 40
    r: int = 3
    k: int = 3
    gamma: float = float(np.exp(-8))
    alpha_range: tuple = (4.0, 4000.0)
    lam_range: tuple = (1e-4, 1.0)
    n_alpha: int = 30
    n_lam: int = 30
    gd_max_iter: int = 4_000_000


@dataclasses.dataclass(frozen=True)
class Fig3Config:
    """Fig. 3: N = 100, p = 150, λ ∈ [1e-4, 1], 10 trials; (a) r = 20, (b) k = 20."""

    N: int = 100
    p: int = 150
    lam_range: tuple = (1e-4, 1.0)
    n_lam: int = 20
    trials: int = 10
    fixed_r: int = 20
    ks: tuple = (10, 20, 40, 60, 80)
    fixed_k: int = 20
    rs: tuple = (10, 20, 40, 60, 80)


@dataclasses.dataclass(frozen=True)
class Fig4Config:
    """Fig. 4: N = 100, p = 150, λ = 0.1, 20 trials per (r, k); success if ε < 1e-3.

    Panels as in the paper: success of θ (ε_θ < 1e-3) and of s (ε_s < 1e-3), plus
    both at once. Beyond the paper: the exact gradient-flow limit (16)→(17) at
    ``flow_gamma`` (e⁻³²), α = −log γ/(2λ), on ``flow_trials`` trials per cell, and,
    if ``gd_trials`` > 0, real GD steps (eq. 16) at ``gamma`` (e⁻⁸) on that many
    trials per cell. At γ = e⁻⁸ the flow limit's boundary lies 1–6 cells inside the
    convex one (its s off the support is ~γ^{2(1−|νᵢ|/λ)}, above 1e-3 where the dual
    certificate is nearly tight); at e⁻³² it agrees with it (docs/results.md).
    """

    N: int = 100
    p: int = 150
    lam: float = 0.1
    rs: tuple = tuple(range(5, 80, 5))
    ks: tuple = tuple(range(5, 80, 5))
    trials: int = 20
    threshold: float = 1e-3
    gamma: float = float(np.exp(-8))
    flow_gamma: float = float(np.exp(-32))
    flow_trials: int = 10
    gd_trials: int = 0
    gd_max_iter: int = 4_000_000


# ------------------------------------------------------------------ building blocks


def one_blas_thread(compute: Callable) -> Callable:
    """Run ``compute`` with numpy's BLAS on one thread (threadpoolctl).

    The figures' numpy work is many small batched products and SVDs; OpenBLAS
    spreading each over the cores only spins when the CPU is shared: Fig. 4's
    problem set-up took 28.9 s with its default threads and 2.0 s with one, at
    load ~5 on the 2-core machine.
    """

    @functools.wraps(compute)
    def wrapped(*args, **kwargs):

        with threadpool_limits(1, user_api="blas"):
            return compute(*args, **kwargs)

    return wrapped


def _cell_seed(*parts: int) -> int:
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0])


def solve_convex(J, y, lams, solver: str):
    """Program (26) for every trial and λ: J (T, N, p), y (T, N), lams (L,).

    Returns theta (T, L, p), s (T, L, N), nu (T, L, N) (Lemma B.2's dual; NaN where
    no solver succeeded), status (T × L nested list of str) and counts
    {"solves", "certified", "fallback"}.
    ``solver`` is "BATCHED" (:func:`theory.convex.solve_batch`, ECOS fallback) or a
    CVXPY solver name (one solve after another).
    """
    T, N, p = J.shape
    L = len(lams)
    if solver == BATCHED:
        # One λ (Fig. 4): no repeat. A fresh copy of Fig. 4's 540 MB J costs ~1.4 s of page
        # faults on this VM (docs/notes.md), more than a tenth of the batched solve.
        Jb, yb = (J, y) if L == 1 else (np.repeat(J, L, axis=0), np.repeat(y, L, axis=0))
        sol = cx.solve_batch(Jb, yb, np.tile(lams, T))
        status = [sol.status[t * L:(t + 1) * L] for t in range(T)]
        counts = {"solves": T * L, "certified": int(sol.certified.sum()), "fallback": int(sol.fallback.sum())}
        return sol.theta.reshape(T, L, p), sol.s.reshape(T, L, N), sol.nu.reshape(T, L, N), status, counts
    prog = cx.program(N, p, solver)
    theta, s, nu = np.full((T, L, p), np.nan), np.full((T, L, N), np.nan), np.full((T, L, N), np.nan)
    status = [[None] * L for _ in range(T)]
    for t in range(T):
        for j, lam in enumerate(lams):
            sol = prog.solve(J[t], y[t], lam)
            status[t][j] = sol.status
            theta[t, j], s[t, j], nu[t, j] = sol.theta, sol.s, sol.nu
    return theta, s, nu, status, {"solves": T * L, "certified": 0, "fallback": 0}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _arr(x) -> np.ndarray:
    """A record field as a float array (JSON null → NaN)."""
    return np.array(x, dtype=float)


# ------------------------------------------------------------------------ Fig. 2


@one_blas_thread
def compute_fig2(cfg: Fig2Config, seed: int, solver: str = BATCHED) -> dict:
    """ρ_θ, ρ_s between GD at α (rows) and (26) at λ (columns), and the flow limit's."""
    timings = {}
    P = lm.make_problem(cfg.N, cfg.p, cfg.r, cfg.k, seed)
    alphas = np.geomspace(*cfg.alpha_range, cfg.n_alpha)
    lams = np.geomspace(*cfg.lam_range, cfg.n_lam)

    t = time.perf_counter()
    th_c, s_c, _, status, counts = solve_convex(P.J[None], P.y[None], lams, solver)
    th_c, s_c, status = th_c[0], s_c[0], status[0]
    timings["convex_total_s"] = time.perf_counter() - t

    t = time.perf_counter()
    th_g, s_g, info = lm.gradient_descent(P.J, P.y, alphas, cfg.gamma, max_iter=cfg.gd_max_iter)
    timings["gd_batched_s"] = time.perf_counter() - t

    t = time.perf_counter()
    flows = [lm.flow_limit(P.J, P.y, a, cfg.gamma) for a in alphas]
    timings["flow_limit_total_s"] = time.perf_counter() - t
    th_f = np.stack([f[0] for f in flows])
    s_f = np.stack([f[1] for f in flows])

    rho = {
        "gd": (lm.relative_distance(th_g[:, None], th_c[None]), lm.relative_distance(s_g[:, None], s_c[None])),
        "flow": (lm.relative_distance(th_f[:, None], th_c[None]), lm.relative_distance(s_f[:, None], s_c[None])),
    }
    # "On the curve": per λ column, the α row nearest α(λ) (if α(λ) is in range).
    # "Off": cells more than a decade away from α(λ).
    a_of_l = lm.alpha_for(lams, cfg.gamma)
    logdist = np.abs(np.log10(alphas[:, None] / a_of_l[None]))
    step = np.log10(alphas[1] / alphas[0])
    on = (logdist <= step / 2 + 1e-12) & (a_of_l[None] >= alphas[0]) & (a_of_l[None] <= alphas[-1])
    off = logdist > 1.0
    summary = {name: {"median_rho_theta_on_curve": float(np.nanmedian(rt[on])),
                      "median_rho_s_on_curve": float(np.nanmedian(rs[on])),
                      "median_rho_theta_off_curve": float(np.nanmedian(rt[off])),
                      "median_rho_s_off_curve": float(np.nanmedian(rs[off]))} for name, (rt, rs) in rho.items()}
    # GD's own discretization error, per α row: its distance to the exact flow limit.
    gd_flow = {"theta": lm.relative_distance(th_g, th_f), "s": lm.relative_distance(s_g, s_f)}
    summary["gd_vs_flow_max"] = {k: float(np.max(v)) for k, v in gd_flow.items()}
    return {
        "figure": 2, "config": dataclasses.asdict(cfg), "seed": seed, "solver": solver,
        "alphas": alphas, "lams": lams, "alpha_of_lam": a_of_l,
        "rho_theta_gd": rho["gd"][0], "rho_s_gd": rho["gd"][1],
        "rho_theta_flow": rho["flow"][0], "rho_s_flow": rho["flow"][1],
        "rho_theta_gd_vs_flow": gd_flow["theta"], "rho_s_gd_vs_flow": gd_flow["s"],
        "solver_status": status, "solver_counts": counts,
        "failed_cells": [int(j) for j, st in enumerate(status) if st not in cx.OK_STATUSES],
        "gd_iterations": info.iterations, "gd_residual": info.residual, "gd_change": info.change,
        "gd_converged": info.converged, "gd_tau": info.tau, "on_curve_mask": on, "off_curve_mask": off,
        "summary": summary, "timings_s": timings,
    }


def plot_fig2(rec: dict):
    """The 2×2 heatmaps of a :func:`compute_fig2` record (arrays or JSON lists)."""
    plt = _plt()
    from matplotlib.colors import LogNorm

    cfg = rec["config"]
    lams, alphas, a_of_l = _arr(rec["lams"]), _arr(rec["alphas"]), _arr(rec["alpha_of_lam"])
    fig, axes = plt.subplots(2, 2, figsize=(10, 8.5), constrained_layout=True)
    for row, name in enumerate(("gd", "flow")):
        for col, label in enumerate(("theta", "s")):
            ax = axes[row, col]
            grid = np.clip(_arr(rec[f"rho_{label}_{name}"]), 1e-8, 1)
            im = ax.pcolormesh(lams, alphas, grid, norm=LogNorm(1e-8, 1), shading="nearest")
            ax.plot(lams, a_of_l, "b-", lw=2, label=r"$\alpha=-\log\gamma/(2\lambda)$")
            ax.set(xscale="log", yscale="log", xlim=cfg["lam_range"], ylim=cfg["alpha_range"],
                   xlabel="λ (convex, eq. 26)", ylabel="α (GD, eq. 16)" if name == "gd" else "α (exact flow limit)")
            sym = "θ" if label == "theta" else "s"
            ax.set_title(f"ρ_{sym}: {'gradient descent' if name == 'gd' else 'gradient-flow limit'} vs convex")
            fig.colorbar(im, ax=ax)
            ax.legend(loc="lower left", fontsize=8)
    fig.suptitle(f"Fig. 2: (N,p,r,k)=({cfg['N']},{cfg['p']},{cfg['r']},{cfg['k']}), γ=e^-8, seed {rec['seed']}")
    return fig


def report_fig2(rec: dict) -> None:
    for name in ("gd", "flow"):
        s = rec["summary"][name]
        print(f"Fig. 2 [{name}] median ρ_θ on curve {s['median_rho_theta_on_curve']:.2e}, "
              f"off {s['median_rho_theta_off_curve']:.2e}; ρ_s on {s['median_rho_s_on_curve']:.2e}, "
              f"off {s['median_rho_s_off_curve']:.2e}")
    g = rec["summary"]["gd_vs_flow_max"]
    print(f"Fig. 2 GD vs exact flow limit, worst α row: ρ_θ {g['theta']:.2e}, ρ_s {g['s']:.2e}")


# ------------------------------------------------------------------------ Fig. 3


@one_blas_thread
def compute_fig3(cfg: Fig3Config, seed: int, solver: str = BATCHED) -> dict:
    """Relative errors of (26) against λ: (a) r fixed, k varies; (b) k fixed, r varies."""
    t0 = time.perf_counter()
    lams = np.geomspace(*cfg.lam_range, cfg.n_lam)
    cells = [("a", cfg.fixed_r, k) for k in cfg.ks] + [("b", r, cfg.fixed_k) for r in cfg.rs]
    probs = [lm.make_problems(cfg.N, cfg.p, r, k, _cell_seed(seed, 3, r, k), cfg.trials) for _, r, k in cells]
    theta, s, _, status, counts = solve_convex(np.concatenate([P.J for P in probs]),
                                            np.concatenate([P.y for P in probs]), lams, solver)
    curves, failed = {}, []
    for c, ((panel, r, k), P) in enumerate(zip(cells, probs)):
        rows = slice(c * cfg.trials, (c + 1) * cfg.trials)
        et = lm.relative_error(theta[rows], P.theta_star[:, None])
        es = lm.relative_error(s[rows], P.s_star[:, None])
        st = status[rows]
        failed += [dict(panel=panel, r=r, k=k, trial=t, lam=float(lams[j]), status=st[t][j])
                   for t in range(cfg.trials) for j in range(len(lams)) if st[t][j] not in cx.OK_STATUSES]
        curves[f"{panel}_r{r}_k{k}"] = dict(r=r, k=k, seed=_cell_seed(seed, 3, r, k), trial_seeds=P.seed,
                                             eps_theta=et, eps_s=es,
                                             mean_eps_theta=np.nanmean(et, 0), mean_eps_s=np.nanmean(es, 0))
    elapsed = time.perf_counter() - t0
    return {"figure": 3, "config": dataclasses.asdict(cfg), "seed": seed, "solver": solver, "lams": lams,
            "curves": curves, "failed_cells": failed, "solver_counts": counts,
            "timings_s": {"total_s": elapsed, "per_solve_s": elapsed / max(counts["solves"], 1)}}


def plot_fig3(rec: dict):
    """Mean ε_θ and ε_s against λ for each curve of a :func:`compute_fig3` record."""
    plt = _plt()
    cfg, lams = rec["config"], _arr(rec["lams"])
    fig, axes = plt.subplots(2, 2, figsize=(10, 8), constrained_layout=True)
    for row, panel in enumerate(("a", "b")):
        for key, c in rec["curves"].items():
            if key.startswith(panel):
                lab = f"k={c['k']}" if panel == "a" else f"r={c['r']}"
                axes[row, 0].plot(lams, _arr(c["mean_eps_theta"]), "o-", ms=3, label=lab)
                axes[row, 1].plot(lams, _arr(c["mean_eps_s"]), "o-", ms=3, label=lab)
        for col, what in enumerate(("θ", "s")):
            ax = axes[row, col]
            ax.set(xscale="log", yscale="log", xlabel="λ", ylabel=f"mean ‖{what}−{what}★‖/‖{what}★‖")
            fixed = f"r={cfg['fixed_r']}" if panel == "a" else f"k={cfg['fixed_k']}"
            ax.set_title(f"({panel}) {fixed}: error of {what}")
            ax.legend(fontsize=8)
    fig.suptitle(f"Fig. 3: N={cfg['N']}, p={cfg['p']}, {cfg['trials']} trials, seed {rec['seed']}")
    return fig


def report_fig3(rec: dict) -> None:
    c, tm = rec["solver_counts"], rec["timings_s"]
    print(f"Fig. 3: {c['solves']} solves ({c['certified']} certified, {c['fallback']} by fallback) in "
          f"{tm['total_s']:.1f} s, {len(rec['failed_cells'])} failed")


# ------------------------------------------------------------------------ Fig. 4


def success_boundary(rs, ks, rate, level=0.5) -> dict:
    """For each r, the largest k whose success rate is ≥ ``level`` (None if none)."""
    bound = {}
    for i, r in enumerate(rs):
        ok = [k for j, k in enumerate(ks) if np.isfinite(rate[i, j]) and rate[i, j] >= level]
        bound[int(r)] = int(max(ok)) if ok else None
    return bound


def _fig4_problems(cfg: Fig4Config, seed: int):
    """Every cell's trials, stacked: (J, y, θ★, s★) of shape (R·K·T, …), seeds, μ per cell (first trial)."""
    rs, ks = cfg.rs, cfg.ks
    seeds = np.array([[_cell_seed(seed, 4, r, k) for k in ks] for r in rs], dtype=np.int64)
    T, cells = cfg.trials, len(rs) * len(ks)
    fields = {"J": (cfg.N, cfg.p), "y": (cfg.N,), "theta_star": (cfg.p,), "s_star": (cfg.N,)}
    # Filled in place, cell by cell: building all cells and then concatenating touched the
    # 540 MB J twice, and first-touch page faults cost ~1.4 s per copy here.
    stack = {f: np.empty((cells * T,) + shape) for f, shape in fields.items()}
    firsts = np.empty((cells, cfg.N, cfg.p))
    for c, (r, k) in enumerate((r, k) for r in rs for k in ks):
        P = lm.make_problems(cfg.N, cfg.p, r, k, int(seeds.flat[c]), T)
        for f in fields:
            stack[f][c * T:(c + 1) * T] = getattr(P, f)
        firsts[c] = P.J[0]
    # μ only places the k²r = N/(4μ) overlay: the first trial of each cell (an SVD each) suffices
    mus = lm.coherence(firsts).reshape(len(rs), len(ks))
    return [stack[f] for f in fields], seeds, mus


def _rates(win, n_cells, trials):
    """Success rate per cell from a (cells·trials,) boolean/NaN array (NaN: no result)."""
    w = np.asarray(win, dtype=float).reshape(n_cells, trials)
    n = np.sum(np.isfinite(w), axis=1)
    return np.where(n > 0, np.nansum(w, axis=1) / np.maximum(n, 1), np.nan)


def _success(theta, s, ts, ss, threshold, valid):
    """(win_θ, win_s) with NaN where ``valid`` is False: ε_θ < threshold, ε_s < threshold."""
    wt = (lm.relative_error(theta, ts) < threshold).astype(float)
    ws = (lm.relative_error(s, ss) < threshold).astype(float)
    return np.where(valid, wt, np.nan), np.where(valid, ws, np.nan)


def _subset(cfg, n):
    """Row indices of the first ``n`` trials of every cell in the stacked grid."""
    cells = len(cfg.rs) * len(cfg.ks)
    return (np.arange(cells)[:, None] * cfg.trials + np.arange(min(n, cfg.trials))[None]).ravel()


@one_blas_thread
def compute_fig4(cfg: Fig4Config, seed: int, solver: str = BATCHED) -> dict:
    """Success rates of exact recovery over (r, k) at λ: (26), the flow limit, optionally GD."""
    timings = {}
    R, Kk = len(cfg.rs), len(cfg.ks)
    t = time.perf_counter()
    (J, y, ts, ss), seeds, mus = _fig4_problems(cfg, seed)
    timings["problems_s"] = time.perf_counter() - t

    t = time.perf_counter()
    theta, s, nu, status, counts = solve_convex(J, y, np.array([cfg.lam]), solver)
    status, nu = [row[0] for row in status], np.nan_to_num(nu[:, 0])
    ok = np.array([st in cx.OK_STATUSES for st in status])
    wt, ws = _success(theta[:, 0], s[:, 0], ts, ss, cfg.threshold, ok)
    timings["convex_s"] = time.perf_counter() - t
    shape = (R, Kk)
    rec = {"figure": 4, "config": dataclasses.asdict(cfg), "seed": seed, "solver": solver,
           "rs": np.asarray(cfg.rs), "ks": np.asarray(cfg.ks), "cell_seeds": seeds, "mu": mus,
           "mu_mean": float(mus.mean()), "alpha": float(lm.alpha_for(cfg.lam, cfg.gamma)),
           "success_theta": _rates(wt, R * Kk, cfg.trials).reshape(shape),
           "success_s": _rates(ws, R * Kk, cfg.trials).reshape(shape),
           "success_rate": _rates(wt * ws, R * Kk, cfg.trials).reshape(shape),
           "solver_counts": counts, "failed_cells": [dict(row=int(i), status=status[i]) for i in np.flatnonzero(~ok)]}

    for name, n in (("flow", cfg.flow_trials), ("gd", cfg.gd_trials)):
        if n <= 0:
            continue
        t = time.perf_counter()
        idx = _subset(cfg, n)
        th_x, s_x, extra = _dynamics(name, J[idx], y[idx], cfg, np.nan_to_num(theta[idx, 0]))
        a, b = _success(th_x, s_x, ts[idx], ss[idx], cfg.threshold, extra.pop("valid"))
        rec[f"{name}_success_rate"] = _rates(a * b, R * Kk, min(n, cfg.trials)).reshape(shape)
        # the convex map on the very same trials, so the boundaries compare without sampling noise
        rec[f"convex_on_{name}_trials_success_rate"] = _rates((wt * ws)[idx], R * Kk, min(n, cfg.trials)).reshape(shape)
        extra["trials_deciding_unlike_convex"] = int(np.nansum(np.abs(a * b - (wt * ws)[idx])))
        rec[f"{name}_info"] = extra
        timings[f"{name}_s"] = time.perf_counter() - t
    rec["boundary_k_at_rate_0.5"] = {key: success_boundary(cfg.rs, cfg.ks, rec[f])
                                     for key, f in (("convex", "success_rate"), ("convex_theta", "success_theta"),
                                                    ("convex_s", "success_s"), ("flow", "flow_success_rate"),
                                                    ("gd", "gd_success_rate"),
                                                    ("convex_on_flow_trials", "convex_on_flow_trials_success_rate"),
                                                    ("convex_on_gd_trials", "convex_on_gd_trials_success_rate"))
                                     if f in rec}
    bk = rec["boundary_k_at_rate_0.5"]
    rec["boundary_offset_cells"] = {key: boundary_offset(cfg.ks, bk[f"convex_on_{key}_trials"], bk[key])
                                    for key in ("flow", "gd") if key in bk}
    rec["timings_s"] = timings
    return rec


def boundary_offset(ks, ref: dict, other: dict) -> dict:
    """Per r, how many grid cells ``other``'s boundary k lies inside ``ref``'s (negative: outside).

    A boundary of None (no k succeeds) counts as one cell below the first k."""
    step = float(ks[1] - ks[0]) if len(ks) > 1 else 1.0

    def k(v):
        return ks[0] - step if v is None else v

    return {r: int(round((k(ref[r]) - k(other[r])) / step)) for r in ref}


def _dynamics(name, J, y, cfg: Fig4Config, theta0):
    """The over-parameterized model at α = −log γ/(2λ): exact flow limit at
    ``flow_gamma`` (Newton from the convex θ, ``theta0``), or real GD steps (eq. 16) at ``gamma``."""
    if name == "flow":
        alpha = float(lm.alpha_for(cfg.lam, cfg.flow_gamma))
        th, s, ok, step = lm.flow_limit_primal_batch(J, y, alpha, cfg.flow_gamma, theta0)
        return th, s, {"valid": np.ones(len(J), bool), "gamma": cfg.flow_gamma, "alpha": alpha,
                       "rows_not_converged": int((~ok).sum()), "max_last_rel_step": float(step.max())}
    alpha = float(lm.alpha_for(cfg.lam, cfg.gamma))
    th, s, info = lm.gradient_descent(J, y, alpha, cfg.gamma, max_iter=cfg.gd_max_iter)
    return th, s, {"valid": info.finite, "converged_fraction": float(info.converged.mean()),
                   "max_iterations": int(info.iterations.max()), "tau": float(np.max(info.tau))}


def plot_fig4(rec: dict):
    """The paper's two panels (θ, s), the combined map, and the flow-limit / GD panels."""
    plt = _plt()
    cfg = rec["config"]
    rs, ks, mu = _arr(rec["rs"]), _arr(rec["ks"]), float(rec["mu_mean"])
    n_conv = f"(26), λ={cfg['lam']}, {cfg['trials']} trials"
    panels = [("success_theta", f"θ: ‖θ−θ★‖/‖θ★‖ < {cfg['threshold']:g}, {n_conv}"),
              ("success_s", f"s: ‖s−s★‖/‖s★‖ < {cfg['threshold']:g}, {n_conv}"),
              ("success_rate", f"θ and s, {n_conv}")]
    if "flow_success_rate" in rec:
        fg = cfg.get("flow_gamma", cfg["gamma"])
        panels.append(("flow_success_rate", f"exact flow limit (not GD steps), γ=e^{np.log(fg):.0f}, "
                                            f"α={float(lm.alpha_for(cfg['lam'], fg)):.0f}, "
                                            f"{min(cfg['flow_trials'], cfg['trials'])} trials"))
    if "gd_success_rate" in rec:
        panels.append(
            (
                "gd_success_rate",
                f"GD (16), α={rec['alpha']:.0f}, γ=e^{np.log(cfg['gamma']):.0f}, "
                f"{min(cfg['gd_trials'], cfg['trials'])} trials, ≤{cfg['gd_max_iter']} steps",
            )
        )
    cols = 2 if len(panels) <= 4 else 3
    nrows = -(-len(panels) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(5.6 * cols, 4.8 * nrows), constrained_layout=True, squeeze=False)
    rr = np.linspace(1.0, rs.max() + 2.5, 400)
    for ax, (key, title) in zip(axes.flat, panels):
        im = ax.pcolormesh(ks, rs, _arr(rec[key]), vmin=0, vmax=1, cmap="gray", shading="nearest")
        ax.plot(np.sqrt(cfg["N"] / (4 * mu * rr)), rr, "r-", lw=2, label=f"k²r = N/(4μ), mean μ={mu:.2f}")
        # axes start at 0 so the (tiny) region k²r < N/(4μ) is visible; off-grid area is blue, not "success"
        ax.set_facecolor("#cfe2f3")
        ax.set(xlabel="sparsity k", ylabel="rank r", xlim=(0, ks.max() + 2.5), ylim=(0, rs.max() + 2.5))
        ax.set_title(title, fontsize=9)
        ax.legend(loc="upper right", fontsize=8)
        fig.colorbar(im, ax=ax, label="success rate")
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.suptitle(f"Fig. 4: phase transition, N={cfg['N']}, p={cfg['p']}, seed {rec['seed']}")
    return fig


def report_fig4(rec: dict) -> None:
    for key, b in rec["boundary_k_at_rate_0.5"].items():
        print(f"Fig. 4: largest k with success ≥ 50% per r [{key}]: {b}")
    for key, off in rec.get("boundary_offset_cells", {}).items():
        print(f"Fig. 4: [{key}] boundary cells inside the convex one on the same trials, per r: {off} (max |offset| "
              f"{max(abs(v) for v in off.values())})")
    if "flow_info" in rec:
        fi = rec["flow_info"]
        print(f"Fig. 4: flow limit at γ = e^{np.log(fi['gamma']):.0f}: {fi['rows_not_converged']} rows with a last "
              f"Newton step > 1e-8 (largest {fi['max_last_rel_step']:.1e}); "
              f"{fi['trials_deciding_unlike_convex']} trials decide unlike (26)")
    c = rec["solver_counts"]
    print(
        f"Fig. 4: {c['solves']} convex solves, {c['certified']} certified, {c['fallback']} by fallback; "
        f"k²r < N/(4μ) (mean μ = {rec['mu_mean']:.2f}) only for k²r < {rec['config']['N'] / (4 * rec['mu_mean']):.1f}"
    )


# ----------------------------------------------------------------- registry


@dataclasses.dataclass(frozen=True)
class FigureSpec:
    """One figure: its output stem, config class, quick overrides and compute/plot/report."""

    stem: str
    config: type
    quick: dict
    compute: Callable
    plot: Callable
    report: Callable


FIGURES = {
    2: FigureSpec("fig2_gd_vs_convex", Fig2Config, dict(n_alpha=10, n_lam=10, gd_max_iter=400_000),
                  compute_fig2, plot_fig2, report_fig2),
    3: FigureSpec("fig3_lambda_sweep", Fig3Config, dict(n_lam=6, trials=2, ks=(10, 40), rs=(10, 40)),
                  compute_fig3, plot_fig3, report_fig3),
    4: FigureSpec("fig4_phase_transition", Fig4Config,
                  dict(rs=(5, 20, 40, 60), ks=(5, 20, 40, 60), trials=3, flow_trials=2),
                  compute_fig4, plot_fig4, report_fig4),
}


def json_default(o):
    """JSON for numpy values; non-finite floats become null (strict JSON)."""
    if isinstance(o, np.ndarray):
        return np.where(np.isfinite(o), o, None).tolist() if o.dtype.kind == "f" else o.tolist()
    if isinstance(o, np.floating):
        return o.item() if np.isfinite(o) else None
    if isinstance(o, (np.integer, np.bool_)):
        return o.item()
    raise TypeError(type(o))


def _strict(obj):
    """Python floats inf/NaN → None (json.dumps would write the non-standard NaN)."""
    if isinstance(obj, float):
        return obj if np.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_strict(v) for v in obj]
    return obj


def save(out: pathlib.Path, stem: str, fig, record: dict | None) -> None:
    """Write ``stem``.png (and ``stem``.json unless record is None) into ``out``, each atomically."""
    out.mkdir(parents=True, exist_ok=True)
    _atomic(out / f"{stem}.png", lambda f: fig.savefig(f, format="png", dpi=110, bbox_inches="tight"))
    if record is not None:
        text = json.dumps(_strict(json.loads(json.dumps(record, default=json_default))), indent=1, allow_nan=False)
        _atomic(out / f"{stem}.json", lambda f: f.write(text.encode()))
    print(f"wrote {out / stem}.png" + (" and .json" if record is not None else ""))


def _atomic(path: pathlib.Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a figure is an ordinary file
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


# ----------------------------------------------------------------------- CLI


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse prints usage + message)
        raise UsageError(f"{message} (see --help)")


def _seed(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        v = -1
    if v < 0 or v >= 2**63:
        raise argparse.ArgumentTypeError(f"--seed must be an integer in [0, 2**63), e.g. --seed 0; got {text!r}")
    return v


def _log_gamma(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = float("nan")
    if not -700.0 <= v < 0.0:  # γ = e^v must lie in (0, 1) for α = −log γ/(2λ) > 0, and not underflow
        raise argparse.ArgumentTypeError(f"--flow-log-gamma must be a number in [-700, 0) so that γ = e^LOG lies in "
                                         f"(0, 1), e.g. -32; got {text!r}")
    return v


def _solver(text: str) -> str:
    name = text.upper()
    allowed = [BATCHED] + sorted(cx.cp.installed_solvers())
    if name not in allowed:
        raise argparse.ArgumentTypeError(f"--solver must be one of {', '.join(allowed)} (default {BATCHED}); "
                                         f"got {text!r}")
    return name


def parse_args(argv=None) -> argparse.Namespace:
    ap = _Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--figure", choices=("2", "3", "4", "all"), default="all")
    ap.add_argument("--quick", action="store_true", help="small grids for a fast check")
    ap.add_argument("--seed", type=_seed, default=0, help="one seed fixes every instance (≥ 0)")
    ap.add_argument("--out", type=pathlib.Path, default=None,
                    help="output folder (default: a fresh runs/figures-<time>/)")
    ap.add_argument("--force", action="store_true", help="overwrite figure files already in --out")
    ap.add_argument("--solver", type=_solver, default=BATCHED,
                    help=f"{BATCHED} (JAX, certified, ECOS fallback) or a CVXPY solver such as ECOS")
    ap.add_argument("--fig4-gd", action="store_true", help="add Fig. 4's panel of real GD steps (slow)")
    ap.add_argument("--flow-log-gamma", type=_log_gamma, default=None, metavar="LOG",
                    help="Fig. 4's flow panel at γ = e^LOG (default -32)")
    ap.add_argument("--replot", nargs="+", type=pathlib.Path, metavar="JSON",
                    help="redraw figures from their JSON records, without solving")
    ap.add_argument("--debug", action="store_true", help="show tracebacks")
    return ap.parse_args(argv)


def check_out(out: pathlib.Path, stems: list[str], force: bool) -> None:
    """Refuse, before any work, an --out that cannot be written or would be overwritten silently."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a folder; pick another --out")
    taken = [f"{s}{ext}" for s in stems for ext in (".png", ".json") if (out / f"{s}{ext}").exists()]
    if taken and not force:
        raise UsageError(f"--out {out} already holds {', '.join(taken)}; pass --force to overwrite, "
                         "or pick a fresh --out")
    probe = out
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise UsageError(f"--out {out}: {probe} is a file, not a folder; pick another --out")
    try:  # os.access is wrong for root and some file systems: try a real write
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as e:
        raise UsageError(f"--out {out} cannot be written ({e.strerror} in {probe}); pick a writable --out") from e


def _load_records(paths) -> list[dict]:
    recs = []
    for p in paths:
        try:
            rec = json.loads(p.read_text())
        except (OSError, ValueError) as e:
            raise UsageError(f"--replot {p}: cannot read a JSON record ({e}); give a figN_*.json file") from e
        if not isinstance(rec, dict) or rec.get("figure") not in FIGURES:
            raise UsageError(f"--replot {p}: not a figure record (no 'figure' key in 2, 3, 4)")
        recs.append(rec)
    return recs


def _replot(spec, rec: dict, path):
    """The figure drawn from ``rec``; UsageError naming ``path`` when a field is missing or garbled."""
    try:
        return spec.plot(rec)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as e:
        _plt().close("all")
        raise UsageError(f"--replot {path}: the record is incomplete or damaged ({type(e).__name__}: {e}); give a "
                         f"{spec.stem}.json written by this program") from e


def run(args: argparse.Namespace) -> int:
    out = args.out or pathlib.Path("runs") / f"figures-{datetime.datetime.now():%Y%m%d-%H%M%S}"
    if args.replot:
        recs = _load_records(args.replot)
        check_out(out, [FIGURES[r["figure"]].stem for r in recs], args.force)
        for path, rec in zip(args.replot, recs):
            spec = FIGURES[rec["figure"]]
            save(out, spec.stem, _replot(spec, rec, path), None)
        return 0
    figs = (2, 3, 4) if args.figure == "all" else (int(args.figure),)
    check_out(out, [FIGURES[n].stem for n in figs], args.force)
    plt = _plt()
    t0 = time.perf_counter()
    for n in figs:
        spec = FIGURES[n]
        over = dict(spec.quick) if args.quick else {}
        if n == 4 and args.flow_log_gamma is not None:
            over["flow_gamma"] = float(np.exp(args.flow_log_gamma))
        if n == 4 and args.fig4_gd:
            over.update(gd_trials=2 if args.quick else 4, **({"gd_max_iter": 100_000} if args.quick else {}))
        t = time.perf_counter()
        rec = spec.compute(spec.config(**over), args.seed, args.solver)
        rec["code_version"] = code_version()
        fig = spec.plot(rec)
        save(out, spec.stem, fig, rec)
        plt.close(fig)
        spec.report(rec)
        print(f"Fig. {n} done in {time.perf_counter() - t:.1f} s "
              f"({', '.join(f'{k}={v:.2f}' for k, v in rec['timings_s'].items())})")
    print(f"all done in {time.perf_counter() - t0:.1f} s; figures in {out}")
    return 0


def main(argv=None) -> int:
    """0 on success; 2 with one line on bad input; 130 on Ctrl-C and 143 on SIGTERM, with one
    line (each figure file is written whole or not at all)."""
    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    try:
        with cli.signals_raise():
            return run(parse_args(argv))
    except UsageError as e:
        if debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        if debug:
            raise
        return cli.interrupted_code(e, "the figures finished so far are complete; re-run with --force to redo all")


if __name__ == "__main__":
    cli.exit(main())
