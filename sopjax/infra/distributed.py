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

``--coordinator-timeout`` (default 30 s): a process other than 0 that cannot open a
connection to the coordinator in this time exits with one line (exit code 2).

``--coordinator-address`` is another name for ``--coordinator``. ``python -m experiments.cifar``
takes these flags, joins before any other JAX call, and only process 0 writes run files
(:mod:`sopjax.infra.rundir`, :mod:`sopjax.evaluators.report`); orbax checkpoints are written by all.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time

import jax

TIMEOUT_S = 30.0  # a process that cannot reach its coordinator says so within this time
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
    g.add_argument("--coordinator-timeout", type=float, default=TIMEOUT_S, metavar="SECONDS",
                   help=f"give up, with one line, when the coordinator cannot be reached in this time "
                        f"(default {TIMEOUT_S:g})")


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


def _address(coordinator: str) -> tuple[str, int]:
    host, sep, port = coordinator.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--coordinator must be host:port, such as 10.0.0.1:1234, got {coordinator!r}")
    return host.strip("[]"), int(port)


def wait_for_coordinator(coordinator: str, timeout: float) -> None:
    """Return once a TCP connection to ``coordinator`` (host:port) opens, retrying while it
    is refused (process 0 may start a little later); raise ValueError after ``timeout``
    seconds. JAX's own wait ends in a fatal abort with a C++ stack trace instead (and only
    after minutes), so this check comes first."""
    host, port = _address(coordinator)
    deadline, last = time.monotonic() + timeout, None
    while True:
        try:
            with socket.create_connection((host, port), timeout=max(0.1, min(2.0, deadline - time.monotonic()))):
                return
        except socket.gaierror as e:
            raise ValueError(f"--coordinator {coordinator}: cannot resolve {host!r} ({e.strerror}); "
                             "pass process 0's host name or address") from None
        except OSError as e:
            last = e.strerror or type(e).__name__
        if time.monotonic() >= deadline:
            raise ValueError(f"cannot reach the coordinator {coordinator} within {timeout:g} s ({last}); start "
                             "process 0 first with the same --coordinator, check the address and firewall, or raise "
                             "--coordinator-timeout")
        time.sleep(0.5)


def initialize(conf: dict | None, detect: bool = False, timeout: float = TIMEOUT_S) -> None:
    """Join the job described by ``conf`` (from :func:`settings`); with ``conf`` None, join a
    cluster JAX detects if ``detect``, else do nothing. Must run before any other JAX call.
    A process other than 0 first checks, for at most ``timeout`` seconds, that the
    coordinator can be reached (ValueError otherwise). CPU collectives use JAX's default, gloo."""
    if conf is None and not detect:
        return
    if conf is None:
        jax.distributed.initialize()
        return
    if not timeout > 0:
        raise ValueError(f"--coordinator-timeout must be a positive number of seconds, got {timeout}")
    _address(conf["coordinator"])
    print(f"process {conf['process_id']} of {conf['num_processes']}: joining the job through the coordinator "
          f"{conf['coordinator']}", file=sys.stderr, flush=True)
    if conf["process_id"] != 0:
        wait_for_coordinator(conf["coordinator"], timeout)
    jax.distributed.initialize(conf["coordinator"], conf["num_processes"], conf["process_id"])


def is_primary() -> bool:
    """True in process 0, the one that writes run files."""
    return jax.process_index() == 0
