"""SOP trained from a streamed folder of PNGs (sopjax.stream_train) and its CLI path."""

import dataclasses
import json

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from experiments import cifar
from sopjax import configs as config_lib
from sopjax.data import folder as stream
from sopjax.trainers import state as tstate
from sopjax.trainers import step as step_lib
from sopjax.trainers import stream as stream_train
from tests.experiments.test_distributed_cli import checkpoint

N, NT, K, S = 300, 40, 10, 8
CFG = config_lib.Config(method="sop", arch="mlp", width=0.0625, epochs=2, batch_size=32, lr=0.05, lr_u=10.0,
                        lr_v=10.0, init_std=1e-3, augment=True, eval_subset=0)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """N training and NT test S×S PNGs with seeded random pixels and labels, and their lists."""
    root = tmp_path_factory.mktemp("folder")
    rng = np.random.default_rng(0)
    for name, n in (("train", N), ("test", NT)):
        (root / name).mkdir()
        labels = rng.integers(0, K, n)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (S, S, 3), dtype=np.uint8)).save(root / name / f"{i}.png")
        (root / f"{name}.txt").write_text("".join(f"{name}/{i}.png {y}\n" for i, y in enumerate(labels)))
    return root


def load(folder):
    return stream.load_folder(folder, folder / "train.txt", K, S, folder / "test.txt")


@pytest.fixture(scope="module")
def runs(folder, tmp_path_factory):
    """The same 2-epoch run uninterrupted, and stopped after epoch 1 then resumed."""
    tmp, data = tmp_path_factory.mktemp("runs"), load(folder)
    whole = stream_train.fit_stream(CFG, data, tmp / "whole", progress=False, log_every=4)
    assert stream_train.fit_stream(CFG, data, tmp / "resumed", progress=False, log_every=4, stop_after_epochs=1) is None
    after_1 = checkpoint(tmp / "resumed" / "checkpoints" / "1" / "state")
    resumed = stream_train.fit_stream(CFG, data, tmp / "resumed", progress=False, log_every=4)
    return {"data": data, "whole": tmp / "whole", "resumed": tmp / "resumed", "after_1": after_1,
            "summaries": (whole, resumed)}


def test_rows_of_u_and_v_that_move_are_the_rows_the_loader_yielded(runs):
    # Catches u, v indexed by position in the batch instead of by dataset position, labels
    # gathered for other rows than the images, and a loader other than the one trained on.
    data = runs["data"]
    spe = stream_train.steps_per_epoch(CFG, N)
    it = iter(stream_train.train_loader(CFG, data))
    seen = np.unique(np.concatenate([np.asarray(next(it)[1]) for _ in range(spe)]))
    assert len(seen) == spe * CFG.batch_size < N  # one pass, the remainder not yet read
    init = tstate.create_train_state(
        CFG, tstate.build_model(CFG, K), np.zeros((1, S, S, 3), np.uint8), N, K, spe
    ).params
    u0, v0 = np.asarray(init["u"]), np.asarray(init["v"])
    u1, v1 = runs["after_1"]["['params']['u']"], runs["after_1"]["['params']['v']"]
    moved_u = np.flatnonzero(np.any(u1 != u0, axis=1))
    moved_v = np.flatnonzero(np.any(v1 != v0, axis=1))
    np.testing.assert_array_equal(moved_u, seen)
    np.testing.assert_array_equal(moved_v, seen)
    # SOP's v never moves in the column of the row's given label (s = u²y − v²(1−y)), so this
    # holds only if each row was trained with its own label from the list.
    y = data.train.labels
    np.testing.assert_array_equal(v1[np.arange(N), y], v0[np.arange(N), y])


def test_both_views_are_cropped_on_the_device_from_the_unaugmented_image(folder):
    # Catches the host cropping and flipping the loaded images, which makes the strong view a
    # view of the weak view's crop; on the folder path both views must come out exactly as the
    # CIFAR path builds them from the raw images (each view its own crop and flip).
    cfg, data = dataclasses.replace(CFG, method="sop_plus"), load(folder)
    x, idx = (np.asarray(a) for a in next(iter(stream_train.train_loader(cfg, data))))
    raw = np.stack([np.asarray(Image.open(data.train.paths[i]).convert("RGB")) for i in idx])
    np.testing.assert_array_equal(x, raw)
    state = tstate.create_train_state(cfg, tstate.build_model(cfg, K), raw, N, K, 1)
    spec, y_all = step_lib.StepSpec.from_config(cfg), jnp.asarray(data.train.labels)
    got = stream_train.stream_batch(state, jnp.asarray(x), jnp.asarray(idx), y_all, spec)
    want = step_lib.build_batch(state, jnp.asarray(raw), y_all[idx], jnp.asarray(idx), spec, weak_augment=True)
    for view in ("x", "x_strong"):
        np.testing.assert_allclose(np.asarray(got[view]), np.asarray(want[view]), atol=1e-6)
    plain = step_lib.build_batch(state, jnp.asarray(raw), y_all[idx], jnp.asarray(idx), spec, weak_augment=False)
    assert not np.allclose(np.asarray(got["x"]), np.asarray(plain["x"]))   # the weak view is cropped/flipped


def test_interrupted_then_resumed_equals_uninterrupted(runs):
    # Catches a resume that restarts the loader (other batches, other flips and crops) or
    # loses the state's step, tables or optimizer state.
    whole, resumed = runs["whole"], runs["resumed"]
    a = [json.loads(l) for l in (whole / "metrics.jsonl").read_text().splitlines()]
    b = [json.loads(l) for l in (resumed / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in a] == [r["epoch"] for r in b] == [1, 2]
    for ra, rb in zip(a, b):
        for k in ("step", "train_loss", "train_ce", "train_mse", "train_acc", "test_acc", "test_size"):
            assert ra[k] == rb[k], k
    ca, cb = (checkpoint(d / "checkpoints" / "2" / "state") for d in (whole, resumed))
    assert ca.keys() == cb.keys()
    for k in ca:
        np.testing.assert_array_equal(ca[k], cb[k], err_msg=k)
    np.testing.assert_array_equal(
        np.load(whole / "noise_scores.npz")["score"], np.load(resumed / "noise_scores.npz")["score"]
    )
    assert runs["summaries"][0]["test_acc_last"] == runs["summaries"][1]["test_acc_last"] == a[-1]["test_acc"]
    assert a[-1]["test_size"] == NT


CLI = ["--preset", "quick", "--arch", "mlp", "--width", "0.0625", "--epochs", "1", "--batch-size", "32",
       "--image-size", str(S), "--num-classes", str(K), "--no-progress"]


def test_cli_trains_a_folder_end_to_end(folder, tmp_path, capsys):
    w = tmp_path / "w"
    rc = cifar.main([*CLI, "--image-root", str(folder), "--label-file", str(folder / "train.txt"),
                     "--test-label-file", str(folder / "test.txt"), "--workdir", str(w)])
    assert rc == 0, capsys.readouterr().err
    assert f"data: {N} images listed in" in capsys.readouterr().out
    scores = np.load(w / "noise_scores.npz")
    assert scores["score"].shape == (N,) and sorted(scores["ranking"]) == list(range(N))
    rec = json.loads((w / "config.json").read_text())
    assert rec["num_train"] == N and rec["label_file"] == str(folder / "train.txt") and rec["config"]["subset"] == 0
    assert json.loads((w / "summary.json").read_text())["epochs"] == 1


@pytest.mark.parametrize("line, extra, message", [
    ("train/0.png 12", [], "train.txt line 3: label 12 is outside [0, 10)"),
    ("train/nope.png 1", [], "train.txt line 3: image 'train/nope.png' not found"),
    (None, ["--seeds", "0,1"], "--compare and --seeds take CIFAR only"),
    (None, ["--num-classes", "1"], "--num-classes must be an integer >= 2"),
])
def test_bad_folder_input_is_one_line_exit_2_and_no_run_directory(folder, tmp_path, capsys, line, extra, message):
    lines = (folder / "train.txt").read_text().splitlines()
    (tmp_path / "train.txt").write_text("\n".join(lines[:2] + ([line] if line else []) + lines[2:]) + "\n")
    w = tmp_path / "w"
    rc = cifar.main([*CLI, "--image-root", str(folder), "--label-file", str(tmp_path / "train.txt"), *extra,
                     "--workdir", str(w)])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not w.exists()


def test_resume_with_another_worker_count_is_refused_and_keeps_the_checkpoints(runs):
    # grain batches within each worker: restoring its state under another count would fail
    # and the checkpoints would be set aside as unreadable.
    before = sorted(p.name for p in (runs["resumed"] / "checkpoints").iterdir())
    with pytest.raises(ValueError, match="resume with --loader-workers 0"):
        stream_train.fit_stream(CFG, runs["data"], runs["resumed"], workers=1, progress=False)
    assert sorted(p.name for p in (runs["resumed"] / "checkpoints").iterdir()) == before
    assert not (runs["resumed"] / "corrupt-checkpoints").exists()
