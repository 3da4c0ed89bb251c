"""A plain ReLU MLP on flattened inputs (fast method-level tests and feature inputs)."""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from sopjax.models.layers import torch_dense


class MLP(nn.Module):
    """A plain ReLU MLP on flattened inputs (used by the fast method-level test)."""

    hidden: Sequence[int] = (512, 512)
    num_classes: int = 10
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = True):
        x = x.reshape((x.shape[0], -1)).astype(self.dtype)
        for h in self.hidden:
            x = nn.relu(torch_dense(h, x.shape[-1], self.dtype)(x))
        return torch_dense(self.num_classes, x.shape[-1], self.dtype)(x).astype(jnp.float32)
