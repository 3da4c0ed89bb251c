"""The options the CPU comparison preset uses: the u/v warm-up and the per-epoch test subset."""

import jax.numpy as jnp
import numpy as np

from sopjax import configs as config_lib
from sopjax import models
from sopjax.core import optim
from sopjax.evaluators import epoch as epoch_eval
from sopjax.trainers import state as tstate
from sopjax.trainers import step as step_lib


def _state(**kw):
    cfg = config_lib.Config(label_set="sym", noise_rate=0.4, arch="mlp", width=0.125, epochs=3, batch_size=32,
                            lr=0.05, augment=False, init_std=0.1, **kw)
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((64, 12)).astype(np.float32), rng.integers(0, 10, 64).astype(np.int32)
    state = tstate.create_train_state(cfg, models.make_model("mlp", 10, 0.125), x, 64, 10, 2)
    return cfg, state, (jnp.asarray(x), jnp.asarray(y))


def _tables(state):
    return np.asarray(state.params["u"]).copy(), np.asarray(state.params["v"]).copy()


def test_uv_warmup_holds_the_tables_for_whole_epochs_then_trains_them():
    cfg, state, data = _state(uv_warmup_epochs=1.0)  # 2 steps per epoch: u, v frozen for steps 0 and 1
    u0, v0 = _tables(state)
    batch = jnp.arange(32, dtype=jnp.int32)
    for _ in range(2):
        state, _ = step_lib.device_step(state, batch, data, step_lib.StepSpec.from_config(cfg))
    u1, v1 = _tables(state)
    np.testing.assert_array_equal(u1, u0)
    np.testing.assert_array_equal(v1, v0)
    state, _ = step_lib.device_step(
        state, batch, data, step_lib.StepSpec.from_config(cfg)
    )  # step 2: the first after the warm-up
    u2, v2 = _tables(state)
    assert np.all(np.any(v2[:32] != v0[:32], axis=1)) and np.array_equal(v2[32:], v0[32:])
    assert np.any(u2[:32] != u0[:32])


def test_without_warmup_the_first_step_trains_the_tables_at_a_constant_rate():
    cfg, state, data = _state()
    assert optim.table_lr(cfg.lr_u, 0) == cfg.lr_u  # a plain float: the paper's optimizer, unchanged
    u0, v0 = _tables(state)
    state, _ = step_lib.device_step(state, jnp.arange(32, dtype=jnp.int32), data, step_lib.StepSpec.from_config(cfg))
    _, v1 = _tables(state)
    assert np.all(np.any(v1[:32] != v0[:32], axis=1))


def test_test_rows_subset_per_epoch_and_whole_set_at_the_last():
    cfg = config_lib.Config(test_subset=300, epochs=5, seed=3)
    some = epoch_eval.test_rows(cfg, 1000, last=False)
    assert len(some) == 300 == len(np.unique(some)) and np.all(np.diff(some) > 0) and some.max() < 1000
    np.testing.assert_array_equal(some, epoch_eval.test_rows(cfg, 1000, last=False))  # same rows every epoch
    np.testing.assert_array_equal(epoch_eval.test_rows(cfg, 1000, last=True), np.arange(1000))
    np.testing.assert_array_equal(epoch_eval.test_rows(config_lib.Config(), 1000, last=False), np.arange(1000))


def test_epoch_detection_scores_the_fit_subset_rows_of_u_v_and_of_the_network():
    # 8 samples, fit subset = rows 1, 3, 4, 6; rows 3 and 6 carry wrong labels.
    # Bugs caught: scoring u, v or the label-issue sums at rows 0..3 instead of the subset's rows,
    # or dropping the table scores.
    from types import SimpleNamespace

    N, K, sub = 8, 3, np.array([1, 3, 4, 6])
    u = np.zeros((N, 1), np.float32)
    u[[3, 6]] = 1.0  # the wrong rows' tables are on; rows 0 and 2 (not in the subset) stay off
    v = np.zeros((N, K), np.float32)
    noisy, wrong = np.array([0, 1, 2, 0]), np.array([False, True, False, True])
    probs = np.full((4, K), 0.1, np.float32)
    probs[np.arange(4), noisy] = [0.1, 0.9, 0.2, 0.8]  # the network is confident on the wrong ones
    issue_sum = np.zeros(N, np.float32)
    issue_sum[[0, 2, 3, 6]] = 9.0  # the label-issue sums so far: high on the wrong rows and off the subset
    stats = {"issue_sum": jnp.asarray(issue_sum), "issue_count": jnp.full((N,), 9.0), "start_step": jnp.int32(0)}
    state = SimpleNamespace(params={"net": {}, "u": jnp.asarray(u), "v": jnp.asarray(v)}, sample_stats=stats)
    rec = epoch_eval.epoch_detection(state, probs, noisy, wrong, sub)
    assert rec["auroc_uv"] == 1.0 and rec["auroc_1mp"] == 0.0 and rec["auroc_issue"] == 1.0
    ce_rec = epoch_eval.epoch_detection(SimpleNamespace(params={"net": {}}, sample_stats={}), probs, noisy, wrong, sub)
    assert set(ce_rec) == {"auroc_1mp"}


def test_epoch_detection_is_none_not_nan_on_clean_labels():
    # metrics.jsonl is strict JSON: a NaN AUROC (no wrong label in the subset) must be written as null.
    from types import SimpleNamespace

    probs = np.full((4, 3), 1 / 3, np.float32)
    rec = epoch_eval.epoch_detection(SimpleNamespace(params={"net": {}}, sample_stats={}), probs, np.zeros(4, int),
                                     np.zeros(4, bool), np.arange(4))
    assert rec == {"auroc_1mp": None}
