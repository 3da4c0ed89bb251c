"""The run's random streams never hand two consumers the same key."""

import types

import jax
import numpy as np

from sopjax.core import rng as streams
from sopjax.pp.augment import epoch_key
from sopjax.trainers.step import step_key


def _keys(run_key, n=64):
    """Every key the device-resident path draws from in its first ``n`` steps and epochs."""
    out = {}
    for t in range(n):
        k = step_key(types.SimpleNamespace(rng=run_key, step=t))
        crop, flip = jax.random.split(k)  # the weak view (sopjax.pp.augment.augment)
        out.update({("step", t): k, ("crop", t): crop, ("flip", t): flip,
                    ("strong", t): jax.random.fold_in(k, streams.STRONG_VIEW), ("epoch", t): epoch_key(run_key, t)})
    return out


def test_no_two_streams_share_a_key():
    keys = _keys(jax.random.PRNGKey(0))
    seen = {}
    for name, k in keys.items():
        data = tuple(np.asarray(jax.random.key_data(k) if jax.dtypes.issubdtype(k.dtype, jax.dtypes.prng_key)
                                else k).ravel())
        assert data not in seen, f"{name} and {seen[data]} are the same key"
        seen[data] = name
