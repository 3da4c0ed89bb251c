"""Data parity with the PyTorch twin of the authors' loaders (benchmarks/torch_twin.py): each
view's normalization constants, the train/validation split and its labels, and CIFAR-10
asymmetric noise. Each test fails if sopjax goes back to its former behaviour (strong view
with the weak view's constants; 5,000 images held out of training; flips on the clean labels).
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks import torch_twin
from sopjax import configs as config_lib
from sopjax.core import rng as streams
from sopjax.data import arrays as arrays_lib
from sopjax.data import constants, noise
from sopjax.pp import augment as pp
from sopjax.pp import autoaugment
from sopjax.trainers import fit as fit_lib
from sopjax.trainers import state as tstate
from sopjax.trainers import step as step_lib


@pytest.mark.parametrize("dataset", ["cifar10", "cifar100"])
def test_both_views_are_normalized_with_the_authors_constants(dataset):
    K = 10 if dataset == "cifar10" else 100
    cfg = config_lib.Config(dataset=dataset, label_set="clean", method="sop_plus", arch="mlp", width=0.0625)
    raw = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    state = tstate.create_train_state(cfg, tstate.build_model(cfg, K), raw, 4, K, 1)
    idx = jnp.arange(4, dtype=jnp.int32)
    batch = step_lib.build_batch(state, jnp.asarray(raw), idx % K, idx, step_lib.StepSpec.from_config(cfg), True)
    key = step_lib.step_key(state)
    weak = torch_twin.to_tensor_normalize(np.asarray(pp.augment(key, jnp.asarray(raw))), dataset, "weak")
    np.testing.assert_allclose(np.asarray(batch["x"]).transpose(0, 3, 1, 2), weak.numpy(), atol=1e-5)
    # The same augmented pixels, normalized as the authors' strong transform does (Cutout after it).
    mean, std = (np.asarray(v, np.float32) for v in torch_twin.VIEW_STATS[(dataset, "strong")])
    strong = autoaugment.strong_view(jax.random.fold_in(key, streams.STRONG_VIEW), jnp.asarray(raw), mean, std)
    np.testing.assert_allclose(np.asarray(batch["x_strong"]), np.asarray(strong), atol=1e-5)


def _balanced(n_per_class=5000, K=10):
    return np.random.default_rng(1).permutation(np.repeat(np.arange(K, dtype=np.int32), n_per_class))


def _arrays(labels: noise.LabelSet, K: int) -> arrays_lib.Arrays:
    x = np.arange(len(labels.clean), dtype=np.int32)[:, None]  # row i holds i
    return arrays_lib.Arrays(x, labels, x[:10], labels.clean[:10], K)


def test_split_trains_on_every_image_and_validates_on_a_balanced_subset_as_the_authors():
    clean = _balanced()
    labels = noise.make_label_set("sym", clean, 10, 0.4, seed=0)
    cfg = config_lib.Config(dataset="cifar10", label_set="sym", noise_rate=0.4, val_size=5000, batch_size=128)
    ours, spe = fit_lib._prepare(cfg, _arrays(labels, 10))
    train, val = torch_twin.train_val_split(clean, np.random.default_rng(0))
    assert len(ours.x_train) == len(train) == 50_000
    assert spe == len(train) // 128 == 390                # not (50,000 − 5,000) // 128 = 351
    assert len(set(val) - set(train)) == 0
    np.testing.assert_array_equal(ours.x_val[:, 0], ours.val_rows)   # the validation images are training rows
    np.testing.assert_array_equal(np.bincount(clean[ours.val_rows], minlength=10), np.bincount(clean[val]))
    # A synthetic set: the validation rows get their own draw of the noise, as the twin's loader does.
    twin_val_labels = torch_twin.validation_targets(clean[val], False, lambda y: noise.symmetric(y, 0.4, 10, 9))
    for y_val, rows in ((ours.y_val, ours.val_rows), (twin_val_labels, val)):
        assert abs(np.mean(y_val != clean[rows]) - 0.4 * 0.9) < 0.03
    assert np.mean(ours.y_val != labels.noisy[ours.val_rows]) > 0.3   # not the rows' training labels


@pytest.mark.parametrize("name, K", [("worst", 10), ("noisy100", 100)])
def test_cifar_n_validation_labels_are_clean_as_the_authors(name, K):
    clean = _balanced(500, K)
    noisy = (clean + (np.arange(len(clean)) % 3 == 0)) % K
    ours = arrays_lib.split_validation(_arrays(noise.LabelSet(name, noisy, clean, 0), K), 5000, seed=0)
    _, val = torch_twin.train_val_split(clean, np.random.default_rng(0))
    np.testing.assert_array_equal(ours.y_val, torch_twin.validation_targets(clean[ours.val_rows], True, None))
    assert len(ours.x_train) == len(clean) and len(ours.x_val) == len(val)


def test_cifar10_asym_realizes_the_authors_rates():
    clean, pairs = _balanced(), noise.CIFAR10_ASYM
    ours = [noise.make_label_set("asym", clean, 10, 0.4, seed=s) for s in range(5)]
    twin = [noise.LabelSet("asym", torch_twin.asymmetric_noise_cifar10(clean, 0.4, np.random.default_rng(s)), clean, s)
            for s in range(5)]
    ours_rates = [noise.flip_rates(ls, pairs) for ls in ours]
    twin_rates = [noise.flip_rates(ls, pairs) for ls in twin]
    for pair in pairs.items():
        a, b = np.mean([r[pair] for r in ours_rates]), np.mean([r[pair] for r in twin_rates])
        assert abs(a - b) < 0.01, (pair, a, b)
    assert abs(np.mean([ls.realized_rate for ls in ours]) - np.mean([ls.realized_rate for ls in twin])) < 0.002


def test_holdout_is_the_named_option():
    clean = _balanced()
    labels = noise.make_label_set("sym", clean, 10, 0.4, seed=0)
    cfg = config_lib.Config(label_set="sym", noise_rate=0.4, val_size=5000, batch_size=128, val_holdout=True)
    held, spe = fit_lib._prepare(cfg, _arrays(labels, 10))
    assert (len(held.x_train), len(held.x_val), spe, held.val_rows) == (45_000, 5000, 351, None)
    assert not set(held.x_val[:, 0]) & set(held.x_train[:, 0])
    assert dataclasses.replace(cfg, val_holdout=False).validate()


def test_weak_strong_view_norm_is_the_named_option():
    cfg = config_lib.Config(dataset="cifar100", label_set="noisy100", method="sop_plus")
    own = constants.normalization_stats("cifar100")
    authors = tstate.strong_norm(cfg, own)
    weak = tstate.strong_norm(dataclasses.replace(cfg, strong_view_norm="weak"), own)
    mean, std = torch_twin.VIEW_STATS[("cifar100", "strong")]
    np.testing.assert_allclose(np.asarray(authors["strong_mean"]), mean, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(authors["strong_std"]), std, rtol=1e-6)
    mean, std = torch_twin.VIEW_STATS[("cifar100", "weak")]
    np.testing.assert_allclose(np.asarray(weak["strong_mean"]), mean, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(weak["strong_std"]), std, rtol=1e-6)


@pytest.mark.parametrize("noise_kind", ["sym", "asym"])
def test_authors_presets_are_the_readme_recipe_and_paper_presets_table_a1(noise_kind):
    ours = config_lib.PRESETS[f"authors-cifar100-{noise_kind}"]
    paper = config_lib.PRESETS[f"paper-cifar100-{noise_kind}"]
    conf, run = torch_twin.AUTHORS_CIFAR100_CONFIG, torch_twin.AUTHORS_README_RUNS[noise_kind]
    arch = {"PreActResNet18": "preact_resnet18"}[conf["arch"]]
    assert (ours.dataset, ours.method, ours.schedule, ours.arch) == ("cifar100", "sop_plus", "cosine_epoch", arch)
    assert (ours.epochs, ours.batch_size, ours.lr, ours.momentum, ours.weight_decay, ours.lr_min, ours.init_std) == \
        (conf["epochs"], conf["batch_size"], conf["lr"], conf["momentum"], conf["weight_decay"], conf["eta_min"],
         conf["std"]) and conf["T_max"] == ours.epochs
    assert (ours.lambda_c, ours.lambda_b) == (conf["ratio_consistency"], conf["ratio_balance"])
    assert (ours.lr_u, ours.lr_v, ours.noise_rate, ours.label_set) == \
        (run["lr_u"], run["lr_v"], run["percent"], "asym" if run["asym"] else "sym")
    # Table A.1's CIFAR-100 ResNet34 column: plain SOP, 150 epochs, multistep, wd 5e-4, lr_u 1.
    assert (paper.method, paper.arch, paper.epochs, paper.schedule, paper.weight_decay, paper.lr_u) == \
        ("sop", "resnet34", 150, "multistep", 5e-4, 1.0)
