"""Mixed precision (``Config.dtype = "bfloat16"``): bf16 convolutions and matmuls; float32
params, tables u, v, BatchNorm statistics and SOP loss; and a bf16 run still trains."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sopjax import configs as config_lib
from sopjax.core import losses
from sopjax.pp import augment as pipeline
from sopjax.trainers import state as tstate
from sopjax.trainers import step as step_lib


def _cfg(**kw):
    base = dict(label_set="sym", noise_rate=0.2, method="sop", arch="mlp", width=0.25, epochs=4, batch_size=32,
                lr=0.05, lr_u=1.0, lr_v=1.0, init_std=0.1, augment=False, dtype="bfloat16")
    return config_lib.Config(**{**base, **kw})


def _eqns(jaxpr):
    """Every equation of ``jaxpr``, inside nested jaxprs (jit, custom_jvp, …) too."""
    for e in jaxpr.eqns:
        yield e
        for p in e.params.values():
            for sub in (p if isinstance(p, (list, tuple)) else [p]):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    yield from _eqns(inner)


def _resnet_step(dtype):
    """A 1/16-width authors' PreActResNet18 on 8×8 uint8 images: (cfg, state, ready batch),
    as shapes and dtypes only (tracing is all these tests need; running bf16 ops one by
    one outside jit is slow on the CPU)."""
    cfg = _cfg(arch="preact_resnet18", width=0.0625, augment=True, dtype=dtype)
    x = jax.ShapeDtypeStruct((64, 8, 8, 3), jnp.uint8)
    y = jax.ShapeDtypeStruct((64,), jnp.int32)
    state = jax.eval_shape(lambda x: tstate.create_train_state(cfg, tstate.build_model(cfg, 10), x, 64, 10, 2), x)
    batch = jax.eval_shape(
        lambda s, x, y: step_lib.gather_batch(
            s, jnp.arange(32, dtype=jnp.int32), (x, y), step_lib.StepSpec.from_config(cfg)
        ),
        state,
        x,
        y,
    )
    return cfg, state, batch


def test_bf16_step_convolves_in_bf16_and_keeps_params_tables_stats_and_loss_float32():
    cfg, state, batch = _resnet_step("bfloat16")
    eqns = list(
        _eqns(
            jax.make_jaxpr(step_lib.train_step, static_argnums=2)(
                state, batch, step_lib.StepSpec.from_config(cfg)
            ).jaxpr
        )
    )
    heavy = [e for e in eqns if e.primitive.name in ("conv_general_dilated", "dot_general")]
    assert {e.primitive.name for e in heavy} == {"conv_general_dilated", "dot_general"}
    # forward and backward convolutions and matmuls all read bf16 operands
    assert all(v.aval.dtype == jnp.bfloat16 for e in heavy for v in e.invars), \
        sorted({(e.primitive.name, str(v.aval.dtype)) for e in heavy for v in e.invars})
    # every log and exp (softmax, the SOP loss's log p̂) runs in float32
    transc = [e for e in eqns if e.primitive.name in ("log", "exp")]
    assert transc and all(v.aval.dtype == jnp.float32 for e in transc for v in e.outvars)
    new, m = jax.eval_shape(lambda s, b: step_lib.train_step(s, b, step_lib.StepSpec.from_config(cfg)), state, batch)
    for tree in (new.params, new.batch_stats, new.opt_state):
        assert all(l.dtype in (jnp.float32, jnp.int32) for l in jax.tree.leaves(tree))
    assert m["loss"].dtype == jnp.float32


def test_float32_config_has_no_bf16_anywhere_in_the_step():
    cfg, state, batch = _resnet_step("float32")
    eqns = _eqns(
        jax.make_jaxpr(step_lib.train_step, static_argnums=2)(state, batch, step_lib.StepSpec.from_config(cfg)).jaxpr
    )
    assert not any(v.aval.dtype == jnp.bfloat16 for e in eqns for v in (*e.invars, *e.outvars)
                   if hasattr(v, "aval") and hasattr(v.aval, "dtype"))


def _sop_reference(logits, labels, u, v, eps=losses.EPS):
    """The reference SOP loss in float64 numpy (losses.sop_loss's formula)."""
    z = np.asarray(logits, np.float64)
    K = z.shape[1]
    y = np.eye(K)[labels]
    U2, V2 = np.clip(u.astype(np.float64) ** 2 * y, 0, 1), np.clip(v.astype(np.float64) ** 2 * (1 - y), 0, 1)
    p = np.exp(z - z.max(1, keepdims=True))
    pred = np.maximum(p / p.sum(1, keepdims=True) + U2 - V2, eps)
    pred = np.clip(pred / np.maximum(pred.sum(1, keepdims=True), eps), eps, 1)
    hard = np.eye(K)[z.argmax(1)]
    return -np.mean(np.sum(y * np.log(pred), 1)) + np.sum((hard + U2 - V2 - y) ** 2) / len(z)


def _clusters(n=512, d=30, K=10):
    rng = np.random.default_rng(0)
    mu = rng.standard_normal((K, d)) * 1.5
    y = rng.integers(0, K, n).astype(np.int32)
    return (mu[y] + rng.standard_normal((n, d))).astype(np.float32), y


def test_sop_loss_of_a_bf16_network_is_computed_in_float32():
    x, y = _clusters(64)
    cfg = _cfg(init_std=0.5)
    state = tstate.create_train_state(cfg, tstate.build_model(cfg, 10), x, 64, 10, 2)
    batch = step_lib.gather_batch(state, jnp.arange(32, dtype=jnp.int32), (jnp.asarray(x), jnp.asarray(y)),
                                 step_lib.StepSpec.from_config(cfg))
    loss, (logits, _, _) = jax.jit(step_lib.loss_fn, static_argnums=3)(
        state.params, state, batch, step_lib.StepSpec.from_config(cfg)
    )
    assert logits.dtype == jnp.float32 and loss.dtype == jnp.float32
    idx = np.asarray(batch["idx"])
    ref = _sop_reference(logits, np.asarray(batch["y"]), np.asarray(state.params["u"])[idx],
                         np.asarray(state.params["v"])[idx])
    # bf16 arithmetic (8-bit mantissa) would be off by ~1e-3 relative; float32 by ~1e-7
    assert float(loss) == pytest.approx(ref, rel=2e-6)


def test_bf16_run_trains_and_its_loss_falls():
    x, y = _clusters()
    cfg = _cfg()
    state = tstate.create_train_state(cfg, tstate.build_model(cfg, 10), x, 512, 10, 16)
    data, losses_per_epoch = (jnp.asarray(x), jnp.asarray(y)), []
    for epoch in range(cfg.epochs):
        ms = []
        for idx in np.asarray(pipeline.epoch_batches(state.rng, epoch, 512, cfg.batch_size)):
            state, m = step_lib.device_step(state, jnp.asarray(idx), data, step_lib.StepSpec.from_config(cfg))
            ms.append(float(m["loss"]))
        losses_per_epoch.append(np.mean(ms))
    assert all(np.isfinite(losses_per_epoch))
    assert losses_per_epoch[-1] < 0.5 * losses_per_epoch[0], losses_per_epoch
    assert state.params["u"].dtype == state.params["v"].dtype == jnp.float32


def test_unknown_dtype_is_refused_naming_the_flag():
    with pytest.raises(ValueError, match="--dtype"):
        dataclasses.replace(_cfg(), dtype="float16").validate()
