"""Training state, the jitted step, resume, and a method-level SOP-vs-CE check."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sopjax import configs as config_lib
from sopjax import models
from sopjax.core import tables
from sopjax.data import arrays as arrays_lib
from sopjax.data import noise
from sopjax.evaluators import predict
from sopjax.infra import errors
from sopjax.trainers import fit as fit_lib
from sopjax.trainers import state as tstate
from sopjax.trainers import step as step_lib


def synthetic(seed=0, N=2000, Nt=2000, d=30, K=10):
    """Gaussian class clusters: a small classification problem an MLP can memorise."""
    rng = np.random.default_rng(seed)
    mu = rng.standard_normal((K, d)) * 1.2

    def draw(n):
        y = rng.integers(0, K, n)
        return (mu[y] + rng.standard_normal((n, d))).astype(np.float32), y.astype(np.int32)

    (x, y), (xt, yt) = draw(N), draw(Nt)
    return x, y, xt, yt


def small_cfg(**kw):
    base = dict(label_set="sym", noise_rate=0.4, method="sop", arch="mlp", width=0.25, epochs=2, batch_size=32,
                lr=0.05, weight_decay=5e-4, schedule="cosine", lr_u=10.0, lr_v=10.0, augment=False,
                eval_subset=64, init_std=0.1)
    base.update(kw)
    return config_lib.Config(**base)


def build(cfg, x, y, K=10):
    model = models.make_model(cfg.arch, K, cfg.width)
    state = tstate.create_train_state(cfg, model, x, len(x), K, len(x) // cfg.batch_size)
    step = lambda s, idx, data: step_lib.device_step(s, idx, data, step_lib.StepSpec.from_config(cfg))
    return state, step, (jnp.asarray(x), jnp.asarray(y))


def test_one_step_touches_only_batch_rows_and_tables_have_no_momentum():
    x, y, _, _ = synthetic(N=256)
    cfg = small_cfg()
    state, step, data = build(cfg, x, y)
    u0, v0 = np.asarray(state.params["u"]), np.asarray(state.params["v"])
    net0 = jax.tree.map(np.asarray, state.params["net"])
    perm = np.random.default_rng(0).permutation(256).astype(np.int32)
    first, second = perm[:32], perm[32:64]
    state, m = step(state, jnp.asarray(first), data)
    changed_u = np.flatnonzero(np.any(np.asarray(state.params["u"]) != u0, axis=1))
    changed_v = np.flatnonzero(np.any(np.asarray(state.params["v"]) != v0, axis=1))
    assert set(changed_u) <= set(first) and set(changed_v) <= set(first)
    assert len(changed_v) == 32  # every batch row of v moved
    assert all(np.any(a != b) for a, b in zip(jax.tree.leaves(state.params["net"]), jax.tree.leaves(net0)))
    assert int(state.step) == 1 and np.isfinite(float(m["loss"]))
    # A second step on other rows leaves the first batch's rows where they were: the tables
    # get plain SGD (momentum or weight decay on u, v would move every row).
    v1 = np.asarray(state.params["v"])
    state, _ = step(state, jnp.asarray(second), data)
    np.testing.assert_array_equal(np.asarray(state.params["v"])[first], v1[first])


def test_network_weight_decay_and_momentum_follow_pytorch_sgd():
    x, y, _, _ = synthetic(N=64)
    cfg = small_cfg(method="ce", batch_size=64, schedule="multistep", milestones=(100,), weight_decay=0.1)
    state, _, _ = build(cfg, x, y)
    g = jax.tree.map(jnp.ones_like, state.params)
    w0 = jax.tree.map(np.asarray, state.params["net"])
    s1 = state.apply_gradients(grads=g)
    s2 = s1.apply_gradients(grads=g)
    for a, b, c in zip(jax.tree.leaves(w0), jax.tree.leaves(s1.params["net"]), jax.tree.leaves(s2.params["net"])):
        buf1 = 1.0 + 0.1 * a                      # d_p = g + wd·w ; buf = d_p on the first step
        np.testing.assert_allclose(b, a - cfg.lr * buf1, rtol=1e-5, atol=1e-7)
        buf2 = cfg.momentum * buf1 + (1.0 + 0.1 * b)  # buf = μ·buf + d_p (no dampening)
        np.testing.assert_allclose(c, b - cfg.lr * buf2, rtol=1e-5, atol=1e-7)


def test_multistep_schedule_decays_tenfold_at_each_milestone():
    cfg = small_cfg(schedule="multistep", milestones=(2, 4), lr=0.5, epochs=6)
    sched = tstate.lr_schedule(cfg, steps_per_epoch=10)
    np.testing.assert_allclose([float(sched(s)) for s in (0, 19, 20, 39, 40, 59)],
                               [0.5, 0.5, 0.05, 0.05, 0.005, 0.005], rtol=1e-6)
    cos = tstate.lr_schedule(dataclasses.replace(cfg, schedule="cosine"), steps_per_epoch=10)
    assert float(cos(0)) == 0.5 and float(cos(30)) == pytest.approx(0.25) and float(cos(60)) == pytest.approx(0.0)


def test_images_are_normalized_with_the_datasets_loader_constants():
    from sopjax.data import constants as datasets_constants
    from sopjax.evaluators import predict

    x = np.random.default_rng(0).integers(0, 256, (8, 8, 8, 3), dtype=np.uint8)
    for dataset in ("cifar10", "cifar100"):
        cfg = small_cfg(method="ce", dataset=dataset, label_set="clean", noise_rate=0.0)
        state, _, data = build(cfg, x, np.zeros(8, np.int32))
        mean, std = datasets_constants.normalization_stats(dataset)
        direct = jax.nn.softmax(
            state.apply_fn(
                {"params": state.params["net"]}, jnp.asarray((x / 255.0 - mean) / std, jnp.float32), train=False
            )
        )
        np.testing.assert_allclose(
            predict.evaluate(state, data[0], np.arange(8)), np.asarray(direct), rtol=1e-5, atol=1e-6
        )


def test_u_v_are_indexed_by_dataset_position_not_batch_position():
    x, y, _, _ = synthetic(N=256)
    cfg = small_cfg()
    rng = np.random.default_rng(1)
    batches = [rng.choice(256, 32, replace=False).astype(np.int32) for _ in range(6)]
    state, step, data = build(cfg, x, y)
    for b in batches:
        state, _ = step(state, jnp.asarray(b), data)
    # Same run on a shuffled copy of the dataset, tables and indices permuted together.
    pi = rng.permutation(256)
    inv = np.argsort(pi)
    init = build(cfg, x, y)[0].params
    state2, step2, data2 = build(cfg, x[pi], y[pi])
    state2 = state2.replace(params={**state2.params, "u": init["u"][pi], "v": init["v"][pi]})
    for b in batches:
        state2, _ = step2(state2, jnp.asarray(inv[b].astype(np.int32)), data2)
    np.testing.assert_allclose(np.asarray(state2.params["u"]), np.asarray(state.params["u"])[pi], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.asarray(state2.params["v"]), np.asarray(state.params["v"])[pi], rtol=1e-5, atol=1e-7)
    # and the per-sample tables really differ between samples (the check is not vacuous)
    assert np.std(np.asarray(state.params["v"])) > 1e-3


def test_evaluate_matches_a_direct_forward_and_drops_padding():
    x, y, _, _ = synthetic(N=64)
    cfg = small_cfg(method="ce")
    state, _, data = build(cfg, x, y)
    idx = np.array([5, 1, 9, 40, 3, 60, 7], dtype=np.int32)  # 7 rows in chunks of 3: the last is padded
    probs = predict.evaluate(state, data[0], idx, batch=3)
    direct = jax.nn.softmax(state.apply_fn({"params": state.params["net"]}, jnp.asarray(x[idx]), train=False))
    assert probs.shape == (7, 10)
    np.testing.assert_allclose(probs, np.asarray(direct), rtol=1e-5, atol=1e-6)


def _arrays(N=256):
    x, y, xt, yt = synthetic(N=N, Nt=200)
    return arrays_lib.Arrays(x, noise.make_label_set("sym", y, 10, 0.4, seed=0), xt, yt, 10)


def test_resume_is_identical_to_an_uninterrupted_run(tmp_path):
    arrays, cfg = _arrays(), small_cfg()
    full = fit_lib.fit(cfg, arrays, tmp_path / "a", progress=False)
    assert fit_lib.fit(cfg, arrays, tmp_path / "b", progress=False, stop_after_epochs=1) is None
    resumed = fit_lib.fit(cfg, arrays, tmp_path / "b", progress=False)
    assert full["test_acc_last"] == resumed["test_acc_last"]
    la = [json.loads(l) for l in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    lb = [json.loads(l) for l in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lb] == [1, 2]
    for ra, rb in zip(la, lb):
        assert ra["train_loss"] == rb["train_loss"] and ra["test_acc"] == rb["test_acc"]
    import orbax.checkpoint as ocp

    def final(d):
        with ocp.CheckpointManager((d / "checkpoints").resolve()) as m:
            return m.restore(2)

    a, b = final(tmp_path / "a"), final(tmp_path / "b")
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    for f in ("config.json", "summary.json", "training_curves.png", "detection.png", "noise_scores.npz"):
        assert (tmp_path / "b" / f).is_file()
    with np.load(tmp_path / "b" / "noise_scores.npz") as z:
        assert sorted(z["ranking"]) == list(range(256)) and z["score"][z["ranking"][0]] == z["score"].max()
    rec = json.loads((tmp_path / "b" / "config.json").read_text())
    assert rec["seed"] == 0 and "code_version" in rec and "jax" in rec["versions"]
    assert len(rec["resumed_with"]) == 1
    with pytest.raises(ValueError, match="different config"):
        fit_lib.fit(dataclasses.replace(cfg, lr=0.1), arrays, tmp_path / "b", progress=False)


def test_nan_loss_stops_with_clear_message_and_keeps_checkpoint(tmp_path):
    arrays, cfg = _arrays(), small_cfg(epochs=3)
    fit_lib.fit(cfg, arrays, tmp_path, progress=False, stop_after_epochs=1)
    # Resuming on other data is refused (data fingerprint), so diverge through a huge lr instead.
    with pytest.raises(errors.TrainingDiverged, match="checkpoint after epoch 1 is kept"):
        fit_lib.fit(dataclasses.replace(cfg, lr=1e30), arrays, tmp_path, progress=False, log_every=1,
                  allow_lr_change=True)
    assert (tmp_path / "checkpoints" / "1").is_dir()
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 1


def test_sop_resists_label_noise_where_ce_memorizes(tmp_path):
    """40% symmetric noise, an over-parameterized MLP trained until CE fits every wrong label."""
    x, y, xt, yt = synthetic()
    labels = noise.make_label_set("symflip", y, 10, 0.4, seed=0)
    arrays = arrays_lib.Arrays(x, labels, xt, yt, 10)
    out = {}
    for method in ("ce", "sop"):
        # lr_u = lr_v = 300: with 2,000 samples each row is visited ~16× less than in
        # CIFAR, so the tables need a larger rate on the batch-mean loss than Table A.1's 10.
        cfg = small_cfg(method=method, label_set="symflip", width=1.0, epochs=50, batch_size=128, lr=0.05,
                        weight_decay=0.0, lr_u=300.0, lr_v=300.0, eval_subset=0, init_std=1e-8)
        out[method] = fit_lib.fit(cfg, arrays, tmp_path / method, model=models.MLP((512, 512), 10), progress=False)
    ce, sop = out["ce"], out["sop"]
    assert ce["memorized_wrong_last"] > 0.9  # the check only means something if CE memorizes
    assert sop["memorized_wrong_last"] < 0.3 * ce["memorized_wrong_last"]
    assert sop["test_acc_last"] > ce["test_acc_last"] + 0.05
    assert sop["detection"]["sop_uv"]["auroc"] >= 0.9


def test_the_step_adds_the_label_issue_term_of_its_batch_once_the_warm_up_ends():
    # Catches sums that start during the warm-up (when u cannot move), rows added at batch
    # positions instead of dataset positions, or a term from the updated u or another p.
    x, y, _, _ = synthetic(N=256)
    cfg = small_cfg(uv_warmup_epochs=1.0)  # 8 steps of 32
    state, step, data = build(cfg, x, y)
    perm = np.random.default_rng(1).permutation(256).astype(np.int32)
    for i in range(8):
        state, _ = step(state, jnp.asarray(perm[32 * (i % 8): 32 * (i % 8 + 1)]), data)
    assert float(state.sample_stats["issue_count"].sum()) == 0.0
    idx = jnp.asarray(perm[:32])
    spec = step_lib.StepSpec.from_config(cfg)
    batch = step_lib.gather_batch(state, idx, data, spec)
    _, (logits, _, _) = step_lib.loss_fn(state.params, state, batch, spec)
    p_y = np.asarray(jax.nn.softmax(logits))[np.arange(32), y[perm[:32]]]
    U2 = np.clip(np.asarray(state.params["u"])[perm[:32], 0] ** 2, 0, 1)
    state, _ = step(state, idx, data)
    count = np.asarray(state.sample_stats["issue_count"])
    assert count[perm[:32]].tolist() == [1.0] * 32 and count.sum() == 32
    np.testing.assert_allclose(np.asarray(state.sample_stats["issue_sum"])[perm[:32]], 0.5 * (U2 + 1 - p_y),
                               rtol=1e-5)


def test_sample_stats_only_for_methods_with_tables_and_never_without_lr_u():
    x, y, _, _ = synthetic(N=64)
    assert build(small_cfg(method="ce"), x, y)[0].sample_stats == {}
    assert int(build(small_cfg(uv_warmup_epochs=2.0), x, y)[0].sample_stats["start_step"]) == 4
    assert int(build(small_cfg(lr_u=0.0), x, y)[0].sample_stats["start_step"]) == tables.NEVER
