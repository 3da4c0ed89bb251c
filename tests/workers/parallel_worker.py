"""Run in a subprocess with forced host devices (see tests/infra/test_parallel.py).

Trains one small SOP problem (a BatchNorm MLP on Gaussian clusters) for 2 epochs on a
1-device mesh and on an all-device mesh, then once more through ``train.fit`` on all
devices, interrupted after epoch 1 and resumed from its sharded orbax checkpoint.
Writes everything the test compares to the .npz named by argv[1].
"""

import os
import sys
import types

import flax.linen as nn
import jax
import numpy as np

from sopjax import configs as config_lib
from sopjax.data import arrays as arrays_lib
from sopjax.data import noise
from sopjax.evaluators import predict
from sopjax.infra import parallel
from sopjax.trainers import fit as fit_lib
from sopjax.trainers import state as tstate
from sopjax.trainers import step as step_lib

N, NT, D, K = 256, 64, 12, 10


class BNNet(nn.Module):
    """Dense → BatchNorm → ReLU → Dense: the smallest net whose step depends on batch statistics."""

    @nn.compact
    def __call__(self, x, train: bool = True):
        x = nn.Dense(16, bias_init=nn.initializers.normal(0.1))(
            x
        )  # (BN cancels its gradient; non-zero so rel is defined)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
        return nn.Dense(K)(nn.relu(x))


def problem():
    rng = np.random.default_rng(0)
    mu = rng.standard_normal((K, D)) * 1.5
    y, yt = rng.integers(0, K, N).astype(np.int32), rng.integers(0, K, NT).astype(np.int32)
    x = (mu[y] + rng.standard_normal((N, D))).astype(np.float32)
    xt = (mu[yt] + rng.standard_normal((NT, D))).astype(np.float32)
    cfg = config_lib.Config(label_set="sym", noise_rate=0.4, method="sop", arch="mlp", epochs=2, batch_size=32,
                            lr=0.05, lr_u=10.0, lr_v=10.0, init_std=0.1, augment=False, eval_subset=64)
    return cfg, arrays_lib.Arrays(x, noise.make_label_set("sym", y, K, 0.4, seed=0), xt, yt, K)


def epochs(cfg, arrays, mesh):
    """2 epochs of fit_lib.train_epoch under ``mesh``; returns (state, epoch metrics, compiled step text)."""
    with parallel.data_parallel(mesh):
        state = tstate.create_train_state(cfg, BNNet(), arrays.x_train, N, K, N // cfg.batch_size)
        state = parallel.place_state(state, N)
        _, data = fit_lib.device_arrays(arrays)
        hlo = (
            step_lib.device_step.lower(state, data[1][: cfg.batch_size] * 0, data, step_lib.StepSpec.from_config(cfg))
            .compile()
            .as_text()
        )
        run = types.SimpleNamespace(last_epoch=None, path="(no run directory)")
        ms = []
        for e in range(cfg.epochs):
            state, m = fit_lib.train_epoch(state, e, data, cfg, log_every=4, run=run)
            ms.append([m["train_loss"], m["train_ce"], m["train_mse"], m["train_acc"]])
    return state, np.array(ms), hlo


def flat(state):
    host = parallel.to_host({"params": state.params, "batch_stats": state.batch_stats,
                             "sample_stats": state.sample_stats})
    return {"/".join(str(getattr(k, "key", k)) for k in p): v for p, v in jax.tree_util.tree_leaves_with_path(host)}


def main(out, workdir):
    cfg, arrays = problem()
    n = jax.device_count()
    one, m1, _ = epochs(cfg, arrays, parallel.make_mesh(jax.devices()[:1]))
    many, mn, hlo = epochs(cfg, arrays, parallel.make_mesh())
    res = {"n_devices": np.array(n), "metrics_1": m1, "metrics_n": mn,
           "u_rows_per_device": np.array(many.params["u"].addressable_shards[0].data.shape[0]),
           "issue_rows_per_device": np.array(many.sample_stats["issue_sum"].addressable_shards[0].data.shape[0]),
           "one_probs": predict.evaluate(one, jax.device_put(arrays.x_train), np.arange(N)),
           "net_rows_per_device": np.array(many.params["net"]["Dense_0"]["kernel"].addressable_shards[0].data.shape[0]),
           "step_all_reduces": np.array(hlo.count("all-reduce(")),
           "step_per_device_batch": np.array(f"f32[{cfg.batch_size // n},16]" in hlo)}
    res.update({"one/" + k: v for k, v in flat(one).items()})
    res.update({"many/" + k: v for k, v in flat(many).items()})
    with parallel.data_parallel():  # through fit: stop after epoch 1, resume from the sharded checkpoint
        assert fit_lib.fit(cfg, arrays, workdir, model=BNNet(), progress=False, stop_after_epochs=1) is None
        summary = fit_lib.fit(cfg, arrays, workdir, model=BNNet(), progress=False)
    res["fit_score"] = np.load(os.path.join(workdir, "noise_scores.npz"))["score"]
    res["given"] = arrays.labels.noisy
    assert summary["epochs"] == cfg.epochs
    np.savez(out, **res)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
