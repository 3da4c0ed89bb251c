"""The per-sample tables u (N, 1), v (N, K) that model each training label's noise."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def init_tables(key, num_samples: int, num_classes: int, std: float = 1e-8) -> dict:
    """Draw the SOP tables from N(0, std²) (paper Algorithm 1, line 2).

    Args:
      key: a JAX PRNG key.
      num_samples: N, the training-set size; row i belongs to the sample at dataset
        position i (never to a batch position).
      num_classes: K.
      std: the init scale (the paper's 1e-8).

    Returns:
      {"u": (N, 1) float32, "v": (N, K) float32}. u has one column, as in the authors'
      code: only its entry at the given class enters s_i = u_i²·y_i − v_i²·(1 − y_i).

    Raises:
      ValueError: if num_samples or num_classes is below 1, or std is negative.

    Example:
      >>> tables = init_tables(jax.random.PRNGKey(0), 50_000, 10)
      >>> params = {"net": net_params, **tables}
    """
    if num_samples < 1 or num_classes < 1 or not std >= 0:
        raise ValueError(f"init_tables needs num_samples, num_classes >= 1 and std >= 0, "
                         f"got {num_samples}, {num_classes}, {std}")
    k_u, k_v = jax.random.split(key)
    return {"u": std * jax.random.normal(k_u, (num_samples, 1), jnp.float32),
            "v": std * jax.random.normal(k_v, (num_samples, num_classes), jnp.float32)}


# A step count no run reaches: the start step of tables that never train (lr_u = 0).
NEVER = 2**31 - 1


def init_sample_stats(num_samples: int, start_step: int) -> dict:
    """The running sums of the label-issue score (:func:`accumulate_issue`), all zero.

    Args:
      num_samples: N, rows indexed by dataset position like u, v.
      start_step: the first optimizer step at which u trains (the end of the warm-up,
        ``round(uv_warmup_epochs · steps_per_epoch)``; :data:`NEVER` when lr_u is 0).

    Returns:
      {"issue_sum": (N,) float32, "issue_count": (N,) float32, "start_step": () int32}.
    """
    return {"issue_sum": jnp.zeros((num_samples,), jnp.float32),
            "issue_count": jnp.zeros((num_samples,), jnp.float32),
            "start_step": jnp.asarray(min(int(start_step), NEVER), jnp.int32)}


def issue_term(u_rows, probs_given):
    """½·[U² + (1 − p_y)] per sample, in [0, 1]: the share of the given label that SOP
    attributes to noise, half from the table (U² = clip(u², 0, 1), how much of the label
    u has absorbed, paper eq. 5) and half from the network (how much of it the network
    does not support). u_rows (B, 1) or (B,), probs_given (B,) float32 → (B,) float32."""
    U2 = jnp.clip(jnp.square(jnp.reshape(u_rows, (-1,))), 0.0, 1.0)
    return 0.5 * (U2 + 1.0 - probs_given)


def accumulate_issue(stats: dict, step, idx, u_rows, logits, y) -> dict:
    """Add :func:`issue_term` of a batch to ``stats`` when u trains at this step.

    step: the optimizer step of this update (before it); idx (B,) int32 dataset positions
    (distinct); u_rows (B, 1) the rows before the update; logits (B, K) the step's own
    training-mode logits; y (B,) int32 given labels. No gradient flows through it.
    Returns the new stats (same structure); unchanged before ``stats["start_step"]``.
    """
    p = jax.nn.softmax(jax.lax.stop_gradient(logits).astype(jnp.float32))
    p_y = jnp.take_along_axis(p, y[:, None], axis=1)[:, 0]
    on = (step >= stats["start_step"]).astype(jnp.float32)
    term = issue_term(jax.lax.stop_gradient(u_rows), p_y)
    return {**stats, "issue_sum": stats["issue_sum"].at[idx].add(on * term),
            "issue_count": stats["issue_count"].at[idx].add(on)}
