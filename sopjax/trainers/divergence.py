"""Stopping a run whose loss or trained arrays became NaN or inf, with advice that works."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from sopjax.infra.errors import TrainingDiverged

_ARRAY_NAMES = {"net": ("the network weights", "--lr"), "u": ("the u table", "--lr-u"), "v": ("the v table", "--lr-v")}


@jax.jit
def nonfinite_fractions(params) -> dict:
    """Fraction (float32 scalar) of entries that are NaN/inf or whose square overflows
    (|x| > ~1.8e19 in float32: the noise score u⊙u⊙y − v⊙v⊙(1−y) is then NaN) in each trained
    group of ``params``: "net" (all network leaves together), "u", "v". One scalar each."""
    out = {}
    for name, sub in params.items():
        leaves = jax.tree.leaves(sub)
        out[name] = sum(jnp.sum(~jnp.isfinite(leaf * leaf)) for leaf in leaves) / sum(leaf.size for leaf in leaves)
    return out


def check_finite(metrics: dict, where: str, last_good: int | None, workdir, tables: dict | None = None) -> None:
    """Raise :class:`TrainingDiverged` if a host-read metric is NaN or inf, or a trained
    array group in ``tables`` ({name: fraction of NaN/inf entries}) has any. The message
    says what is kept in ``workdir`` and how to go on."""
    bad = [f"{k} became {v}" for k, v in metrics.items() if not np.isfinite(v)]
    groups = [k for k, f in (tables or {}).items() if not float(f) == 0.0]
    bad += [f"{_ARRAY_NAMES.get(k, (k,))[0]} hold {100 * float(tables[k]):.3g}% entries that are NaN, inf or "
            "overflow when squared" for k in groups]
    if not bad:
        return
    flags = " and ".join(_ARRAY_NAMES[k][1] for k in groups if k in _ARRAY_NAMES) or "--lr, --lr-u or --lr-v"
    if last_good:
        advice = (f"The checkpoint after epoch {last_good} is kept in {workdir}: resume from it with a lower {flags} "
                  "and --allow-lr-change (same --workdir), or start anew in a new --workdir")
    else:
        advice = f"No epoch finished, so nothing was kept: re-run with a lower {flags}"
    raise TrainingDiverged(f"training diverged at {where}: {'; '.join(bad)}. {advice}.")
