"""Eval-mode predictions on device-resident rows, in fixed-size chunks."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from sopjax.core.state import TrainState, eval_variables
from sopjax.evaluators import neural_collapse
from sopjax.infra import parallel
from sopjax.pp.augment import preprocess

# Rows per evaluation call: one compiled shape (the last chunk is padded), small enough for
# 224-pixel folder images.
EVAL_BATCH = 256


def normalize(state: TrainState, x):
    """Network input from raw rows: uint8 images scaled by the run's ``norm``; floats as they are."""
    return preprocess(x, state.norm["mean"], state.norm["std"])


@jax.jit
def _predict(state: TrainState, x_all, idx):
    x = normalize(state, x_all[parallel.shard_batch(idx)])
    return jax.nn.softmax(state.apply_fn(eval_variables(state), x, train=False))


@jax.jit
def _predict_features(state: TrainState, x_all, idx):
    x = normalize(state, x_all[parallel.shard_batch(idx)])
    logits, h, W, b = neural_collapse.last_layer(state.apply_fn, eval_variables(state), x)
    return jax.nn.softmax(logits), h, W, b


def _chunks(indices: np.ndarray, batch: int):
    """(padded chunk (bs,), real length) pairs covering ``indices``: one compiled shape."""
    bs = min(batch, len(indices))
    for s in range(0, len(indices), bs):
        chunk = indices[s:s + bs]
        yield jnp.asarray(np.concatenate([chunk, np.zeros(bs - len(chunk), chunk.dtype)])), len(chunk)


def evaluate(state: TrainState, x_dev, indices: np.ndarray, batch: int = EVAL_BATCH) -> np.ndarray:
    """Eval-mode class probabilities (len(indices), K) float32 for rows ``indices`` of the
    on-device ``x_dev`` (N, …). Padding rows of the last chunk are dropped."""
    return np.concatenate([parallel.to_host(_predict(state, x_dev, idx))[:n] for idx, n in _chunks(indices, batch)])


def evaluate_features(state: TrainState, x_dev, indices: np.ndarray, batch: int = EVAL_BATCH):
    """As :func:`evaluate`, in the same single pass also the penultimate features: returns
    probs (n, K), features (n, D) (the input of the last Dense layer), and that layer's
    W (K, D), b (K,), all float32 numpy."""
    probs, feats = [], []
    for idx, n in _chunks(indices, batch):
        p, h, W, b = parallel.to_host(_predict_features(state, x_dev, idx))
        probs.append(p[:n])
        feats.append(h[:n])
    return np.concatenate(probs), np.concatenate(feats).astype(np.float32), np.asarray(W), np.asarray(b)
