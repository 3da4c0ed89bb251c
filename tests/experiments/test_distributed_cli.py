"""``python -m experiments.cifar`` as two processes on 127.0.0.1 (CPU devices, gloo) against
one process: one run directory, written by process 0 alone, and the same run.

Process 1 runs in its own working directory with the same relative ``--workdir run``, whose
``checkpoints`` is a link to process 0's (the shared storage orbax needs). Any run file that
process 1 wrote (config, metrics, lock, summary, scores, plots) would land beside that link.
"""

import json
import pathlib

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from experiments import cifar  # noqa: E402
from tests.tiny_data import tiny_cifar
from tests.workers.launch import free_port, launch

# Three CLI processes (2 + 1) that import JAX and compile; ~45 s on the shared 2-core CPU.
pytestmark = pytest.mark.slow

RTOL = 1e-5
EPOCHS = 2
ARGS = ["-m", "experiments.cifar", "--preset", "quick", "--method", "sop", "--arch", "mlp", "--width", "0.125",
        "--epochs", str(EPOCHS), "--batch-size", "16", "--eval-subset", "32", "--label-set", "sym", "--noise-rate",
        "0.4", "--no-progress", "--no-download", "--workdir", "run"]
TIMING = {"epoch_train_s", "epoch_total_s", "images_per_s", "mean_images_per_s", "train_wall_s"}


def rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a), 1e-30))


def numbers(rec: dict) -> dict:
    """The numeric entries of a metrics line or a summary (nested dicts flattened), timings left out."""
    out = {}
    for k, v in rec.items():
        if isinstance(v, dict):
            out.update({f"{k}/{kk}": vv for kk, vv in numbers(v).items()})
        elif isinstance(v, (int, float)) and not isinstance(v, bool) and k not in TIMING:
            out[k] = v
    return out


def checkpoint(path: pathlib.Path) -> dict:
    """Every array of an orbax TrainState checkpoint as numpy, whatever devices wrote it."""
    ck = ocp.PyTreeCheckpointer()
    tree = ck.metadata(path).item_metadata.tree
    args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
    got = ck.restore(path, args=ocp.args.PyTreeRestore(restore_args=args))
    return {jax.tree_util.keystr(p): np.asarray(v) for p, v in jax.tree_util.tree_leaves_with_path(got)}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("distributed_cli")
    data = tiny_cifar(tmp / "data", per_batch=32)  # 160 training images, 32 test images
    c0, c1, one = tmp / "process0", tmp / "process1", tmp / "one"
    (c0 / "run" / "checkpoints").mkdir(parents=True)
    (c1 / "run").mkdir(parents=True)
    (c1 / "run" / "checkpoints").symlink_to(c0 / "run" / "checkpoints", target_is_directory=True)
    one.mkdir()
    env = {"SOPJAX_CACHE_DIR": str(tmp / "cache"), "XDG_CACHE_HOME": str(tmp / "xdg")}
    argv = ARGS + ["--data-dir", data]
    addr = f"127.0.0.1:{free_port()}"
    procs = [launch(argv + ["--coordinator-address", addr, "--num-processes", 2, "--process-id", pid], cwd=cwd, env=env)
             for pid, cwd in ((0, c0), (1, c1))]
    procs.append(launch(argv, cwd=one, env=env))
    logs = [p.communicate(timeout=300)[0] for p in procs]
    for p, log in zip(procs, logs):
        assert p.returncode == 0, log[-3000:]
    return {"two": c0 / "run", "process1": c1 / "run", "one": one / "run", "logs": logs}


def test_only_process_0_writes_run_files(runs):
    # Catches process 1 writing config.json, metrics, the lock, summary, scores or plots.
    assert [p.name for p in runs["process1"].iterdir()] == ["checkpoints"]
    assert "process 1 of 2" in runs["logs"][1] and "epoch 1/2:" not in runs["logs"][1]
    assert "data parallel over 2 cpu devices in 2 process(es)" in runs["logs"][0]
    two = runs["two"]
    for name in ("config.json", "summary.json", "noise_scores.npz", "training_curves.png", "detection.png"):
        assert (two / name).is_file(), name
    assert len((two / "metrics.jsonl").read_text().splitlines()) == EPOCHS  # not one line per process
    assert sorted(p.name for p in (two / "checkpoints").iterdir()) == ["1", "2"]


def test_two_processes_give_the_one_process_run(runs):
    # Catches a process that trains on the wrong shard, gradients not reduced across
    # processes, or files written from one process's partial view.
    two, one = runs["two"], runs["one"]
    m2 = [numbers(json.loads(l)) for l in (two / "metrics.jsonl").read_text().splitlines()]
    m1 = [numbers(json.loads(l)) for l in (one / "metrics.jsonl").read_text().splitlines()]
    assert len(m1) == len(m2) == EPOCHS
    for a, b in zip(m1, m2):
        assert a.keys() == b.keys() and {"train_loss", "test_acc", "fit_clean_acc"} <= a.keys()
        assert rel([a[k] for k in a], [b[k] for k in a]) <= RTOL
    s1, s2 = (numbers(json.loads((d / "summary.json").read_text())) for d in (one, two))
    assert s1.keys() == s2.keys() and rel(list(s1.values()), [s2[k] for k in s1]) <= RTOL
    assert rel(np.load(one / "noise_scores.npz")["score"], np.load(two / "noise_scores.npz")["score"]) <= RTOL
    c1, c2 = (checkpoint(d / "checkpoints" / str(EPOCHS) / "default") for d in (one, two))
    assert c1.keys() == c2.keys() and "['params']['u']" in c1
    for k in c1:
        assert rel(c1[k], c2[k]) <= RTOL, k


@pytest.mark.parametrize("argv, message", [
    (["--num-processes", "2", "--process-id", "0"], "needs --coordinator"),
    (["--coordinator-address", "127.0.0.1:1", "--num-processes", "2", "--process-id", "2"], "0 … 1"),
])
def test_incomplete_process_settings_exit_2_in_one_line(tmp_path, capsys, argv, message):
    assert cifar.main([*argv, "--workdir", str(tmp_path / "w")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "w").exists()
