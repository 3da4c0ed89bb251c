"""The options the CPU comparison preset uses: the u/v warm-up and the per-epoch test subset."""

import jax.numpy as jnp
import numpy as np

from sopjax import config as config_lib
from sopjax import models, train


def _state(**kw):
    cfg = config_lib.Config(label_set="sym", noise_rate=0.4, arch="mlp", width=0.125, epochs=3, batch_size=32,
                            lr=0.05, augment=False, init_std=0.1, **kw)
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((64, 12)).astype(np.float32), rng.integers(0, 10, 64).astype(np.int32)
    state = train.create_train_state(cfg, models.make_model("mlp", 10, 0.125), x, 64, 10, 2)
    return cfg, state, (jnp.asarray(x), jnp.asarray(y))


def _tables(state):
    return np.asarray(state.params["u"]).copy(), np.asarray(state.params["v"]).copy()


def test_uv_warmup_holds_the_tables_for_whole_epochs_then_trains_them():
    cfg, state, data = _state(uv_warmup_epochs=1.0)  # 2 steps per epoch: u, v frozen for steps 0 and 1
    u0, v0 = _tables(state)
    batch = jnp.arange(32, dtype=jnp.int32)
    for _ in range(2):
        state, _ = train.device_step(state, batch, data, cfg)
    u1, v1 = _tables(state)
    np.testing.assert_array_equal(u1, u0)
    np.testing.assert_array_equal(v1, v0)
    state, _ = train.device_step(state, batch, data, cfg)  # step 2: the first after the warm-up
    u2, v2 = _tables(state)
    assert np.all(np.any(v2[:32] != v0[:32], axis=1)) and np.array_equal(v2[32:], v0[32:])
    assert np.any(u2[:32] != u0[:32])


def test_without_warmup_the_first_step_trains_the_tables_at_a_constant_rate():
    cfg, state, data = _state()
    assert train.table_lr(cfg.lr_u, cfg, 2) == cfg.lr_u  # a plain float: the paper's optimizer, unchanged
    u0, v0 = _tables(state)
    state, _ = train.device_step(state, jnp.arange(32, dtype=jnp.int32), data, cfg)
    _, v1 = _tables(state)
    assert np.all(np.any(v1[:32] != v0[:32], axis=1))


def test_test_rows_subset_per_epoch_and_whole_set_at_the_last():
    cfg = config_lib.Config(test_subset=300, epochs=5, seed=3)
    some = train.test_rows(cfg, 1000, last=False)
    assert len(some) == 300 == len(np.unique(some)) and np.all(np.diff(some) > 0) and some.max() < 1000
    np.testing.assert_array_equal(some, train.test_rows(cfg, 1000, last=False))  # same rows every epoch
    np.testing.assert_array_equal(train.test_rows(cfg, 1000, last=True), np.arange(1000))
    np.testing.assert_array_equal(train.test_rows(config_lib.Config(), 1000, last=False), np.arange(1000))
