"""The over-parameterized sparse term shared by SOP and double over-parameterization (DOP).

    s = g ⊙ g − h ⊙ h

SOP (Liu–Zhu–Qu–You, ICML 2022, eq. 5) writes it per sample as
``u_i⊙u_i⊙y_i − v_i⊙v_i⊙(1−y_i)`` (the label mask picks which of u, v is active);
DOP (You–Zhu–Qu–Ma, NeurIPS 2020, slides "A Double Over-Parameterization Method")
writes it as ``g⊙g − h⊙h`` on the whole signal. Trained by gradient descent from a
small initialization with a learning rate α times the model's, the term is
implicitly biased towards the solution of minimal ℓ1 norm (weight 1/α), which is
what lets it absorb sparse corruption and nothing else.
"""

from __future__ import annotations

import jax.numpy as jnp


def sparse_term(g, h):
    """``g ⊙ g − h ⊙ h``, elementwise.

    Args:
        g, h: arrays of one shape and float dtype (any rank; jax or numpy).
    Returns:
        An array of that shape and dtype.
    Raises:
        ValueError: if the shapes differ (broadcasting would silently model a
            different corruption, e.g. one value per row).
    """
    if jnp.shape(g) != jnp.shape(h):
        raise ValueError(f"g and h must have one shape, got {jnp.shape(g)} and {jnp.shape(h)}")
    return g * g - h * h
