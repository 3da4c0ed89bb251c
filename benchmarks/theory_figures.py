"""Benchmark the theory suite: Fig. 2 at 30×30 and Fig. 4 at 15×15×20 trials.

Run:
    python -m benchmarks.theory_figures                  # writes into a temp dir
    python -m benchmarks.theory_figures --out figures    # also refreshes figures/

Prints the wall time of each figure, the time per ECOS solve and per batched GD
run. Targets on the 2-core CPU machine: Fig. 2 < 60 s, Fig. 4 < 10 min. The
figures are printed, never asserted (this is not a test).
"""

import argparse
import pathlib
import tempfile
import time

from theory import phase_transition as pt


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=pathlib.Path, default=None)
    ap.add_argument("--figures", default="2,4", help="comma list from 2,3,4")
    args = ap.parse_args()
    out = args.out or pathlib.Path(tempfile.mkdtemp(prefix="sopjax-bench-"))
    makers = {2: (pt.Fig2Config, pt.figure2, 60), 3: (pt.Fig3Config, pt.figure3, None), 4: (pt.Fig4Config, pt.figure4, 600)}
    rows = []
    for n in (int(x) for x in args.figures.split(",")):
        cls, fn, target = makers[n]
        t = time.perf_counter()
        rec = fn(cls(), 0, out, "ECOS")
        wall = time.perf_counter() - t
        tm = rec["timings_s"]
        rows.append((n, wall, target, tm.get("convex_per_solve_s"), tm.get("gd_batched_s"), tm.get("gd_runs", 1)))
    print("\nfigure | wall s | target s | ms per ECOS solve | batched GD s (runs)")
    for n, wall, target, per, gd, runs in rows:
        gd_s = f"{gd:.1f} ({int(runs)})" if gd is not None else "-"
        print(f"Fig. {n} | {wall:.1f} | {target or '-'} | {1e3 * per:.1f} | {gd_s}")


if __name__ == "__main__":
    main()
