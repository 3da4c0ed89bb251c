"""Runs side by side (sopjax.multirun): vmapped seeds equal the same runs one by one."""

import dataclasses
import json
import types

import jax
import numpy as np
import pytest

from sopjax import configs as config_lib
from sopjax import models
from sopjax.data import arrays as arrays_lib
from sopjax.data import constants, noise
from sopjax.trainers import fit as fit_lib
from sopjax.trainers import multirun
from sopjax.trainers import state as tstate

# Compiles for several device layouts or runs; > 20 s on the shared 2-core CPU.
pytestmark = pytest.mark.slow

N, K, SEEDS = 128, 10, (0, 1)
RTOL = 1e-5


def rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a), 1e-30))


def images(n, seed):
    """Tiny uint8 'images' (8×8×3) whose mean colour encodes the class, so an MLP learns them;
    uint8 input turns on the per-run crop-and-flip augmentation."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, K, n).astype(np.int32)
    x = np.clip(rng.normal(20 * y[:, None, None, None] + 30, 40, (n, 8, 8, 3)), 0, 255).astype(np.uint8)
    return x, y


def cfgs():
    base = config_lib.Config(label_set="sym", noise_rate=0.4, method="sop", arch="mlp", width=0.25, epochs=2,
                             batch_size=32, lr=0.05, lr_u=10.0, lr_v=10.0, init_std=0.1, augment=True,
                             eval_subset=32)
    return [dataclasses.replace(base, seed=s) for s in SEEDS]


def arrays_for(cfg, x, y, xt, yt):
    return arrays_lib.Arrays(x, noise.make_label_set("sym", y, K, cfg.noise_rate, seed=cfg.seed), xt, yt, K)


NO_RUN = types.SimpleNamespace(last_epoch=None, path="(none)")


@pytest.fixture(scope="module")
def both():
    """2 epochs of each seed one by one (fit_lib.train_epoch) and side by side (multirun)."""
    x, y = images(N, 0)
    model = models.make_model("mlp", K, 0.25)
    runs = [arrays_for(c, x, y, x[:16], y[:16]) for c in cfgs()]
    one, one_m = [], []
    for c, a in zip(cfgs(), runs):
        st = tstate.create_train_state(c, model, x, N, K, N // c.batch_size)
        data = (jax.device_put(x), jax.device_put(a.labels.noisy))
        ms = []
        for e in range(c.epochs):
            st, m = fit_lib.train_epoch(st, e, data, c, 4, NO_RUN)
            ms.append(m)
        one.append(st)
        one_m.append(ms)
    states = multirun.stack([tstate.create_train_state(c, model, x, N, K, N // 32) for c in cfgs()])
    y_all = jax.numpy.asarray(np.stack([a.labels.noisy for a in runs]))
    many_m = []
    for e in range(2):
        states, ms = multirun.train_epoch(states, e, jax.device_put(x), y_all, cfgs()[0], 4, [NO_RUN] * len(SEEDS))
        many_m.append(ms)
    return one, one_m, states, many_m, runs


def test_vmapped_seeds_equal_the_runs_one_by_one(both):
    # Catches a shared (not per-run) rng, data order or augmentation, labels of the wrong
    # run, or tables mixed between runs.
    one, one_m, states, many_m, _ = both
    for i in range(len(SEEDS)):
        mine = multirun.unstack(states, i)
        for e in range(2):
            for k, v in one_m[i][e].items():
                assert rel(v, many_m[e][i][k]) <= RTOL, (i, e, k)
        for a, b in zip(jax.tree.leaves(one[i].params), jax.tree.leaves(mine.params)):
            assert rel(a, b) <= RTOL
        assert int(mine.step) == 2 * (N // 32)
    # and the seeds really are different runs
    assert rel(one[0].params["v"], one[1].params["v"]) > 0.5
    assert one_m[0][1]["train_loss"] != one_m[1][1]["train_loss"]


def test_fit_many_writes_one_run_directory_each(both, tmp_path):
    _, one_m, _, _, runs = both
    cs = [dataclasses.replace(c, epochs=1) for c in cfgs()]
    x = runs[0].x_train
    # epochs=1 changes the cosine schedule, so compare against its own one-by-one run
    model = models.make_model("mlp", K, 0.25)
    st = tstate.create_train_state(cs[1], model, x, N, K, N // 32)
    _, ref = fit_lib.train_epoch(st, 0, (jax.device_put(x), jax.device_put(runs[1].labels.noisy)), cs[1], 4, NO_RUN)
    dirs = [tmp_path / f"s{s}" for s in SEEDS]
    summaries = multirun.fit_many(cs, runs, dirs, model=model, echo=False)
    assert [s["seed"] for s in summaries] == list(SEEDS)
    mean, std, source = constants.input_stats(cs[0].dataset, x)
    for d, c in zip(dirs, cs):
        record = json.loads((d / "config.json").read_text())
        assert record["seed"] == c.seed
        # the normalization the runs trained with is recorded, as a single run records it
        assert record["input_normalization"] == {"mean": [float(m) for m in mean], "std": [float(v) for v in std],
                                                 "source": source}
        assert (d / "summary.json").exists() and (d / "noise_scores.npz").exists()
    line = json.loads((dirs[1] / "metrics.jsonl").read_text().splitlines()[0])
    assert rel(ref["train_loss"], line["train_loss"]) <= RTOL
    assert line["runs_side_by_side"] == 2


def test_runs_that_cannot_share_a_step_are_refused():
    a, b = cfgs()
    multirun.check_compatible([a, dataclasses.replace(b, noise_rate=0.2)])  # allowed
    with pytest.raises(ValueError, match="lr"):
        multirun.check_compatible([a, dataclasses.replace(b, lr=0.1)])


def test_cli_seeds_override_the_cpu_default_comparison(monkeypatch, capsys):
    # `--subset 1024 --epochs 1 --seeds 0,1` without --preset runs the seeds, not the
    # cpu-compare preset's CE-vs-SOP comparison, and --compare with --seeds is refused rather
    # than one of them silently ignored.
    from experiments import cifar

    called = []
    monkeypatch.setattr(cifar, "choose_preset", lambda requested: (requested or "cpu-compare", "test"))
    monkeypatch.setattr(cifar, "run_seeds", lambda args, cfg, *a: called.append(("seeds", cfg.method)) or 0)
    monkeypatch.setattr(cifar, "run_compare", lambda *a: called.append("compare") or 0)
    assert cifar.main(["--subset", "1024", "--epochs", "1", "--seeds", "0,1"]) == 0
    assert cifar.main(["--subset", "1024", "--epochs", "1"]) == 0
    assert called == [("seeds", "sop"), "compare"]
    assert cifar.main(["--compare", "ce,sop", "--seeds", "0,1"]) == 2
    assert "cannot be combined" in capsys.readouterr().err
