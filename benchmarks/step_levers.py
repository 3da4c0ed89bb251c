"""Levers on the CPU training step, one at a time: a conv layer's layout and dtype, and an
epoch loop without per-step host round trips (lax.scan vs. its unrolled form vs. one jit per step).

Run:
    python -m benchmarks.step_levers conv            # one 3×3 conv layer, fwd + both grads: GFLOP/s
    python -m benchmarks.step_levers scan --chunk 4  # quick-preset SOP step: per step / scan / unrolled

``conv``: C = 128 channels, batch 128, 32×32, in float32 and bfloat16, in XLA with NHWC and
NCHW layouts and in PyTorch (oneDNN, NCHW; bf16 under autocast), interleaved, best of
``--rounds``. ``scan``: the first ``--chunk`` × rounds steps of the quick preset's SOP step
run three ways on one state each: ``train.device_step`` once per batch; ``lax.scan`` over a
chunk (an XLA while loop); and the same scan with ``unroll=True`` (straight-line code, no
loop). Prints ms/step and the compile time of each. XLA flags apply through ``XLA_FLAGS``.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from sopjax import configs as config_lib
from sopjax.pp import augment as pipeline
from sopjax.trainers import state as tstate
from sopjax.trainers import step as step_lib


def _best(fn, rounds):
    fn()
    out = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        out = min(out, time.perf_counter() - t)
    return out


def conv_runners(dtype: str, B=128, H=32, C=128) -> dict:
    """{name: fn()} each running one conv layer's forward and both gradients once."""
    import torch

    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((B, H, H, C), np.float32), 0.05 * rng.standard_normal((3, 3, C, C), np.float32)
    jdt = jnp.dtype(dtype)
    out = {}
    for layout, (xs, ws) in {"NHWC": ("NHWC", "HWIO"), "NCHW": ("NCHW", "OIHW")}.items():
        xj = jnp.asarray(x if layout == "NHWC" else x.transpose(0, 3, 1, 2), jdt)
        wj = jnp.asarray(w if layout == "NHWC" else w.transpose(3, 2, 0, 1), jdt)
        loss = lambda w, x, d=(xs, ws, xs): jnp.sum(jax.lax.conv_general_dilated(
            x, w, (1, 1), "SAME", dimension_numbers=d).astype(jnp.float32) ** 2)
        g = jax.jit(jax.grad(loss, argnums=(0, 1)))
        out[f"xla {layout}"] = lambda g=g, w=wj, x=xj: jax.block_until_ready(g(w, x))
    xt = torch.tensor(x.transpose(0, 3, 1, 2).copy(), requires_grad=True)
    wt = torch.tensor(w.transpose(3, 2, 0, 1).copy(), requires_grad=True)

    def torch_step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bfloat16"):
            y = torch.nn.functional.conv2d(xt, wt, padding=1)
        (y.float() ** 2).sum().backward()

    out["torch NCHW"] = torch_step
    return out


def run_conv(a) -> None:
    flops = 3 * 2 * 128 * 32 * 32 * 128 * 128 * 9  # forward, input gradient, weight gradient
    for dtype in ("float32", "bfloat16"):
        runners = conv_runners(dtype)
        best = {k: float("inf") for k in runners}
        for _ in range(a.rounds):  # interleaved rounds
            for k, fn in runners.items():
                best[k] = min(best[k], _best(fn, 1))
        print("  ".join(f"{dtype} {k}: {1e3 * s:.0f} ms ({flops / s / 1e9:.0f} GFLOP/s)" for k, s in best.items()))


def scan_runners(cfg, x, y, chunk: int) -> dict:
    """{name: (compile seconds, fn(batches) -> None)} for the three ways to run ``chunk`` steps."""
    data, spec = (jax.device_put(x), jax.device_put(y)), step_lib.StepSpec.from_config(cfg)
    states = {}

    def body(s, idx):
        s, m = step_lib.train_step(s, step_lib.gather_batch(s, idx, data, spec), spec)
        return s, m["loss"]

    @functools.partial(jax.jit, static_argnames="unroll", donate_argnums=(0,))
    def chunked(s, batches, unroll):
        return jax.lax.scan(body, s, batches, unroll=unroll)

    def per_step(name, batches):
        for b in batches:
            states[name], m = step_lib.device_step(states[name], b, data, step_lib.StepSpec.from_config(cfg))
        jax.block_until_ready(m)

    def scanned(name, batches, unroll):
        states[name], losses = chunked(states[name], batches, unroll=unroll)
        jax.block_until_ready(losses)

    out = {}
    for name, fn in (("per step", per_step), ("lax.scan", functools.partial(scanned, unroll=1)),
                     ("scan unrolled", functools.partial(scanned, unroll=True))):
        states[name] = tstate.create_train_state(cfg, tstate.build_model(cfg, 10), x, len(x), 10, len(x) // 128)
        order = pipeline.epoch_batches(states[name].rng, 0, len(x), cfg.batch_size)[:chunk]
        t = time.perf_counter()
        fn(name, order)  # compiles
        out[name] = (time.perf_counter() - t, functools.partial(fn, name, order))
    return out


def run_scan(a) -> None:
    cfg = dataclasses.replace(config_lib.PRESETS["quick"], method="sop", dtype=a.dtype)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (a.n, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 10, a.n).astype(np.int32)
    runners = scan_runners(cfg, x, y, a.chunk)
    best = {k: float("inf") for k in runners}
    for _ in range(a.rounds):
        for k, (_, fn) in runners.items():
            best[k] = min(best[k], _best(fn, 1) / a.chunk)
    for k, s in best.items():
        print(f"{k:>14}: {1e3 * s:,.0f} ms/step (first call, with compile: {runners[k][0]:.1f} s)")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("what", choices=("conv", "scan"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--chunk", type=int, default=4, help="steps per scan (scan)")
    ap.add_argument("--n", type=int, default=2000, help="training-set size (scan)")
    ap.add_argument("--dtype", default="float32", help="compute dtype (scan)")
    a = ap.parse_args(argv)
    print(f"jax {jax.__version__}, XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}, "
          f"load average {os.getloadavg()[0]:.2f}")
    (run_conv if a.what == "conv" else run_scan)(a)
    print(f"load average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
