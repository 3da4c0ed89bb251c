"""Benchmark the theory figures: batched certified solver vs the CVXPY loop, side by side.

Run:
    python -m benchmarks.theory_figures                 # Figs. 2, 3, 4 (full grids)
    python -m benchmarks.theory_figures --figures 3,4   # a subset

For Figs. 3 and 4 it computes each figure twice in one process, with the batched
JAX solver (``--solver BATCHED``, the default of ``theory.phase_transition``) and
with ECOS one solve at a time, prints both wall times and their ratio (target on
the 2-core CPU: ≥ 8×), and whether the success maps / error curves agree. Fig. 2
(30×30) is timed once (target < 60 s). JAX's caches are cleared before each
batched run, so its time includes its compiles. Both runs solve the same problems
(same seeds) and draw the same maps. Fig. 4's ECOS run skips the flow panel (the
same code in both), so its ratio compares the convex solves plus the problem
set-up. Nothing is
written to figures/; the figures come from the same registry as the CLI's.
The load average is printed, since other processes share the CPU.
"""

import argparse
import os
import time

import numpy as np

from theory import phase_transition as pt


def _timed(n, solver, **over):
    spec = pt.FIGURES[n]
    if solver == pt.BATCHED:  # every figure's batched time includes its own JAX compiles
        import jax

        from theory import convex as cx

        jax.clear_caches()
        cx._dual_cache.clear()
    t = time.perf_counter()
    rec = spec.compute(spec.config(**over), 0, solver)
    return rec, time.perf_counter() - t


def _agree(n, a, b) -> str:
    if n == 4:
        same = all(np.array_equal(np.asarray(a[k]), np.asarray(b[k]), equal_nan=True)
                   for k in ("success_theta", "success_s", "success_rate"))
        return "success maps identical" if same else "success maps DIFFER"
    # absolute: in exact recovery the batched errors are ~1e-15 and ECOS's ~1e-9, so ratios mislead
    worst = max(float(np.nanmax(np.abs(np.asarray(a["curves"][c][k], dtype=float)
                                       - np.asarray(b["curves"][c][k], dtype=float))))
                for c in a["curves"] for k in ("mean_eps_theta", "mean_eps_s"))
    return f"mean-error curves differ by at most {worst:.1e} (absolute)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--figures", default="2,3,4", help="comma list from 2,3,4")
    args = ap.parse_args()
    rows = []
    for n in (int(x) for x in args.figures.split(",")):
        print(f"load average before Fig. {n}: {os.getloadavg()[0]:.1f}", flush=True)
        rec, wall = _timed(n, pt.BATCHED)
        if n == 2:
            rows.append((n, wall, None, "GD + flow limit + 30 convex solves"))
            continue
        ref, wall_ref = _timed(n, "ECOS", **({"flow_trials": 0} if n == 4 else {}))
        if n == 4:  # compare like with like: the batched run's time without its flow panel
            wall -= rec["timings_s"].get("flow_s", 0.0)
        rows.append((n, wall, wall_ref, _agree(n, rec, ref)))
        c = rec["solver_counts"]
        print(f"Fig. {n}: {c['solves']} solves, {c['certified']} certified, {c['fallback']} by ECOS fallback; "
              f"batched timings {rec['timings_s']}", flush=True)
        if n == 4:
            print(f"Fig. 4 flow panel: {rec['timings_s'].get('flow_s', 0):.1f} s "
                  f"({rec['config']['flow_trials']} trials per cell)")
    print("\nfigure | batched s | ECOS loop s | ratio | check")
    for n, wall, ref, note in rows:
        ratio = f"{ref / wall:.1f}x" if ref else "-"
        print(
            f"Fig. {n} | {wall:.1f} | {ref:.1f} | {ratio} | {note}"
            if ref
            else f"Fig. {n} | {wall:.1f} | - | - | {note}"
        )
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
