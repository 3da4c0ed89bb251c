"""One SOP training step in sopjax vs. the same step in its PyTorch twin, on this machine's CPU.

Run:
    python -m benchmarks.step_vs_pytorch                     # widths 1/8, 1/2, 1; float32 and bfloat16
    python -m benchmarks.step_vs_pytorch --widths 0.125 --dtypes float32 --rounds 5

Both sides run the whole step of the ``quick`` preset's training at batch 128: gather the
batch from a uint8 training set of N = 50,000 random CIFAR-shaped images held in memory,
random crop + flip, normalize, the authors' PreActResNet18 at ``width``, the SOP loss, one
backward pass, SGD with momentum and weight decay on the network and plain SGD on the
(N, 1) and (N, 10) tables u, v. The twin is :mod:`benchmarks.torch_twin` (NCHW, PyTorch's
default layout); bfloat16 is ``torch.autocast`` there and ``Config(dtype="bfloat16")``
(bf16 convolutions and matmuls, float32 params, tables, loss and BN statistics) here.

JAX runs one jitted step per batch (:func:`sopjax.train.device_step`, as ``train_epoch``
does); the twin runs on 1 and on 2 threads (see ``TORCH_THREADS``). The runners are timed
in interleaved rounds in this one process, in rotated order, so drift in the load of this
shared machine hits all of them; each figure is the best round. ``ratio`` is the twin's
step time over JAX's (> 1: JAX is faster); ``vs torch float32`` compares with the twin's
float32 step, the target (≥ 1 at widths 1/8 and 1/2; printed, not asserted). Read the
load average printed with the table: on a busy machine every figure is slower.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time

import jax
import numpy as np

from sopjax import configs as config_lib
from sopjax.data import constants
from sopjax.pp import augment as pipeline
from sopjax.trainers import state as tstate
from sopjax.trainers import step as step_lib

N_TRAIN, K = 50_000, 10
DEFAULT_STEPS = {0.125: 8, 0.5: 3, 1.0: 2}
# PyTorch's OpenMP threads spin at barriers: on this shared 2-core machine under load its
# 2-thread step can be several times slower than its 1-thread one, so the twin is timed with
# both and its faster count is the one compared (in its favour).
TORCH_THREADS = (1, 2)


# ------------------------------------------------------------------------------- JAX


def setup(batch_size: int = 128):
    """(the ``quick`` preset's SOP config at ``batch_size``, x (N, 32, 32, 3) uint8, y (N,) int32)."""
    base = dataclasses.replace(config_lib.PRESETS["quick"], method="sop", batch_size=batch_size)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (N_TRAIN, 32, 32, 3), dtype=np.uint8)
    return base, x, rng.integers(0, K, N_TRAIN).astype(np.int32)


def jax_runner(cfg: config_lib.Config, x: np.ndarray, y: np.ndarray, keep: bool = False):
    """run(n) -> seconds for n steps of :func:`sopjax.trainers.step.device_step`, one jitted call
    per batch as the epoch loop runs them, continuing from where the last call stopped.
    ``keep``: return (run, box) with box holding the state, data and batch order."""
    model = tstate.build_model(cfg, K)
    spec = step_lib.StepSpec.from_config(cfg)
    box = {"state": tstate.create_train_state(cfg, model, x, len(x), K, len(x) // cfg.batch_size), "i": 0,
           "data": (jax.device_put(x), jax.device_put(y))}
    box["order"] = pipeline.epoch_batches(box["state"].rng, 0, len(x), cfg.batch_size)

    def run(n):
        t = time.perf_counter()
        for _ in range(n):
            box["state"], m = step_lib.device_step(box["state"], box["order"][box["i"] % len(box["order"])],
                                                   box["data"], spec)
            box["i"] += 1
        jax.block_until_ready((box["state"], m))
        return time.perf_counter() - t

    return (run, box) if keep else run


# --------------------------------------------------------------------------- PyTorch


def torch_runner(cfg: config_lib.Config, x: np.ndarray, y: np.ndarray, threads: int, labelled: bool = False):
    """run(n) -> seconds for n steps of the twin (same data, batch, augmentation, loss and
    optimizers) on ``threads`` intra-op threads. ``labelled``: the input pipeline runs in a
    ``torch.profiler.record_function("input")`` block (:mod:`benchmarks.step_profile`)."""
    import contextlib

    import torch

    from benchmarks import torch_twin

    torch.manual_seed(cfg.seed)
    net = _FloatLogits(torch_twin.PreActResNet18(K, cfg.width))
    twin = torch_twin.Twin(net, len(x), K, cfg.lr, cfg.weight_decay, cfg.lr_u, cfg.lr_v, cfg.epochs, 0.0)
    x_all = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))  # uint8 NCHW
    y_all = torch.from_numpy(y.astype(np.int64))
    mean, std = (torch.tensor(a).view(1, 3, 1, 1) for a in constants.normalization_stats("cifar10"))
    gen = torch.Generator().manual_seed(cfg.seed)
    autocast = cfg.dtype == "bfloat16"

    def one_step():
        with torch.profiler.record_function("input") if labelled else contextlib.nullcontext():
            idx = torch.randint(0, len(x), (cfg.batch_size,), generator=gen)
            xb = (_crop_flip(x_all[idx], gen).float() / 255.0 - mean) / std
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            twin.step("sop", xb, y_all[idx], idx)

    def run(n):
        torch.set_num_threads(threads)
        t = time.perf_counter()
        for _ in range(n):
            one_step()
        return time.perf_counter() - t

    return run


def _FloatLogits(net):
    """Wrap ``net`` so the loss sees float32 logits, as sopjax's models return (bf16 under autocast)."""
    import torch

    class FloatLogits(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = net

        def forward(self, x):
            return self.inner(x).float()

    return FloatLogits()


def _crop_flip(x, gen):
    """Random crop from a zero-padding of 4 and a horizontal flip with probability ½, per image
    (the torch version of :func:`sopjax.pp.augment.augment`). x (B, C, H, W) uint8."""
    import torch

    B, C, H, W = x.shape
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    off = torch.randint(0, 9, (B, 2), generator=gen)
    flip = torch.rand(B, generator=gen) < 0.5
    cols = torch.arange(W).expand(B, W)
    cols = torch.where(flip[:, None], W - 1 - cols, cols) + off[:, 1:]
    rows = torch.arange(H)[None] + off[:, :1]
    b, c = torch.arange(B)[:, None, None, None], torch.arange(C)[None, :, None, None]
    return padded[b, c, rows[:, None, :, None], cols[:, None, None, :]]


# ------------------------------------------------------------------------ the table


def interleaved(runners: dict, steps: int, rounds: int) -> dict:
    """Best seconds per step of each runner over ``rounds`` rounds of ``steps`` steps; every
    round runs every runner once, in rotated order, after one untimed warm-up call each."""
    names = list(runners)
    for name in names:
        runners[name](steps)  # compile and warm caches; not timed
    best = {name: float("inf") for name in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            best[name] = min(best[name], runners[name](steps) / steps)
    return best


def measure(base: config_lib.Config, width: float, dtype: str, x, y, steps: int, rounds: int,
            threads=TORCH_THREADS) -> dict:
    """Best seconds per step of JAX and of the twin (on each thread count) at ``width``, ``dtype``."""
    cfg = dataclasses.replace(base, width=width, dtype=dtype)
    runners = {"jax": jax_runner(cfg, x, y), **{f"torch/{t}t": torch_runner(cfg, x, y, t) for t in threads}}
    best = interleaved(runners, steps, rounds)
    fastest = min(threads, key=lambda t: best[f"torch/{t}t"])
    return {**best, "torch": best[f"torch/{fastest}t"], "torch_threads": fastest}


def print_table(rows: list, batch: int) -> None:
    """Markdown table: ms/step (images/s) of each side; ratio = twin's step time / JAX's
    (> 1: JAX is faster); "vs torch f32" divides the twin's float32 time by JAX's."""
    print("| width | dtype | JAX: ms/step (img/s) | PyTorch twin: ms/step (img/s), threads | "
          "ratio torch/JAX | vs torch float32 |")
    print("| --- | --- | --- | --- | --- | --- |")
    f32 = {r["width"]: r["torch"] for r in rows if r["dtype"] == "float32"}
    cell = lambda s: f"{1e3 * s:,.1f} ({batch / s:,.0f})"
    for r in rows:
        vs32 = f"{f32[r['width']] / r['jax']:.2f}" if r["width"] in f32 else "—"
        print(f"| {r['width']:g} | {r['dtype']} | {cell(r['jax'])} | {cell(r['torch'])}, {r['torch_threads']} | "
              f"{r['torch'] / r['jax']:.2f} | {vs32} |")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--widths", default="0.125,0.5,1", help="comma-separated width multipliers")
    ap.add_argument("--dtypes", default="float32,bfloat16", help="comma-separated compute dtypes")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--steps", type=int, help="steps per timed round (default: 8, 3, 2 at widths 1/8, 1/2, 1)")
    ap.add_argument("--rounds", type=int, default=3, help="timed rounds per runner; the best is kept")
    ap.add_argument("--torch-threads", default="1,2", help="thread counts to time the twin on; its fastest is compared")
    a = ap.parse_args(argv)
    import torch

    base, x, y = setup(a.batch_size)
    print(f"jax {jax.__version__} ({jax.default_backend()}), torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}, "
          f"load average {os.getloadavg()[0]:.2f} at start")
    rows = []
    for width in (float(w) for w in a.widths.split(",")):
        steps = a.steps or DEFAULT_STEPS.get(width, 2)
        for dtype in a.dtypes.split(","):
            best = measure(base, width, dtype, x, y, steps, a.rounds, [int(t) for t in a.torch_threads.split(",")])
            rows.append({"width": width, "dtype": dtype, **best})
            print(f"  width {width:g} {dtype}: " + ", ".join(f"{k} {1e3 * v:.1f} ms" for k, v in best.items()
                                                          if k.startswith(("jax", "torch/"))), flush=True)
    print(f"\nbatch {a.batch_size}, {a.rounds} interleaved rounds, best round; load average "
          f"{os.getloadavg()[0]:.2f} at end\n")
    print_table(rows, a.batch_size)


if __name__ == "__main__":
    main()
