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
