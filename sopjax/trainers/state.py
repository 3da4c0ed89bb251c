"""A run's model, optimizer, learning-rate schedules and initial state, built from its Config."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from sopjax import models
from sopjax.configs import Config
from sopjax.core import methods
from sopjax.core.optim import sop_optimizer, table_lr
from sopjax.core.state import TrainState
from sopjax.core.tables import NEVER, init_sample_stats, init_tables
from sopjax.data import constants
from sopjax.evaluators import neural_collapse
from sopjax.infra import extras, memory
from sopjax.models import contract
from sopjax.pp.augment import preprocess


def lr_schedule(cfg: Config, steps_per_epoch: int) -> optax.Schedule:
    """The network's learning rate per *step*: cosine from ``lr`` to ``lr_min`` over all steps;
    ``cosine_epoch``, PyTorch's ``CosineAnnealingLR(T_max=epochs, eta_min=lr_min)`` stepped once
    per epoch (the authors' trainer); or ×0.1 at each epoch in ``milestones`` (``multistep``)."""
    total = cfg.epochs * steps_per_epoch
    if cfg.schedule == "cosine":
        return optax.cosine_decay_schedule(cfg.lr, decay_steps=max(total, 1), alpha=cfg.lr_min / cfg.lr)
    if cfg.schedule == "cosine_epoch":
        def per_epoch(step):
            e = jnp.minimum(step // steps_per_epoch, cfg.epochs)
            return cfg.lr_min + (cfg.lr - cfg.lr_min) * 0.5 * (1.0 + jnp.cos(jnp.pi * e / cfg.epochs))
        return per_epoch
    return optax.piecewise_constant_schedule(cfg.lr, {int(m) * steps_per_epoch: 0.1 for m in cfg.milestones})


def make_optimizer(cfg: Config, steps_per_epoch: int) -> optax.GradientTransformation:
    """The run's one optimizer (the authors' ``train.py``): the network gets SGD with momentum
    and the scheduled lr, weight decay added to the gradient (PyTorch's coupled
    ``SGD(weight_decay=…)``); u, v get plain SGD at ``lr_u``/``lr_v``, held at 0 for
    ``uv_warmup_epochs`` (rounded to whole steps) (:func:`sopjax.core.optim.sop_optimizer`)."""
    warmup = int(round(cfg.uv_warmup_epochs * steps_per_epoch))
    net = optax.chain(optax.add_decayed_weights(cfg.weight_decay),
                      optax.sgd(lr_schedule(cfg, steps_per_epoch), momentum=cfg.momentum))
    return sop_optimizer(net, table_lr(cfg.lr_u, warmup), table_lr(cfg.lr_v, warmup))


def check_installed(cfg: Config) -> None:
    """Raise :class:`~sopjax.infra.extras.MissingExtra` (one line naming ``pip install
    'sopjax[plus]'``) when ``cfg.method`` needs a strong view and dm-pix is not installed;
    called before any data is read or file written."""
    if methods.get(cfg.method).strong_view:
        extras.require("dm_pix", f"--method {cfg.method} (its AutoAugment view)")


def build_model(cfg: Config, num_classes: int):
    """The network of ``cfg``: ``cfg.arch`` at ``cfg.width``, computing in ``cfg.dtype``
    (convolutions and matmuls; params stay float32, logits are returned as float32)."""
    return models.make_model(cfg.arch, num_classes, cfg.width, dtype=jnp.dtype(cfg.dtype))


def strong_norm(cfg: Config, weak: tuple) -> dict:
    """{"strong_mean", "strong_std"} float32 (C,) that normalize SOP+'s strong view: for CIFAR the
    authors' loaders' (:func:`sopjax.data.constants.strong_view_stats`: CIFAR-10's constants for
    CIFAR-100 too, a per-channel input scale 1.29–1.37× the weak view's); with ``strong_view_norm``
    "weak", or for another dataset, the weak view's own ``weak`` (mean, std)."""
    authors = cfg.strong_view_norm == "authors" and cfg.dataset in constants.DATASETS
    mean, std = constants.strong_view_stats(cfg.dataset) if authors else weak
    return {"strong_mean": jnp.asarray(mean), "strong_std": jnp.asarray(std)}


def create_train_state(cfg: Config, model, example_x, num_train: int, num_classes: int,
                       steps_per_epoch: int, norm: tuple | None = None) -> TrainState:
    """Initialise from ``cfg.seed``: the network, and for a method with tables ``u`` (N, 1),
    ``v`` (N, K) float32 from N(0, init_std²) (:func:`sopjax.core.tables.init_tables`); the
    input normalization of both views (:func:`strong_norm`) rides in ``state.norm``; the
    zeroed sums of the label-issue score in ``sample_stats`` ({} without tables).

    example_x: at least one training input (uint8 image or float feature row).
    norm: (mean, std) of the input normalization (:func:`sopjax.data.constants.input_stats`);
    default the constants of ``cfg.dataset``.

    Raises ValueError when ``model`` breaks the contract of :mod:`sopjax.models.contract`, and
    MissingExtra when the method needs an optional package that is not installed.
    """
    check_installed(cfg)
    k_init, k_tables, k_run = jax.random.split(jax.random.PRNGKey(cfg.seed), 3)
    mean, std = norm if norm is not None else constants.normalization_stats(cfg.dataset)
    norm = {"mean": jnp.asarray(mean), "std": jnp.asarray(std), **strong_norm(cfg, (mean, std))}
    x = preprocess(jnp.asarray(example_x[:1]), norm["mean"], norm["std"])
    variables = contract.init_checked(model, k_init, x, num_classes)
    jax.eval_shape(lambda v: neural_collapse.last_layer(model.apply, v, x), variables)  # rule 5: a Dense head
    params, stats = {"net": variables["params"]}, {}
    if methods.get(cfg.method).tables:
        params.update(init_tables(k_tables, num_train, num_classes, cfg.init_std))
        stats = init_sample_stats(num_train, table_start_step(cfg, steps_per_epoch))
    return TrainState.create(apply_fn=model.apply, params=params, tx=make_optimizer(cfg, steps_per_epoch),
                             batch_stats=variables.get("batch_stats", {}), rng=k_run, norm=norm, sample_stats=stats)


def table_start_step(cfg: Config, steps_per_epoch: int) -> int:
    """The first optimizer step with lr_u > 0 (the end of ``uv_warmup_epochs``, rounded to
    whole steps as :func:`make_optimizer` does); :data:`~sopjax.core.tables.NEVER` when lr_u is 0."""
    return int(round(cfg.uv_warmup_epochs * steps_per_epoch)) if cfg.lr_u > 0 else NEVER


def memory_estimate(cfg: Config, size: int, host_batches: int) -> tuple[float, float]:
    """A lower bound, in bytes, of what training at ``size`` × ``size`` pixels takes: (host:
    ``host_batches`` decoded uint8 batches in flight, e.g. one per loader worker plus two;
    device: the float32 batch and the first layer, i.e. the first convolution's activations
    and their gradient, or the MLP's first weight matrix with its gradient and momentum).
    Deeper layers add more."""
    b, pixels = cfg.batch_size, float(size) * size
    host = host_batches * b * pixels * 3
    if cfg.arch == "mlp":
        first = 3 * pixels * 3 * max(8, int(512 * cfg.width)) * 4
    else:
        first = 2 * b * pixels * max(4, int(round(64 * cfg.width))) * 4
    return host, b * pixels * 3 * 4 + first


def check_memory(cfg: Config, size: int, host_batches: int) -> None:
    """Raise :class:`sopjax.infra.memory.TooLarge` (a ValueError) when :func:`memory_estimate`
    exceeds the memory available (host and device together on a CPU)."""
    host, dev = memory_estimate(cfg, size, host_batches)
    what = f"training {cfg.arch} on {size}x{size} images in batches of {cfg.batch_size}"
    fix = "lower --image-size or --batch-size"
    if jax.default_backend() == "cpu":
        memory.check_fits(host + dev, what, fix)
    else:
        memory.check_fits(host, what + " (host batches)", fix)
        memory.check_fits(dev, what, fix, device=True)
