"""Speed of double over-parameterization on this machine: prints figures, asserts nothing.

    python -m benchmarks.dop                  # DIP step at 128×128 (widths 16, 32) and the quick matrix grid
    python -m benchmarks.dop --part dip --widths 16 --steps 100

Prints, with the load average before and after each figure (the machine is shared):
- seconds per 1000 DIP iterations (one compiled SGD step of sopjax.dop; the compile
  is timed apart and excluded), for the quick run's grayscale 128×128 image;
- wall time of the matrix phase-transition grid (``theory.matrix_recovery --quick``'s
  grid), split into DOP gradient descent, convex RPCA (CVXPY/SCS) and IALM.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np


def dip_seconds_per_1000(width: int, size: int, steps: int, scales: int = 5) -> dict:
    from sopjax.dop import restore as dop

    cfg = dop.DIPConfig(method="dop", channels=(width,) * scales)
    rng = np.random.default_rng(0)
    clean = rng.random((size, size, 1), dtype=np.float32)
    y = jnp.asarray(clean)[None]
    params, z = dop.init(cfg, clean.shape, 0)
    opt_state = dop.optimizer(cfg).init(params)
    step = dop.compiled_step(cfg.channels, cfg.skip_channels, 1, cfg.reg_noise_std)
    w = jnp.asarray(dop.LOSS_WEIGHTS["dop"])
    t = time.perf_counter()
    params, opt_state, v = step(params, opt_state, z, jax.random.PRNGKey(0), y, y, w)
    v.block_until_ready()
    compile_s = time.perf_counter() - t
    t = time.perf_counter()
    for i in range(steps):
        params, opt_state, v = step(params, opt_state, z, jax.random.PRNGKey(i), y, y, w)
    v.block_until_ready()
    per = (time.perf_counter() - t) / steps
    n_params = sum(x.size for x in jax.tree.leaves(params["net"]))
    return {"width": width, "size": size, "params": n_params, "compile_s": compile_s, "s_per_1000": 1000 * per}


def matrix_grid_wall() -> dict:
    from theory import matrix_recovery as mr

    t = time.perf_counter()
    rec = mr.compute_phase(mr.QUICK["phase"], seed=0)
    return {"wall_s": time.perf_counter() - t, **rec["timings_s"], "cells": len(rec["cell_seeds"])}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=("dip", "matrix", "all"), default="all")
    ap.add_argument("--widths", type=lambda s: [int(x) for x in s.split(",")], default=[16, 32])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=50)
    args = ap.parse_args(argv)
    print(f"JAX {jax.__version__} on {jax.default_backend()}, {os.cpu_count()} CPUs")
    if args.part in ("dip", "all"):
        for w in args.widths:
            load = os.getloadavg()[0]
            r = dip_seconds_per_1000(w, args.size, args.steps)
            print(f"DIP/DOP step {r['size']}×{r['size']}×1, width {w} ({r['params']:,} params): "
                  f"{r['s_per_1000']:.1f} s per 1000 iterations (compile {r['compile_s']:.1f} s, "
                  f"{args.steps} timed steps); load avg {load:.2f} → {os.getloadavg()[0]:.2f}")
    if args.part in ("matrix", "all"):
        load = os.getloadavg()[0]
        r = matrix_grid_wall()
        print(f"matrix grid (quick: n=20, {r['cells']} instances): wall {r['wall_s']:.1f} s = DOP GD "
              f"{r['dop_gd_total']:.1f} s + convex {r['convex_total']:.1f} s + IALM {r['ialm_total']:.1f} s; "
              f"load avg {load:.2f} → {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
