"""Data parallel over 4 forced host devices equals 1 device (sopjax.parallel).

One subprocess (XLA_FLAGS must be set before JAX starts) runs
tests/workers/parallel_worker.py: 2 epochs of a small SOP problem with a BatchNorm
net on a 1-device and a 4-device mesh, then ``train.fit`` on 4 devices stopped after
epoch 1 and resumed from its sharded checkpoint. The assertions below read its output.
"""

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

WORKER = pathlib.Path(__file__).parents[1] / "workers" / "parallel_worker.py"
RTOL = 1e-5

# Compiles for several device layouts or runs; > 20 s on the shared 2-core CPU.
pytestmark = pytest.mark.slow


def rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a), 1e-30))


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("parallel")
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, str(WORKER), str(tmp / "out.npz"), str(tmp / "run")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return dict(np.load(tmp / "out.npz"))


def test_four_devices_really_split_the_batch_and_the_tables(result):
    # Catches a mesh that silently runs replicated (each device the whole batch) or
    # tables that are replicated instead of sharded by sample.
    assert int(result["n_devices"]) == 4
    assert int(result["u_rows_per_device"]) == 256 // 4
    assert int(result["issue_rows_per_device"]) == 256 // 4  # the label-issue sums follow u
    assert int(result["net_rows_per_device"]) == 12  # network weights replicated: the full (12, 16) kernel
    assert bool(result["step_per_device_batch"]), "the step's matmuls do not run on B/4 rows"
    assert int(result["step_all_reduces"]) >= 1


def test_two_epochs_on_four_devices_match_one_device(result):
    # Catches per-device BatchNorm statistics, gradients not reduced over devices, rows of
    # u, v or of the data placed at the wrong positions when sharded.
    assert rel(result["metrics_1"], result["metrics_n"]) <= RTOL
    keys = [k[4:] for k in result if k.startswith("one/")]
    assert {"params/u", "params/v", "batch_stats/BatchNorm_0/mean", "sample_stats/issue_sum"} <= set(keys)
    for k in keys:
        assert rel(result["one/" + k], result["many/" + k]) <= RTOL, k
    # the tables did train from their N(0, 0.1²) init (the comparison is not between two inits)
    assert np.std(result["one/params/v"]) > 0.12


def test_fit_on_four_devices_resumed_from_a_sharded_checkpoint_matches_one_device(result):
    # fit places the state, restores the sharded checkpoint after epoch 1, and gathers u and
    # the label-issue sums for the report. Same seed and data, so its noise scores are those
    # of the uninterrupted 1-device run. Catches a restore that loses the sharded tables or
    # sums (a fresh init has no sums) or rows gathered out of order.
    from sopjax.evaluators import label_issues

    stats = {k: result["one/sample_stats/" + k] for k in ("issue_sum", "issue_count")}
    expected = label_issues.issue_score(stats, result["one/params/u"], result["one_probs"], result["given"])
    assert result["fit_score"].shape == (256,) and stats["issue_count"].sum() > 0
    assert rel(expected, result["fit_score"]) <= RTOL
