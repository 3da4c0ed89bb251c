"""Training-step throughput (images/s) of CE, SOP and SOP+ on the same model and batch.

Run:
    python -m benchmarks.step_throughput                        # quick-preset model, batch 128
    python -m benchmarks.step_throughput --arch preact_resnet18 --width 1.0 --steps 20

Uses a CIFAR-shaped uint8 training set of N = 50,000 random images on the device
(throughput does not depend on pixel values), times ``--steps`` steps after
``--warmup`` compiled warm-up steps, and prints images/s for each method and the
SOP/CE step-time ratio (target on the 2-core CPU: ≤ 1.10) and the SOP+/SOP ratio (target
≤ 2.1, the paper's Table 5 ratio of training times on a V100: SOP+ 2.1 h vs SOP 1.0 h). SOP+'s
step includes its strong view (AutoAugment, crop/flip, Cutout) and one forward/backward over
2B images. ``--methods ce,sop`` skips SOP+. Printed, not asserted.
"""

import argparse
import dataclasses
import time

import jax
import numpy as np

from sopjax import configs as config_lib
from sopjax import models
from sopjax.pp import augment as pipeline
from sopjax.trainers import state as tstate
from sopjax.trainers import step as step_lib


def time_method(cfg, x, y, steps, warmup):
    model = models.make_model(cfg.arch, 10, cfg.width)
    state = tstate.create_train_state(cfg, model, x, len(x), 10, len(x) // cfg.batch_size)
    step = lambda s, idx, data: step_lib.device_step(s, idx, data, step_lib.StepSpec.from_config(cfg))
    data = (jax.device_put(x), jax.device_put(y))
    batches = pipeline.epoch_batches(state.rng, 0, len(x), cfg.batch_size)
    for i in range(warmup):
        state, m = step(state, batches[i], data)
    jax.block_until_ready(m)
    t = time.perf_counter()
    for i in range(warmup, warmup + steps):
        state, m = step(state, batches[i], data)
    jax.block_until_ready((state, m))
    return (time.perf_counter() - t) / steps


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--arch")
    ap.add_argument("--width", type=float)
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--methods", default="ce,sop,sop_plus", help="comma-separated: ce, sop, sop_plus")
    a = ap.parse_args()
    cfg = config_lib.PRESETS[a.preset]
    cfg = dataclasses.replace(
        cfg, **{k: v for k, v in (("arch", a.arch), ("width", a.width), ("batch_size", a.batch_size)) if v}
    )
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (50_000, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 10, 50_000).astype(np.int32)
    methods = tuple(a.methods.split(","))
    res = {m: [] for m in methods}
    for _ in range(a.repeats):  # interleave so drift in machine load hits both
        for method in methods:
            res[method].append(time_method(dataclasses.replace(cfg, method=method), x, y, a.steps, a.warmup))
    t = {k: min(v) for k, v in res.items()}
    print(f"backend {jax.default_backend()}, {cfg.arch} width {cfg.width}, batch {cfg.batch_size}, "
          f"{a.steps} timed steps, best of {a.repeats}")
    for k in methods:
        print(f"{k:>4}: {1e3 * t[k]:.1f} ms/step, {cfg.batch_size / t[k]:.0f} images/s")
    if "ce" in t and "sop" in t:
        print(f"SOP/CE step-time ratio: {t['sop'] / t['ce']:.3f} (target ≤ 1.10)")
    if "sop" in t and "sop_plus" in t:
        print(f"SOP+/SOP step-time ratio: {t['sop_plus'] / t['sop']:.3f} (target ≤ 2.1, paper Table 5 on a V100)")


if __name__ == "__main__":
    main()
