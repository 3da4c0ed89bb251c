"""The training state: flax's ``TrainState`` with BatchNorm statistics, the run's key and
the input normalization."""

from __future__ import annotations

from typing import Any

import jax
from flax.training import train_state


class TrainState(train_state.TrainState):
    """flax's TrainState (step, apply_fn, params, tx, opt_state) plus:

    batch_stats: BatchNorm running statistics ({} for networks without BN).
    rng: uint32[2] base key of the run; the streams derived from it are in :mod:`sopjax.core.rng`.
    norm: {"mean", "std"} float32 (3,): the input normalization (units of [0, 1]
      intensity), kept in the state so evaluation needs no config; "strong_mean",
      "strong_std": the same for SOP+'s strong view.
    sample_stats: per-sample running sums of the label-issue score for a method with
      tables (:func:`sopjax.core.tables.init_sample_stats`: "issue_sum", "issue_count"
      (N,) float32, "start_step" () int32), updated by every training step; {} otherwise.

    ``params`` is ``{"net": network params}`` plus, for a method with tables,
    ``"u"`` (N, 1) and ``"v"`` (N, K) float32 rows indexed by dataset position.
    """

    batch_stats: Any
    rng: jax.Array
    norm: Any
    sample_stats: Any


def eval_variables(state: TrainState) -> dict:
    """The network's variables for an eval-mode ``apply_fn``: params, and BatchNorm's
    running statistics when the network has them."""
    return {"params": state.params["net"], **({"batch_stats": state.batch_stats} if state.batch_stats else {})}
