"""The training step: a pure update on a ready batch, and the jitted, donated update that
gathers and augments the batch on the device.

Design (flax ``examples/imagenet``, big_vision, airbench): :func:`train_step` is pure and
takes a ready batch (what the parity tests feed); :func:`device_step` gathers the batch from
the on-device training set and augments it from the step's key (:func:`step_key`). The step reads only
a small static :class:`StepSpec`, never the whole Config, so changing an epoch count or a
path does not recompile it.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

from sopjax.configs import Config
from sopjax.core import methods, tables
from sopjax.core import rng as streams
from sopjax.core.state import TrainState
from sopjax.evaluators.predict import normalize
from sopjax.infra import parallel
from sopjax.pp import augment as pp


@dataclasses.dataclass(frozen=True)
class StepSpec:
    """What the step does, and nothing else (hashable: the jitted step's static argument).

    method: a registered method name (:mod:`sopjax.core.methods`). augment: random crop and
    flip of uint8 images (the weak view). sop_variant, lambda_c, lambda_b: the SOP/SOP+ loss
    settings (:mod:`sopjax.core.losses`). The network's compute dtype lives in the model.
    """

    method: str = "sop"
    augment: bool = True
    sop_variant: str = "reference"
    lambda_c: float = 0.9
    lambda_b: float = 0.1

    @classmethod
    def from_config(cls, cfg: Config) -> "StepSpec":
        return cls(cfg.method, cfg.augment, cfg.sop_variant, cfg.lambda_c, cfg.lambda_b)


def _forward(state: TrainState, net_params, x):
    """Training-mode forward: (logits (B, K), new batch_stats)."""
    if not state.batch_stats:
        return state.apply_fn({"params": net_params}, x, train=True), state.batch_stats
    logits, new = state.apply_fn({"params": net_params, "batch_stats": state.batch_stats}, x,
                                 train=True, mutable=["batch_stats"])
    return logits, new["batch_stats"]


def loss_fn(params, state: TrainState, batch: dict, spec: StepSpec):
    """Batch-mean training loss of ``spec.method``; returns (loss, (logits, batch_stats, aux)).

    A method with a strong view runs one forward pass over ``[x; x_strong]`` (2B images, so
    BatchNorm's batch statistics cover both views, as in the authors' SOP+ trainer) and
    its loss sees the weak half's logits and the strong half's.
    """
    method = methods.get(spec.method)
    x = jnp.concatenate([batch["x"], batch["x_strong"]]) if method.strong_view else batch["x"]
    out, new_stats = _forward(state, params["net"], x)
    logits, strong = jnp.split(out, 2) if method.strong_view else (out, None)
    with jax.named_scope("tables"):  # named scopes label the ops in profiles (benchmarks/step_profile.py)
        rows = {"u": params["u"][batch["idx"]], "v": params["v"][batch["idx"]]} if method.tables else None
    with jax.named_scope("loss"):
        loss, aux = method.loss(logits, batch["y"], rows, strong, spec)
    return loss, (logits, new_stats, aux)


def train_step(state: TrainState, batch: dict, spec: StepSpec):
    """One update on a ready batch. Pure (jit it, or call :func:`device_step`).

    batch: {"x": (B, …) float32 network input, "y": (B,) int32 given labels, "idx": (B,)
    int32 dataset positions (rows of u, v)}; a method with a strong view adds "x_strong"
    (B, …) float32. Returns (new state, metrics): the batch-mean loss, the method's aux
    terms, and acc against the given labels. A state with ``sample_stats`` also adds the
    batch's label-issue terms (:func:`sopjax.core.tables.accumulate_issue`).
    """
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    (loss, (logits, new_stats, aux)), grads = grad_fn(state.params, state, batch, spec)
    sample_stats = state.sample_stats
    if sample_stats:  # the label-issue score's running sums, from the rows before this update
        sample_stats = tables.accumulate_issue(sample_stats, state.step, batch["idx"],
                                               state.params["u"][batch["idx"]], logits, batch["y"])
    with jax.named_scope("optimizer"):
        state = state.apply_gradients(grads=grads, batch_stats=new_stats, sample_stats=sample_stats)
    metrics = {"loss": loss, "acc": jnp.mean(jnp.argmax(logits, -1) == batch["y"]), **aux}
    return state, metrics


def step_key(state: TrainState):
    """The key of the state's current step: ``fold_in(fold_in(rng, AUGMENT), step)`` (:mod:`sopjax.core.rng`)."""
    return jax.random.fold_in(jax.random.fold_in(state.rng, streams.AUGMENT), state.step)


def build_batch(state: TrainState, raw, y, idx, spec: StepSpec, weak_augment: bool) -> dict:
    """The batch of :func:`train_step` from raw rows (B, …) (uint8 images or float features),
    their given labels y (B,) and dataset positions idx (B,).

    ``weak_augment``: crop and flip (B, H, W, C) rows from the step's key (:func:`step_key`).
    A method with a strong view adds "x_strong": :func:`sopjax.pp.autoaugment.strong_view`
    of the same raw uint8 images (AutoAugment, its own crop and flip, normalize with
    ``state.norm["strong_mean"/"strong_std"]``, Cutout 16) from that key folded with
    :data:`~sopjax.core.rng.STRONG_VIEW`; float inputs have none and are used as they are.
    """
    key = step_key(state)
    images = raw.dtype == jnp.uint8 and raw.ndim == 4
    x = pp.augment(key, raw) if weak_augment and raw.ndim == 4 else raw
    batch = {"x": normalize(state, x), "y": y, "idx": idx}
    if methods.get(spec.method).strong_view:
        batch["x_strong"] = _strong_view(jax.random.fold_in(key, streams.STRONG_VIEW), raw, state) if images \
            else normalize(state, raw)
    return batch


def _strong_view(key, raw, state: TrainState):
    from sopjax.pp import autoaugment  # dm-pix: needed by strong-view methods only

    # The authors' CIFAR-100 loader normalizes this view with CIFAR-10's constants (docs/presets.md).
    return autoaugment.strong_view(key, raw, state.norm["strong_mean"], state.norm["strong_std"])


def gather_batch(state: TrainState, idx, data, spec: StepSpec) -> dict:
    """Rows ``idx`` (B,) int32 of the on-device ``data = (x (N, …), y (N,))`` as a batch
    (:func:`build_batch`, weak augmentation when ``spec.augment``)."""
    x_all, y_all = data
    idx = parallel.shard_batch(idx)  # data parallel under a mesh (sopjax.infra.parallel)
    with jax.named_scope("input"):
        return build_batch(state, x_all[idx], y_all[idx], idx, spec, spec.augment)


@functools.partial(jax.jit, static_argnames=("spec",), donate_argnums=(0,))
def device_step(state: TrainState, idx, data, spec: StepSpec):
    """The jitted, donated training update: :func:`gather_batch` then :func:`train_step`."""
    return train_step(state, gather_batch(state, idx, data, spec), spec)
