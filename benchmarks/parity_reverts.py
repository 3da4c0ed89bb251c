"""Check that tests/parity catches each PyTorch convention: revert one, run the parity tests.

Run (from the repository root):
    PYTHONPATH=. python benchmarks/parity_reverts.py NAME     # exit status 1 = the tests went red

NAME: none (nothing reverted: must pass), bn_momentum (PyTorch's 0.1 read as the weight of
the old statistics), bn_biased_var (flax's BatchNorm: biased running variance),
wd_decoupled (weight decay outside the momentum trace), shortcut_x (He et al.'s identity
shortcut from x), no_sg_v2 (V² not stopped in p̂), kl_reversed (KL(p_strong ‖ sg(p_weak))),
schedule_per_step (cosine per step instead of PyTorch's per-epoch CosineAnnealingLR),
strong_weak_constants (SOP+'s strong view normalized with the weak view's constants),
val_holdout (the validation images held out of training), asym_clean (CIFAR-10 asym flipped
on the clean labels).
Each revert monkeypatches one function in this process, so no source file is edited.
"""
import sys

import jax
import jax.numpy as jnp
import optax
import pytest

from sopjax import models
from sopjax.core import losses, optim
from sopjax.data import arrays, constants, noise
from sopjax.models import layers, resnet
from sopjax.trainers import state as tstate

which = sys.argv[1]
if which == "bn_momentum":      # PyTorch's 0.1 read as the weight of the OLD statistics
    resnet.bn = lambda train_, dtype, name=None: layers.BatchNorm(use_running_average=not train_, momentum=0.9,
                                                                  dtype=dtype, name=name)
elif which == "bn_biased_var":  # flax.linen.BatchNorm: biased variance in the running estimate
    resnet.bn = lambda train_, dtype, name=None: __import__("flax").linen.BatchNorm(
        use_running_average=not train_, momentum=0.9, epsilon=1e-5, dtype=dtype, name=name)
elif which == "wd_decoupled":   # decay outside the momentum trace (SGDW)
    def make_optimizer(cfg, spe):
        net = optax.chain(optax.trace(decay=cfg.momentum), optax.add_decayed_weights(cfg.weight_decay),
                          optax.scale_by_learning_rate(tstate.lr_schedule(cfg, spe)))
        return optim.sop_optimizer(net, cfg.lr_u, cfg.lr_v)
    tstate.make_optimizer = make_optimizer
elif which == "shortcut_x":     # He et al.'s identity shortcut from x
    orig = models.make_model
    models.make_model = lambda arch, K, width=1.0, dtype=jnp.float32: (models.CifarResNet(
        models.PreActBlock, (2, 2, 2, 2), K, width, stem_bn=True, final_bn=False,
        block_kwargs=(("shortcut_from", "x"),)) if arch == "preact_resnet18" else orig(arch, K, width, dtype))
elif which == "no_sg_v2":       # V² not stopped in p̂
    def adjusted_prediction(logits, U2, V2, eps=losses.EPS):
        probs = jax.nn.softmax(logits.astype(jnp.float32))
        pred = jnp.maximum(probs + U2 - V2, eps)
        pred = pred / jnp.maximum(jnp.sum(jnp.abs(pred), axis=-1, keepdims=True), eps)
        return jnp.clip(pred, eps, 1.0)
    losses.adjusted_prediction = adjusted_prediction
elif which == "kl_reversed":    # KL(p_strong ‖ sg(p_weak))
    def consistency_kl(w, s):
        logp, logq = jax.lax.stop_gradient(jax.nn.log_softmax(w)), jax.nn.log_softmax(s)
        return jnp.sum(jnp.exp(logq) * (logq - logp), axis=-1)
    losses.consistency_kl = consistency_kl
elif which == "schedule_per_step":
    cosine = lambda cfg, spe: optax.cosine_decay_schedule(cfg.lr, cfg.epochs * spe, alpha=cfg.lr_min / cfg.lr)
    tstate.lr_schedule = cosine
elif which == "strong_weak_constants":
    def strong_norm(cfg):
        mean, std = constants.normalization_stats(cfg.dataset)
        return {"strong_mean": jnp.asarray(mean), "strong_std": jnp.asarray(std)}
    tstate.strong_norm = strong_norm
elif which == "val_holdout":
    split = arrays.split_validation
    arrays.split_validation = lambda a, size, seed, holdout=False: split(a, size, seed, True)
elif which == "asym_clean":
    noise.asymmetric_cifar10 = noise.asymmetric_cifar10_clean
elif which != "none":
    raise SystemExit(f"unknown revert {which}")
sys.exit(pytest.main(["tests/parity", "-q", "-p", "no:warnings", "-p", "no:cacheprovider"]))
