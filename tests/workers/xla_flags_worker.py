"""Run in a subprocess (XLA reads XLA_FLAGS once, at backend start; see tests/infra/test_xla_flags.py).

Trains 20 steps of the ``quick`` preset's SOP step (PreActResNet18 at width 1/8, batch 16, on
random CIFAR-shaped images) at lr 0.001 and writes the losses, the tables u, v and the XLA flags in force
to the .npz named by argv[1].

Why lr 0.001 and not the preset's 0.1: on random labels at lr 0.1 the float rounding
difference of step 1 (~1e-7 relative, any change of summation order gives one) grows about
tenfold every four steps, so after 20 steps two correct runs differ by 1e-3; at lr 0.001 it
stays near rounding (≤ 3e-5), while a 0.1% change in lr_u already moves u by 1e-3.
"""

import dataclasses
import json
import sys

import jax
import numpy as np

from sopjax import configs as config_lib
from sopjax.infra import xla_flags
from sopjax.pp import augment as pipeline
from sopjax.trainers import state as tstate
from sopjax.trainers import step as step_lib

N, K, STEPS = 640, 10, 20


def main(out: str) -> None:
    cfg = dataclasses.replace(config_lib.PRESETS["quick"], method="sop", batch_size=32, width=0.125, lr=0.001)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (N, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, K, N).astype(np.int32)
    state = tstate.create_train_state(cfg, tstate.build_model(cfg, K), x, N, K, N // cfg.batch_size)
    spec, data = step_lib.StepSpec.from_config(cfg), (jax.device_put(x), jax.device_put(y))
    order, losses = pipeline.epoch_batches(state.rng, 0, N, cfg.batch_size), []
    for i in range(STEPS):
        state, m = step_lib.device_step(state, order[i % len(order)], data, spec)
        losses.append(float(m["loss"]))
    np.savez(out, loss=np.array(losses), u=np.asarray(state.params["u"]), v=np.asarray(state.params["v"]),
             flags=json.dumps(xla_flags.in_force()))


if __name__ == "__main__":
    main(sys.argv[1])
