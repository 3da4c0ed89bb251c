"""Throughput of data parallelism (1, 2, 4 forced host devices) and of runs side by side
(--seeds 1, 2, 4 on one device): images/s and step time, printed.

Run:
    python -m benchmarks.scaling                        # quick-preset model, batch 128
    python -m benchmarks.scaling --steps 5 --arch mlp   # a fast look
    python -m benchmarks.scaling --devices 1 --seeds '' --stream-workers 0,1,2   # the loader only

Each device count runs in its own subprocess (XLA_FLAGS must be set before JAX starts).
Uses N = 4096 random CIFAR-shaped uint8 images (throughput does not depend on pixels) and
times ``--steps`` steps after two warm-up steps (the first compiles). On a CPU the forced devices
share the same cores, so data parallelism shows its overhead here, not a speed-up.
"""

import argparse
import contextlib
import dataclasses
import json
import os
import subprocess
import sys
import time

N = 4096


def _setup(a, method_cfg=None):
    import numpy as np

    from sopjax import configs as config_lib

    cfg = dataclasses.replace(config_lib.PRESETS["quick"], arch=a.arch, width=a.width, batch_size=a.batch_size)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (N, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 10, N).astype(np.int32)
    return cfg, x, y


def time_devices(a) -> dict:
    """Runs inside the subprocess: ``a.steps`` data-parallel steps over all (forced) devices."""
    import jax

    from sopjax import models
    from sopjax.infra import parallel
    from sopjax.pp import augment as pipeline
    from sopjax.trainers import state as tstate
    from sopjax.trainers import step as step_lib

    cfg, x, y = _setup(a)
    # One device: no mesh, as the CLI runs it. (Under a 1-device mesh the state goes in on one
    # device's sharding and comes out on the mesh's, so the second step compiles again.)
    ctx = parallel.data_parallel() if jax.device_count() > 1 else contextlib.nullcontext()
    with ctx:
        state = tstate.create_train_state(
            cfg, models.make_model(cfg.arch, 10, cfg.width), x, N, 10, N // cfg.batch_size
        )
        state = parallel.place_state(state, N)
        data = (parallel.put_rows(x), parallel.put_rows(y))
        batches = pipeline.epoch_batches(state.rng, 0, N, cfg.batch_size)
        for i in range(2):  # warm-up: the first step compiles, the second may retrace (step 0 is a Python int)
            state, m = step_lib.device_step(state, batches[i], data, step_lib.StepSpec.from_config(cfg))
        jax.block_until_ready(m)
        t = time.perf_counter()
        for i in range(2, a.steps + 2):
            state, m = step_lib.device_step(state, batches[i], data, step_lib.StepSpec.from_config(cfg))
        jax.block_until_ready((state, m))
    dt = (time.perf_counter() - t) / a.steps
    return {"devices": jax.device_count(), "step_ms": 1e3 * dt, "images_per_s": cfg.batch_size / dt}


def time_seeds(a, runs: int) -> dict:
    """``a.steps`` vmapped steps of ``runs`` runs on one device; images/s counts every run's images."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from sopjax import models
    from sopjax.trainers import multirun
    from sopjax.trainers import state as tstate
    from sopjax.trainers import step as step_lib

    cfg, x, y = _setup(a)
    spec = step_lib.StepSpec.from_config(cfg)
    model = models.make_model(cfg.arch, 10, cfg.width)
    states = multirun.stack([tstate.create_train_state(dataclasses.replace(cfg, seed=s), model, x, N, 10,
                                                      N // cfg.batch_size) for s in range(runs)])
    xd, yd = jax.device_put(x), jnp.asarray(np.stack([y] * runs))
    batches = multirun.stacked_batches(states, 0, N, cfg.batch_size)
    for i in range(2):
        states, m = multirun.multi_step(states, batches[i], xd, yd, spec)
    jax.block_until_ready(m)
    t = time.perf_counter()
    for i in range(2, a.steps + 2):
        states, m = multirun.multi_step(states, batches[i], xd, yd, spec)
    jax.block_until_ready((states, m))
    dt = (time.perf_counter() - t) / a.steps
    return {"runs": runs, "step_ms": 1e3 * dt, "images_per_s": runs * cfg.batch_size / dt}


def time_stream(workers: int, batch_size: int, n: int = 1024) -> dict:
    """One pass of the grain loader (decode, crop, flip) over ``n`` random 32×32 PNGs written
    to a temporary folder, with ``workers`` host processes; images/s of the loader alone."""
    import tempfile

    import numpy as np
    from PIL import Image

    from sopjax.data import folder as stream

    with tempfile.TemporaryDirectory() as d:
        rng = np.random.default_rng(0)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(f"{d}/{i}.png")
        images = stream.ImageList(tuple(f"{d}/{i}.png" for i in range(n)), np.zeros(n, np.int32))
        loader = stream.make_loader(images, batch_size, seed=0, flip=True, crop=True, worker_count=workers,
                                    drop_remainder=True)
        t = time.perf_counter()
        seen = sum(len(idx) for _, idx in loader)
        dt = time.perf_counter() - t
    return {"workers": workers, "images_per_s": seen / dt, "seconds": dt}


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="preact_resnet18")
    ap.add_argument("--width", type=float, default=0.125)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--devices", default="1,2,4")
    ap.add_argument("--seeds", default="1,2,4")
    ap.add_argument("--stream-workers", default="0,2", help="grain loader worker counts to time ('' = none)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if not 1 <= a.steps <= N // a.batch_size - 2:
        ap.error(
            f"--steps must lie in 1 … {N // a.batch_size - 2} (one pass over the {N} images after 2 warm-up steps)"
        )
    return a


def main(argv=None):
    a = parse(argv)
    if a.child:
        print(json.dumps(time_devices(a)))
        return
    flags = ["--arch", a.arch, "--width", str(a.width), "--batch-size", str(a.batch_size), "--steps", str(a.steps)]
    print(f"command: python -m benchmarks.scaling {' '.join(sys.argv[1:] if argv is None else argv)}".rstrip())
    print(f"{a.arch} width {a.width}, batch {a.batch_size}, {a.steps} timed steps, {os.cpu_count()} CPU cores; "
          f"load average at start {_load()}")
    for n in (int(v) for v in a.devices.split(",") if v.strip()):
        env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={n}", "JAX_PLATFORMS": "cpu"}
        out = subprocess.run([sys.executable, "-m", "benchmarks.scaling", "--child", *flags], env=env,
                             capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        r = json.loads(out)
        print(f"data parallel, {r['devices']} device(s): {r['step_ms']:.1f} ms/step, {r['images_per_s']:.0f} images/s")
    for s in (int(v) for v in a.seeds.split(",") if v.strip()):
        r = time_seeds(a, s)
        print(f"--seeds with {r['runs']} run(s) side by side: {r['step_ms']:.1f} ms/step, "
              f"{r['images_per_s']:.0f} images/s (all runs)")
    for w in (int(v) for v in a.stream_workers.split(",") if v.strip()):
        r = time_stream(w, a.batch_size)
        print(f"stream loader (decode 32x32 PNG, crop, flip), {w} worker process(es): {r['images_per_s']:.0f} images/s")
    print(f"load average at end {_load()}")


def _load() -> str:
    """The 1-, 5- and 15-minute load averages: other jobs on the same cores slow every row."""
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


if __name__ == "__main__":
    main()
