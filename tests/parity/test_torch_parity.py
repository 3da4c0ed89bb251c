"""Step-level parity with PyTorch: sopjax's train_step vs a PyTorch twin of the authors' training.

Both start from the same weights (Flax init copied into the twin) and take the same 20
pre-augmented batches. What this pins, each of which a port silently drifts on:
PyTorch's SGD (weight decay added to the gradient before momentum, no dampening), its
BatchNorm (momentum 0.1 on the new batch, unbiased variance in the running estimate), the
authors' PreActResNet18 (shortcut from relu(bn1(x))), CosineAnnealingLR stepped per
epoch, the SOP loss (stop-gradient on V² in p̂) and SOP+ (one forward over [weak; strong],
KL(sg(p_weak) ‖ p_strong), balance on p̂).
Tolerances: per-step loss rel ≤ 1e-4; final params, batch stats, u, v rel ≤ 1e-3 (‖a − b‖/‖b‖).

Sizes are small on purpose: besides speed, every pre-ReLU value within float32 round-off
(~1e-7) of 0 can take the other side of the ReLU in the other framework, and such a flip,
amplified by 20 steps of training, exceeds the tolerance. With 16×16 images such flips
occurred in 2 of 3 SOP+ runs; at 8×8 (a quarter of the activations) none did for
DATA_SEED below. A failure after a jax/torch upgrade that shows a sudden jump in the
per-step loss error (not a drift from step 0) is such a flip: try another DATA_SEED.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax.traverse_util import flatten_dict

from benchmarks import torch_twin
from sopjax import configs as config_lib
from sopjax import models
from sopjax.trainers import state as tstate
from sopjax.trainers import step as step_lib

K, N, B, HW, STEPS, EPOCHS = 10, 32, 8, 8, 20, 5   # 4 steps per epoch
WIDTH = 0.0625                                      # channels 4-8-16-32
# lr and wd large enough that a decoupled decay or a wrong schedule moves the weights by ≫ 1e-3
CFG = config_lib.Config(dataset="cifar10", label_set="clean", arch="preact_resnet18", width=WIDTH, epochs=EPOCHS,
                    batch_size=B, lr=0.01, momentum=0.9, weight_decay=0.05, schedule="cosine_epoch", lr_min=0.001,
                    lr_u=10.0, lr_v=10.0, init_std=1e-3, augment=False, lambda_c=0.9, lambda_b=0.1, seed=3)


DATA_SEED = 1


def _batches():
    rng = np.random.default_rng(DATA_SEED)
    y_all = rng.integers(0, K, N).astype(np.int32)
    idx = np.concatenate([rng.permutation(N) for _ in range(EPOCHS)]).reshape(STEPS, B).astype(np.int32)
    x = rng.normal(size=(STEPS, B, HW, HW, 3)).astype(np.float32)
    x_strong = (x + rng.normal(size=x.shape)).astype(np.float32)  # a different view of the same images
    return [{"x": x[t], "x_strong": x_strong[t], "y": y_all[idx[t]], "idx": idx[t]} for t in range(STEPS)]


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30)


# XLA's CPU backend at optimization level 0 compiles the step ~3× faster; the ops (and so
# the float32 arithmetic compared here) are the same, only their fusion and codegen differ.
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def _run_both(method):
    cfg = dataclasses.replace(CFG, method=method)
    model = models.make_model(cfg.arch, K, cfg.width)
    with jax.threefry_partitionable(False):  # ~2× faster init compile; any initial weights will do
        state = tstate.create_train_state(cfg, model, np.zeros((1, HW, HW, 3), np.float32), N, K, N // B)
    torch.manual_seed(0)
    net = torch_twin.PreActResNet18(K, WIDTH)
    torch_twin.load_flax(net, state.params["net"], state.batch_stats)
    twin = torch_twin.Twin(net, N, K, cfg.lr, cfg.weight_decay, cfg.lr_u, cfg.lr_v, cfg.epochs, cfg.lr_min)
    if method != "ce":
        with torch.no_grad():
            twin.u.copy_(torch.from_numpy(np.asarray(state.params["u"])))
            twin.v.copy_(torch.from_numpy(np.asarray(state.params["v"])))
    jax_losses, torch_losses, step = [], [], None
    for t, b in enumerate(_batches()):
        batch = {k: jnp.asarray(v) for k, v in b.items() if method == "sop_plus" or k != "x_strong"}
        if step is None:
            lowered = jax.jit(step_lib.train_step, static_argnames="spec").lower(
                state, batch, spec=step_lib.StepSpec.from_config(cfg)
            )
            step = lowered.compile(compiler_options=FAST_COMPILE)
        state, m = step(state, batch)
        jax_losses.append(float(m["loss"]))
        nchw = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2)))
        torch_losses.append(twin.step(method, nchw(b["x"]), torch.from_numpy(b["y"]).long(),
                                      torch.from_numpy(b["idx"]).long(), nchw(b["x_strong"]), cfg.lambda_c,
                                      cfg.lambda_b))
        if (t + 1) % (N // B) == 0:
            twin.end_epoch()
    return state, twin, np.array(jax_losses), np.array(torch_losses)


@pytest.fixture(scope="module", params=["ce", "sop", "sop_plus"])
def runs(request):
    return request.param, _run_both(request.param)


def test_per_step_losses_match(runs):
    method, (_, _, jl, tl) = runs
    rel = np.abs(jl - tl) / np.abs(tl)
    assert rel.max() <= 1e-4, f"{method}: step losses differ, worst rel {rel.max():.2e} at step {rel.argmax()}"


def test_final_params_and_batch_stats_match(runs):
    method, (state, twin, _, _) = runs
    params, stats = torch_twin.export_flax(twin.net)
    jp = {"/".join(k): v for k, v in flatten_dict(state.params["net"]).items()}
    js = {"/".join(k): v for k, v in flatten_dict(state.batch_stats).items()}
    assert jp.keys() == params.keys() and js.keys() == stats.keys()
    worst = max((_rel(jp[k], params[k]), k) for k in params)
    assert worst[0] <= 1e-3, f"{method}: param {worst[1]} differs, rel {worst[0]:.2e}"
    worst = max((_rel(js[k], stats[k]), k) for k in stats)
    assert worst[0] <= 1e-3, f"{method}: batch stat {worst[1]} differs, rel {worst[0]:.2e}"


def test_final_u_v_match(runs):
    method, (state, twin, _, _) = runs
    if method == "ce":  # a CE run must not carry (or train) per-sample tables
        assert set(state.params) == {"net"}
        return
    for name in ("u", "v"):
        ours, theirs = np.asarray(state.params[name]), getattr(twin, name).detach().numpy()
        init = CFG.init_std
        assert np.abs(ours).max() > 3 * init, f"{name} never moved: the test would not see a drift"
        assert _rel(ours, theirs) <= 1e-3, f"{method}: {name} differs, rel {_rel(ours, theirs):.2e}"
