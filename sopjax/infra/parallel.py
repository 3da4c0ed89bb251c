"""Data parallelism over every device (and host) with ``jax.sharding``.

One :class:`~jax.sharding.Mesh` with a single ``data`` axis spans all devices of all
processes. Under it (``with jax.set_mesh(mesh):``, see :func:`data_parallel`):

- the batch is sharded over ``data``: :func:`shard_batch` constrains the batch's dataset
  indices inside the jitted step, and the gathered images, logits and per-sample losses
  follow them (B / devices rows per device);
- network params, optimizer state, BatchNorm statistics and the run's RNG key are
  replicated; jit inserts the all-reduce of their gradients;
- the per-sample tables u (N, 1), v (N, K), the label-issue sums (N,) and the
  device-resident training and test sets are sharded by sample, so each device (and each
  process) holds N / devices rows. The rows of a batch are gathered from, and their
  gradients scattered into, the sharded tables with whatever collectives the compiler
  chooses (on CPU: a masked local gather and an all-reduce of the B rows, never the whole
  table).

BatchNorm: the step is one global program (GSPMD), so ``mean``/``var`` over the batch axis
are means over the *global* batch, reduced across devices: the statistics of PyTorch's
``SyncBatchNorm``, not the per-device statistics of plain ``DistributedDataParallel``.
The result is the single-device result up to float reduction order
(tests/infra/test_parallel.py checks rel ≤ 1e-5 after 2 epochs).

With no mesh set (or a one-device mesh) every function here is the identity, so the
single-device path is unchanged.
"""

from __future__ import annotations

import contextlib

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DATA = "data"


def make_mesh(devices=None) -> Mesh:
    """A 1-D mesh named ``data`` over ``devices`` (default: every device of every process)."""
    devs = np.asarray(jax.devices() if devices is None else devices)
    return Mesh(devs, (DATA,), axis_types=(AxisType.Auto,))


@contextlib.contextmanager
def data_parallel(mesh: Mesh | None = None):
    """Context in which :mod:`sopjax.trainers` run data-parallel over ``mesh`` (default: all
    devices). Yields the mesh."""
    mesh = make_mesh() if mesh is None else mesh
    with jax.set_mesh(mesh):
        yield mesh


def active_mesh() -> Mesh | None:
    """The ambient mesh if it has a ``data`` axis over more than one device, else None."""
    mesh = jax.sharding.get_mesh()
    if mesh.empty or DATA not in mesh.axis_names or mesh.shape[DATA] < 2:
        return None
    return mesh


def shard_batch(x):
    """Inside jit: constrain ``x`` (B, …) to be split by rows over the ambient ``data`` axis.

    A no-op without a multi-device mesh, and when B is not a multiple of the device count
    (the compiler then picks a layout; results are the same, only slower)."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or DATA not in mesh.axis_names:
        return x
    n = mesh.shape[DATA]
    if n < 2 or x.shape[0] % n:
        return x
    return jax.lax.with_sharding_constraint(x, P(DATA))


def by_sample(num_rows: int, mesh: Mesh) -> NamedSharding:
    """Rows split over ``data``; replicated when ``num_rows`` is not a multiple of the device count."""
    return NamedSharding(mesh, P(DATA) if num_rows % mesh.shape[DATA] == 0 else P())


def put(x: np.ndarray, sharding=None) -> jax.Array:
    """Host array → device array with ``sharding`` (None: the default device).

    Built with ``make_array_from_callback``: each process copies only the rows its own
    devices hold, so on several hosts every process loads just its shard."""
    if sharding is None:
        return jax.device_put(x)
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])


def put_rows(x: np.ndarray) -> jax.Array:
    """A per-sample host array (N, …) sharded by sample over the ambient mesh (or on the
    default device without one)."""
    mesh = active_mesh()
    return put(x, None if mesh is None else by_sample(len(x), mesh))


def _is_table(path, leaf, num_train: int) -> bool:
    keys = {getattr(k, "key", getattr(k, "name", None)) for k in path}  # dict keys and dataclass fields
    return bool(keys & {"u", "v", "sample_stats"}) and getattr(leaf, "ndim", 0) >= 1 and leaf.shape[0] == num_train


def state_shardings(state, num_train: int, mesh: Mesh):
    """Shardings of a TrainState: leaves under a ``u``/``v``/``sample_stats`` key with N rows
    (the tables, any optimizer state of theirs and the per-sample label-issue sums) by
    sample, everything else replicated."""
    rep = NamedSharding(mesh, P())
    return jax.tree_util.tree_map_with_path(
        lambda p, leaf: by_sample(num_train, mesh) if _is_table(p, leaf, num_train) else rep, state)


def place_state(state, num_train: int):
    """``state`` laid out on the ambient mesh by :func:`state_shardings` (unchanged without
    one). Place before ``RunDir.restore``: orbax restores into the target's shardings."""
    mesh = active_mesh()
    if mesh is None:
        return state
    shardings = state_shardings(state, num_train, mesh)
    return jax.tree.map(lambda leaf, s: put(np.asarray(leaf), s), state, shardings)


def to_host(tree):
    """Every array of ``tree`` as a full numpy array on this host (gathered from the other
    processes when it spans devices this process cannot address)."""
    def one(a):
        if isinstance(a, jax.Array) and not a.is_fully_addressable:
            return np.asarray(multihost_utils.process_allgather(a, tiled=True))
        return np.asarray(a)

    return jax.tree.map(one, tree)


def describe(mesh: Mesh | None, batch_size: int, num_train: int) -> str:
    """The line the CLI prints at start: how the run is laid out."""
    if mesh is None or mesh.shape[DATA] < 2:
        return f"single device ({jax.devices()[0].platform})"
    n, procs = mesh.shape[DATA], jax.process_count()
    rows = "sharded by sample" if num_train % n == 0 else "replicated (N not a multiple of the device count)"
    per = f"{batch_size // n} per device" if batch_size % n == 0 else "not a multiple of the devices: unsharded"
    return (f"data parallel over {n} {mesh.devices.flat[0].platform} devices in {procs} process(es): "
            f"batch {batch_size} ({per}); u, v and the training set {rows}; "
            "BatchNorm statistics over the global batch (as SyncBatchNorm)")
