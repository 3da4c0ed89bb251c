"""Several processes (hosts) on JAX's distributed runtime.

Each process runs the same program; ``jax.distributed.initialize`` connects them, after
which ``jax.devices()`` lists every device of every process and the mesh of
:mod:`sopjax.infra.parallel` spans them all. Each process copies only the rows of the data and of
u, v that its own devices hold (:func:`sopjax.infra.parallel.put`); collectives run over the
network (NCCL on GPUs, ICI/DCN on TPUs, gloo on CPUs).

Settings come from flags, else from the environment:

=================  ======================  ==============================================
flag               environment             meaning
=================  ======================  ==============================================
--coordinator      JAX_COORDINATOR_ADDRESS  host:port of process 0's coordinator service
--num-processes    JAX_NUM_PROCESSES        number of processes (hosts) in the job
--process-id       JAX_PROCESS_ID           this process's rank, 0 … num_processes − 1
--distributed      —                        none of the above: let JAX detect the cluster
                                            (SLURM, Open MPI, Cloud TPU pods, GKE)
=================  ======================  ==============================================

``--coordinator-address`` is another name for ``--coordinator``. ``python -m experiments.cifar``
takes these flags, joins before any other JAX call, and only process 0 writes run files
(:mod:`sopjax.infra.rundir`, :mod:`sopjax.evaluators.report`); orbax checkpoints are written by all.
"""

from __future__ import annotations

import argparse
import os

import jax

ENV = {"coordinator": "JAX_COORDINATOR_ADDRESS", "num_processes": "JAX_NUM_PROCESSES",
       "process_id": "JAX_PROCESS_ID"}


def add_flags(ap: argparse.ArgumentParser) -> None:
    """The multi-process flags of the CLI (see the module docstring)."""
    g = ap.add_argument_group("several processes (hosts)")
    g.add_argument("--coordinator", "--coordinator-address", dest="coordinator",
                   help=f"host:port of process 0 (else ${ENV['coordinator']})")
    g.add_argument("--num-processes", type=int, help=f"processes in the job (else ${ENV['num_processes']})")
    g.add_argument("--process-id", type=int, help=f"this process's rank (else ${ENV['process_id']})")
    g.add_argument("--distributed", action="store_true", help="join a cluster JAX detects itself (SLURM, TPU pod)")


def settings(args=None, environ=None) -> dict | None:
    """{"coordinator", "num_processes", "process_id"} from ``args`` or the environment, or
    None for a single-process run. Raises ValueError naming the missing or bad setting."""
    environ = os.environ if environ is None else environ
    got = {k: getattr(args, k, None) for k in ENV}
    got = {k: v if v is not None else environ.get(ENV[k]) for k, v in got.items()}
    if all(v is None for v in got.values()):
        return None
    missing = [f"--{k.replace('_', '-')} (or ${ENV[k]})" for k, v in got.items() if v is None]
    if missing:
        raise ValueError(f"a multi-process run needs {', '.join(missing)} as well")
    try:
        n, pid = int(got["num_processes"]), int(got["process_id"])
    except ValueError:
        raise ValueError("--num-processes and --process-id must be integers") from None
    if n < 1 or not 0 <= pid < n:
        raise ValueError(f"--process-id must lie in 0 … {n - 1} for {n} processes, got {pid}")
    return {"coordinator": str(got["coordinator"]), "num_processes": n, "process_id": pid}


def initialize(conf: dict | None, detect: bool = False) -> None:
    """Join the job described by ``conf`` (from :func:`settings`); with ``conf`` None, join a
    cluster JAX detects if ``detect``, else do nothing. Must run before any other JAX call.
    CPU collectives use JAX's default, gloo."""
    if conf is None and not detect:
        return
    if conf is None:
        jax.distributed.initialize()
    else:
        jax.distributed.initialize(conf["coordinator"], conf["num_processes"], conf["process_id"])


def is_primary() -> bool:
    """True in process 0, the one that writes run files."""
    return jax.process_index() == 0
