"""Regenerate the paper's theory figures (Figs. 2–4 of §3) into ``figures/``.

Run:
    python -m theory.phase_transition                 # all three, full grids
    python -m theory.phase_transition --figure 2      # one figure
    python -m theory.phase_transition --quick         # small grids, ~1 min

Each figure is written as ``figN_*.png`` plus ``figN_*.json``: the raw grid it was
drawn from (axes, values, seeds, per-cell solver statuses, GD diagnostics), the
settings, stage timings and the code version. A cell whose convex solve failed is
NaN in the grid and listed in ``failed_cells``; it is never counted as a result.

Expected (full grids, seed 0): Fig. 2's median ρ_θ along α = −log γ/(2λ) is
orders of magnitude below its median off the curve; Fig. 4 succeeds at small
(r, k) and fails beyond a boundary far outside the (conservative) k²r = N/(4μ).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import sys
import time

import numpy as np

from sopjax.provenance import code_version
from theory import convex as cx
from theory import linear_model as lm


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
    gd_max_iter: int = 400_000
    gd_tol: float = 1e-7


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
    """Fig. 4: N = 100, p = 150, λ = 0.1, 20 trials per (r, k), success if ε_θ, ε_s < 1e-3.

    The GD panel (beyond the paper) runs eq. (16) at α = −log γ/(2λ) with
    ``gd_trials`` instances per cell and at most ``gd_max_iter`` steps, because
    GD's slow tail near exact recovery makes 4,500 full runs too slow for a
    2-core machine; its success is "reached 1e-3 within the budget".
    """

    N: int = 100
    p: int = 150
    lam: float = 0.1
    rs: tuple = tuple(range(5, 80, 5))
    ks: tuple = tuple(range(5, 80, 5))
    trials: int = 20
    threshold: float = 1e-3
    gamma: float = float(np.exp(-8))
    gd_trials: int = 4
    gd_max_iter: int = 400_000


QUICK = {
    2: dict(n_alpha=10, n_lam=10, gd_max_iter=100_000),
    3: dict(n_lam=6, trials=2, ks=(10, 40), rs=(10, 40)),
    4: dict(rs=(5, 20, 40, 60), ks=(5, 20, 40, 60), trials=3, gd_trials=2, gd_max_iter=20_000),
}


def _cell_seed(*parts: int) -> int:
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0])


def _save(out: pathlib.Path, stem: str, fig, record: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / f"{stem}.png", dpi=110, bbox_inches="tight")
    record["code_version"] = code_version()
    (out / f"{stem}.json").write_text(json.dumps(record, indent=1, default=_json_default))
    print(f"wrote {out / stem}.png and .json")


def _json_default(o):
    if isinstance(o, np.ndarray):
        return np.where(np.isfinite(o), o, None).tolist() if o.dtype.kind == "f" else o.tolist()
    if isinstance(o, (np.floating, np.integer, np.bool_)):
        return o.item()
    raise TypeError(type(o))


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# ------------------------------------------------------------------------ Fig. 2


def figure2(cfg: Fig2Config, seed: int, out: pathlib.Path, solver: str) -> dict:
    """Heatmaps of ρ_θ, ρ_s between GD at α (rows) and (26) at λ (columns)."""
    timings = {}
    P = lm.make_problem(cfg.N, cfg.p, cfg.r, cfg.k, seed)
    alphas = np.geomspace(*cfg.alpha_range, cfg.n_alpha)
    lams = np.geomspace(*cfg.lam_range, cfg.n_lam)

    t = time.perf_counter()
    prog = cx.program(cfg.N, cfg.p, solver)
    sols = [prog.solve(P.J, P.y, lam) for lam in lams]
    timings["convex_total_s"] = time.perf_counter() - t
    timings["convex_per_solve_s"] = timings["convex_total_s"] / len(lams)
    th_c = np.stack([s.theta for s in sols])
    s_c = np.stack([s.s for s in sols])

    t = time.perf_counter()
    th_g, s_g, info = lm.gradient_descent(P.J, P.y, alphas, cfg.gamma, tol=cfg.gd_tol, max_iter=cfg.gd_max_iter)
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
    summary = {}
    for name, (rt, rs) in rho.items():
        summary[name] = {
            "median_rho_theta_on_curve": float(np.nanmedian(rt[on])),
            "median_rho_s_on_curve": float(np.nanmedian(rs[on])),
            "median_rho_theta_off_curve": float(np.nanmedian(rt[off])),
            "median_rho_s_off_curve": float(np.nanmedian(rs[off])),
        }

    plt = _plt()
    from matplotlib.colors import LogNorm

    fig, axes = plt.subplots(2, 2, figsize=(10, 8.5), constrained_layout=True)
    for row, name in enumerate(("gd", "flow")):
        for col, (label, grid) in enumerate(zip(("θ", "s"), rho[name])):
            ax = axes[row, col]
            im = ax.pcolormesh(lams, alphas, np.clip(grid, 1e-8, 1), norm=LogNorm(1e-8, 1), shading="nearest")
            ax.plot(lams, a_of_l, "b-", lw=2, label=r"$\alpha=-\log\gamma/(2\lambda)$")
            ax.set(xscale="log", yscale="log", xlim=cfg.lam_range, ylim=cfg.alpha_range, xlabel="λ (convex, eq. 26)",
                   ylabel="α (GD, eq. 16)" if name == "gd" else "α (exact flow limit)")
            ax.set_title(f"ρ_{label}: {'gradient descent' if name == 'gd' else 'gradient-flow limit'} vs convex")
            fig.colorbar(im, ax=ax)
            ax.legend(loc="lower left", fontsize=8)
    fig.suptitle(f"Fig. 2: (N,p,r,k)=({cfg.N},{cfg.p},{cfg.r},{cfg.k}), γ=e^-8, seed {seed}")
    record = {
        "figure": 2, "config": dataclasses.asdict(cfg), "seed": seed, "solver": solver,
        "alphas": alphas, "lams": lams, "alpha_of_lam": a_of_l,
        "rho_theta_gd": rho["gd"][0], "rho_s_gd": rho["gd"][1],
        "rho_theta_flow": rho["flow"][0], "rho_s_flow": rho["flow"][1],
        "solver_status": [s.status for s in sols],
        "failed_cells": [int(j) for j, s in enumerate(sols) if not s.ok],
        "gd_iterations": info.iterations, "gd_residual": info.residual, "gd_converged": info.converged,
        "gd_tau": info.tau, "on_curve_mask": on, "off_curve_mask": off,
        "summary": summary, "timings_s": timings,
    }
    _save(out, "fig2_gd_vs_convex", fig, record)
    plt.close(fig)
    for name in ("gd", "flow"):
        s = summary[name]
        print(f"Fig. 2 [{name}] median ρ_θ on curve {s['median_rho_theta_on_curve']:.2e}, off {s['median_rho_theta_off_curve']:.2e}; "
              f"ρ_s on {s['median_rho_s_on_curve']:.2e}, off {s['median_rho_s_off_curve']:.2e}")
    print("Fig. 2 timings: " + ", ".join(f"{k}={v:.3f}" for k, v in timings.items()))
    return record


# ------------------------------------------------------------------------ Fig. 3


def _sweep(prog, P: lm.Problem, lams: np.ndarray):
    """ε_θ, ε_s (trials, λ) and statuses for a batch of problems over a λ grid."""
    T = P.J.shape[0]
    et = np.full((T, len(lams)), np.nan)
    es = np.full((T, len(lams)), np.nan)
    status = [[None] * len(lams) for _ in range(T)]
    for t in range(T):
        for j, lam in enumerate(lams):
            sol = prog.solve(P.J[t], P.y[t], lam)
            status[t][j] = sol.status
            if sol.ok:
                et[t, j] = lm.relative_error(sol.theta, P.theta_star[t])
                es[t, j] = lm.relative_error(sol.s, P.s_star[t])
    return et, es, status


def figure3(cfg: Fig3Config, seed: int, out: pathlib.Path, solver: str) -> dict:
    """Mean relative errors of (26) against λ: (a) r fixed, k varies; (b) k fixed, r varies."""
    t0 = time.perf_counter()
    lams = np.geomspace(*cfg.lam_range, cfg.n_lam)
    prog = cx.program(cfg.N, cfg.p, solver)
    panels = {"a": [(cfg.fixed_r, k) for k in cfg.ks], "b": [(r, cfg.fixed_k) for r in cfg.rs]}
    curves, failed, n_solves = {}, [], 0
    for panel, cells in panels.items():
        for r, k in cells:
            cs = _cell_seed(seed, 3, r, k)
            P = lm.make_problems(cfg.N, cfg.p, r, k, cs, cfg.trials)
            et, es, st = _sweep(prog, P, lams)
            n_solves += et.size
            failed += [dict(panel=panel, r=r, k=k, trial=t, lam=float(lams[j]), status=st[t][j])
                       for t in range(cfg.trials) for j in range(len(lams)) if st[t][j] not in cx.OK_STATUSES]
            curves[f"{panel}_r{r}_k{k}"] = dict(r=r, k=k, seed=cs, trial_seeds=P.seed, eps_theta=et, eps_s=es,
                                                 mean_eps_theta=np.nanmean(et, 0), mean_eps_s=np.nanmean(es, 0))
    elapsed = time.perf_counter() - t0

    plt = _plt()
    fig, axes = plt.subplots(2, 2, figsize=(10, 8), constrained_layout=True)
    for row, panel in enumerate(("a", "b")):
        for key, c in curves.items():
            if not key.startswith(panel):
                continue
            lab = f"k={c['k']}" if panel == "a" else f"r={c['r']}"
            axes[row, 0].plot(lams, c["mean_eps_theta"], "o-", ms=3, label=lab)
            axes[row, 1].plot(lams, c["mean_eps_s"], "o-", ms=3, label=lab)
        for col, what in enumerate(("θ", "s")):
            ax = axes[row, col]
            ax.set(xscale="log", yscale="log", xlabel="λ", ylabel=f"mean ‖{what}−{what}★‖/‖{what}★‖")
            ax.set_title(f"({panel}) {'r=%d' % cfg.fixed_r if panel == 'a' else 'k=%d' % cfg.fixed_k}: error of {what}")
            ax.legend(fontsize=8)
    fig.suptitle(f"Fig. 3: N={cfg.N}, p={cfg.p}, {cfg.trials} trials, seed {seed}")
    record = {"figure": 3, "config": dataclasses.asdict(cfg), "seed": seed, "solver": solver, "lams": lams,
              "curves": curves, "failed_cells": failed,
              "timings_s": {"total_s": elapsed, "convex_per_solve_s": elapsed / max(n_solves, 1)}}
    _save(out, "fig3_lambda_sweep", fig, record)
    plt.close(fig)
    print(f"Fig. 3: {n_solves} solves in {elapsed:.1f} s ({1e3 * elapsed / n_solves:.1f} ms each), {len(failed)} failed")
    return record


# ------------------------------------------------------------------------ Fig. 4


def success_boundary(rs, ks, rate, level=0.5) -> dict:
    """For each r, the largest k whose success rate is ≥ ``level`` (None if none)."""
    bound = {}
    for i, r in enumerate(rs):
        ok = [k for j, k in enumerate(ks) if np.isfinite(rate[i, j]) and rate[i, j] >= level]
        bound[int(r)] = int(max(ok)) if ok else None
    return bound


def figure4(cfg: Fig4Config, seed: int, out: pathlib.Path, solver: str) -> dict:
    """Success rate of exact recovery over (r, k) at λ = 0.1, by (26) and by GD (16)."""
    timings = {}
    rs, ks = np.asarray(cfg.rs), np.asarray(cfg.ks)
    prog = cx.program(cfg.N, cfg.p, solver)
    rate = np.full((len(rs), len(ks)), np.nan)
    mus = np.zeros((len(rs), len(ks)))
    seeds = np.zeros((len(rs), len(ks)), dtype=np.int64)
    status_counts: dict[str, int] = {}
    failed = []
    gd_J, gd_y, gd_ts, gd_ss, gd_cell = [], [], [], [], []
    t = time.perf_counter()
    for i, r in enumerate(rs):
        for j, k in enumerate(ks):
            seeds[i, j] = cs = _cell_seed(seed, 4, int(r), int(k))
            P = lm.make_problems(cfg.N, cfg.p, int(r), int(k), cs, cfg.trials)
            mus[i, j] = np.mean([lm.coherence(Jt) for Jt in P.J])
            et, es, st = _sweep(prog, P, np.array([cfg.lam]))
            for tr, status in enumerate(row[0] for row in st):
                status_counts[status] = status_counts.get(status, 0) + 1
                if status not in cx.OK_STATUSES:
                    failed.append(dict(r=int(r), k=int(k), trial=tr, status=status))
            solved = np.isfinite(et[:, 0])
            n_ok = int(solved.sum())
            wins = int(np.sum((et[solved, 0] < cfg.threshold) & (es[solved, 0] < cfg.threshold)))
            rate[i, j] = wins / n_ok if n_ok else np.nan
            n_gd = min(cfg.gd_trials, cfg.trials)
            gd_J.append(P.J[:n_gd]); gd_y.append(P.y[:n_gd])
            gd_ts.append(P.theta_star[:n_gd]); gd_ss.append(P.s_star[:n_gd]); gd_cell += [(i, j)] * n_gd
    timings["convex_total_s"] = time.perf_counter() - t
    timings["convex_per_solve_s"] = timings["convex_total_s"] / (len(rs) * len(ks) * cfg.trials)

    t = time.perf_counter()
    alpha = float(lm.alpha_for(cfg.lam, cfg.gamma))
    th, s, info = lm.gradient_descent(np.concatenate(gd_J), np.concatenate(gd_y), alpha, cfg.gamma,
                                      max_iter=cfg.gd_max_iter)
    timings["gd_batched_s"] = time.perf_counter() - t
    timings["gd_runs"] = len(gd_cell)
    win = (lm.relative_error(th, np.concatenate(gd_ts)) < cfg.threshold) & (
        lm.relative_error(s, np.concatenate(gd_ss)) < cfg.threshold) & info.finite
    gd_rate = np.zeros_like(rate)
    gd_n = np.zeros_like(rate)
    for (i, j), w in zip(gd_cell, win):
        gd_rate[i, j] += w
        gd_n[i, j] += 1
    gd_rate /= gd_n

    mu_mean = float(mus.mean())
    bound = {"convex": success_boundary(rs, ks, rate), "gd": success_boundary(rs, ks, gd_rate)}

    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.8), constrained_layout=True)
    rr = np.linspace(1.0, rs.max() + 2.5, 400)
    for ax, grid, title in ((axes[0], rate, f"convex (26), λ={cfg.lam}, {cfg.trials} trials"),
                            (axes[1], gd_rate, f"GD (16), α={alpha:.0f}, γ=e^-8, {min(cfg.gd_trials, cfg.trials)} trials, ≤{cfg.gd_max_iter} steps")):
        im = ax.pcolormesh(ks, rs, grid, vmin=0, vmax=1, cmap="gray", shading="nearest")
        ax.plot(np.sqrt(cfg.N / (4 * mu_mean * rr)), rr, "r-", lw=2, label=f"k²r = N/(4μ), mean μ={mu_mean:.2f}")
        # axes start at 0 so the (tiny) region k²r < N/(4μ) is visible; off-grid area is blue, not "success"
        ax.set_facecolor("#cfe2f3")
        ax.set(xlabel="sparsity k", ylabel="rank r", title=title, xlim=(0, ks.max() + 2.5), ylim=(0, rs.max() + 2.5))
        ax.legend(loc="upper right", fontsize=8)
        fig.colorbar(im, ax=ax, label="success rate (ε_θ, ε_s < 1e-3)")
    fig.suptitle(f"Fig. 4: phase transition, N={cfg.N}, p={cfg.p}, seed {seed}")
    record = {"figure": 4, "config": dataclasses.asdict(cfg), "seed": seed, "solver": solver, "rs": rs, "ks": ks,
              "success_rate": rate, "gd_success_rate": gd_rate, "mu": mus, "mu_mean": mu_mean, "alpha_gd": alpha,
              "cell_seeds": seeds, "solver_status_counts": status_counts, "failed_cells": failed,
              "gd_converged_fraction": float(info.converged.mean()), "boundary_k_at_rate_0.5": bound,
              "timings_s": timings}
    _save(out, "fig4_phase_transition", fig, record)
    plt.close(fig)
    print(f"Fig. 4: largest k with success ≥ 50% per r: convex {bound['convex']}; GD {bound['gd']}")
    print(f"Fig. 4: sufficient condition k²r < N/(4μ) with mean μ = {mu_mean:.2f} holds only for k²r < {cfg.N / (4 * mu_mean):.1f}")
    print("Fig. 4 timings: " + ", ".join(f"{k}={v:.3f}" for k, v in timings.items()))
    return record


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--figure", choices=("2", "3", "4", "all"), default="all")
    ap.add_argument("--quick", action="store_true", help="small grids for a fast check")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=pathlib.Path, default=pathlib.Path("figures"))
    ap.add_argument("--solver", default=cx.DEFAULT_SOLVER, help="CVXPY solver for (26); default ECOS as in the paper")
    args = ap.parse_args(argv)
    figs = (2, 3, 4) if args.figure == "all" else (int(args.figure),)
    makers = {2: (Fig2Config, figure2), 3: (Fig3Config, figure3), 4: (Fig4Config, figure4)}
    t0 = time.perf_counter()
    for n in figs:
        cls, fn = makers[n]
        cfg = cls(**QUICK[n]) if args.quick else cls()
        t = time.perf_counter()
        fn(cfg, args.seed, args.out, args.solver.upper())
        print(f"Fig. {n} done in {time.perf_counter() - t:.1f} s")
    print(f"all done in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
