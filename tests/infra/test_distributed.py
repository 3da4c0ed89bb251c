"""Two processes on 127.0.0.1 (CPU collectives) give the one-process result (sopjax.distributed).

tests/workers/distributed_worker.py runs as 2 processes × 2 forced CPU devices
(one mesh over 4 devices, u, v and the data sharded across both processes) and as one
process with 1 device, all at once; the assertions compare their outputs.
"""

import pathlib
import types

import numpy as np
import pytest

from sopjax.infra import distributed
from tests.workers import launch as launcher

# Compiles for several device layouts or runs; > 20 s on the shared 2-core CPU.
pytestmark = pytest.mark.slow

WORKER = pathlib.Path(__file__).parents[1] / "workers" / "distributed_worker.py"
RTOL = 1e-5


def rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a), 1e-30))


def launch(args, devices):
    return launcher.launch([WORKER, *args], devices)


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("distributed")
    addr = f"127.0.0.1:{launcher.free_port()}"
    procs = [launch([tmp / "two.npz", tmp / "ck2", addr, 2, pid], 2) for pid in (0, 1)]
    procs.append(launch([tmp / "one.npz", tmp / "ck1"], 1))
    logs = [p.communicate(timeout=300)[0] for p in procs]
    for p, log in zip(procs, logs):
        assert p.returncode == 0, log[-3000:]
    return dict(np.load(tmp / "two.npz")), dict(np.load(tmp / "one.npz"))


def test_two_processes_equal_one_process(outputs):
    # Catches a process that loads the wrong shard of the data or tables, gradients or
    # BatchNorm statistics not reduced across processes, and a gather of u, v that
    # returns only this process's rows.
    two, one = outputs
    assert int(two["n_processes"]) == 2 and int(two["n_devices"]) == 4
    assert int(one["n_processes"]) == 1
    assert rel(one["metrics"], two["metrics"]) <= RTOL
    keys = [k[6:] for k in one if k.startswith("state/")]
    assert {"params/u", "params/v"} <= set(keys)
    for k in keys:
        assert rel(one["state/" + k], two["state/" + k]) <= RTOL, k


def test_orbax_restores_the_sharded_state_across_processes(outputs):
    two, _ = outputs
    assert bool(two["u_sharded"])
    for k in (k for k in two if k.startswith("state/")):
        np.testing.assert_array_equal(two[k], two["restored/" + k[6:]])


def test_settings_from_flags_or_environment_with_clear_errors():
    assert (
        distributed.settings(types.SimpleNamespace(coordinator=None, num_processes=None, process_id=None), {}) is None
    )
    env = {"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234", "JAX_NUM_PROCESSES": "4", "JAX_PROCESS_ID": "3"}
    assert distributed.settings(None, env) == {"coordinator": "10.0.0.1:1234", "num_processes": 4, "process_id": 3}
    flags = types.SimpleNamespace(coordinator="h:1", num_processes=2, process_id=None)
    assert distributed.settings(flags, {"JAX_PROCESS_ID": "1"})["process_id"] == 1  # flags, then environment
    with pytest.raises(ValueError, match="--process-id"):
        distributed.settings(types.SimpleNamespace(coordinator="h:1", num_processes=2, process_id=None), {})
    with pytest.raises(ValueError, match="0 … 1"):
        distributed.settings(None, {**env, "JAX_NUM_PROCESSES": "2"})
