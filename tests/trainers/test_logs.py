"""A run's TensorBoard event files and steps.jsonl, beside metrics.jsonl."""

import json

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from sopjax.configs import Config
from sopjax.data.arrays import Arrays
from sopjax.data.noise import make_label_set
from sopjax.trainers import fit as fit_lib
from sopjax.trainers.logs import RunLogs

CFG = Config(label_set="sym", noise_rate=0.4, method="sop", arch="mlp", width=0.125, epochs=3, batch_size=16,
             lr=0.05, lr_u=10.0, lr_v=10.0, augment=False, eval_subset=32, init_std=0.1)


def _arrays():
    rng = np.random.default_rng(0)
    mu = rng.standard_normal((10, 8)) * 1.5
    y, yt = rng.integers(0, 10, 96).astype(np.int32), rng.integers(0, 10, 32).astype(np.int32)
    x = (mu[y] + rng.standard_normal((96, 8))).astype(np.float32)
    xt = (mu[yt] + rng.standard_normal((32, 8))).astype(np.float32)
    return Arrays(x, make_label_set("sym", y, 10, 0.4, seed=0), xt, yt, 10)


def _scalars(path):
    acc = EventAccumulator(str(path))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    w = tmp_path_factory.mktemp("logs") / "w"
    fit_lib.fit(CFG, _arrays(), w, progress=False, log_every=2)
    return w


def test_tensorboard_reads_back_every_epoch_value_of_metrics_jsonl(run):
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    tb = _scalars(run)
    numeric = [k for k, v in records[0].items() if isinstance(v, (int, float)) and k not in ("epoch", "step")]
    assert {"test_acc", "train_loss", "memorized_wrong", "nc1_given"} <= set(numeric)
    for key in numeric:
        assert tb[f"epoch/{key}"] == [(r["step"], np.float32(r[key])) for r in records], key


def test_step_level_metrics_are_kept_every_log_every_steps(run):
    lines = [json.loads(line) for line in (run / "steps.jsonl").read_text().splitlines()]
    spe = 96 // 16
    assert [d["step"] for d in lines] == [s for e in range(3) for s in (e * spe + 2, e * spe + 4, e * spe + 6)]
    assert {"loss", "acc", "ce", "mse"} <= set(lines[0])
    tb = _scalars(run)["step/loss"]
    assert tb == [(d["step"], np.float32(d["loss"])) for d in lines]


def test_a_resume_drops_the_steps_after_its_checkpoint(tmp_path):
    (tmp_path / "steps.jsonl").write_text("".join(json.dumps({"step": s, "loss": 1.0}) + "\n" for s in (2, 4, 6, 8)))
    RunLogs([tmp_path], start_step=4, tensorboard=False).close()
    assert [json.loads(x)["step"] for x in (tmp_path / "steps.jsonl").read_text().splitlines()] == [2, 4]


def test_a_resumed_run_logs_each_step_once(tmp_path):
    w = tmp_path / "w"
    assert fit_lib.fit(CFG, _arrays(), w, progress=False, log_every=2, stop_after_epochs=1) is None
    with RunLogs([w], start_step=6) as crashed:  # steps logged after the checkpoint, then a crash
        crashed.on_log(0, 8, {"loss": 99.0})
    fit_lib.fit(CFG, _arrays(), w, progress=False, log_every=2)
    lines = [json.loads(line) for line in (w / "steps.jsonl").read_text().splitlines()]
    assert [d["step"] for d in lines] == list(range(2, 19, 2)) and 99.0 not in [d["loss"] for d in lines]
    assert _scalars(w)["step/loss"] == [(d["step"], np.float32(d["loss"])) for d in lines]
    assert [s for s, _ in _scalars(w)["epoch/test_acc"]] == [6, 12, 18]
