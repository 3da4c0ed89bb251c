"""One test per row of the reliability catalogue (bad inputs and faults).

Library rows use the tiny synthetic MLP runs of test_train.py; CLI rows use a tiny CIFAR-10
release written in the official format (64 training images) with a CIFAR-N file beside it.
"""

import dataclasses
import errno
import json
import os
import pathlib
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from experiments import cifar
from sopjax import configs as config_lib
from sopjax.data import arrays as arrays_lib
from sopjax.data import cifar as data
from sopjax.data import cifar_n, noise
from sopjax.infra import errors, jsonio, metrics, rundir
from sopjax.trainers import fit as fit_lib
from tests.tiny_data import tiny_cifar, write_pt

REPO = pathlib.Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------ building blocks


def _synthetic(N=128, Nt=64, d=12, K=10, seed=0):
    rng = np.random.default_rng(seed)
    mu = rng.standard_normal((K, d)) * 1.5
    y, yt = rng.integers(0, K, N).astype(np.int32), rng.integers(0, K, Nt).astype(np.int32)
    x = (mu[y] + rng.standard_normal((N, d))).astype(np.float32)
    xt = (mu[yt] + rng.standard_normal((Nt, d))).astype(np.float32)
    return arrays_lib.Arrays(x, noise.make_label_set("sym", y, K, 0.4, seed=0), xt, yt, K)


def _cfg(**kw):
    base = dict(label_set="sym", noise_rate=0.4, method="sop", arch="mlp", width=0.125, epochs=2, batch_size=32,
                lr=0.05, lr_u=10.0, lr_v=10.0, augment=False, eval_subset=32, init_std=0.1)
    return config_lib.Config(**{**base, **kw})


def _fit(cfg, arrays, workdir, **kw):
    return fit_lib.fit(cfg, arrays, workdir, progress=False, **kw)


def _strict_lines(path, whole=False):
    """JSON lines (or one JSON document) parsed strictly: NaN or Infinity raise."""
    def refuse(c):
        raise ValueError(f"non-strict JSON constant {c}")
    text = pathlib.Path(path).read_text()
    if whole:
        return json.loads(text, parse_constant=refuse)
    return [json.loads(l, parse_constant=refuse) for l in text.splitlines()]


CLI_BASE = ["--preset", "quick", "--arch", "mlp", "--width", "0.125", "--epochs", "2", "--batch-size", "16",
            "--eval-subset", "16", "--no-augment", "--no-progress", "--no-download"]


@pytest.fixture
def cli(tmp_path, monkeypatch, capsys):
    """Run the CLI on a tiny data dir; returns (rc, stderr) and checks the one-line rule."""
    monkeypatch.setenv("SOPJAX_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))

    def run(*argv, data_dir=None):
        capsys.readouterr()
        extra = ["--data-dir", str(data_dir)] if data_dir else []
        rc = cifar.main([*CLI_BASE, *extra, *map(str, argv)])
        err = capsys.readouterr().err
        if rc != 0:
            lines = [l for l in err.splitlines() if l.startswith("error:")]
            assert len(lines) == 1 and "Traceback" not in err, err
        return rc, err
    return run


def _make_unwritable(path: pathlib.Path):
    """chmod for users; root ignores modes, so an immutable flag there. Returns an undo."""
    if os.geteuid() != 0:
        path.chmod(0o555)
        return lambda: path.chmod(0o755)
    if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
        pytest.skip("running as root without chattr: cannot make a directory unwritable")
    return lambda: subprocess.run(["chattr", "-i", str(path)], check=True)


# ------------------------------------------------------ data loss / corruption


def test_two_concurrent_runs_on_one_workdir_refused_naming_the_holder(tmp_path):
    """Row 1: a second run fails at once, naming the PID of the run that holds the directory."""
    wd = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, pathlib; from sopjax.infra import lock; p = pathlib.Path(sys.argv[1]); "
         "p.mkdir(); held = lock.lock(p); print('held', flush=True); sys.stdin.read()", str(wd)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(errors.RunDirError, match=rf"in use by another run \(PID {holder.pid}\)"):
            _fit(_cfg(epochs=3), _synthetic(), wd)
        assert not (wd / "config.json").exists() and not (wd / "metrics.jsonl").exists()
    finally:
        holder.communicate("")
    _fit(_cfg(epochs=3), _synthetic(), wd, stop_after_epochs=1)  # free again once the holder ended
    assert len(_strict_lines(wd / "metrics.jsonl")) == 1


def test_resume_with_different_data_refuses_and_names_the_change(tmp_path):
    """Row 2: re-running a finished run with another label file must not overwrite its results."""
    arrays = _synthetic()
    _fit(_cfg(epochs=1), arrays, tmp_path)
    before = {f: (tmp_path / f).read_bytes() for f in ("summary.json", "config.json", "metrics.jsonl")}
    relabeled = dataclasses.replace(arrays, labels=dataclasses.replace(arrays.labels, noisy=arrays.labels.clean))
    with pytest.raises(errors.RunDirError, match="different data: the noisy labels changed"):
        _fit(_cfg(epochs=1), relabeled, tmp_path)
    with pytest.raises(errors.RunDirError, match="the training images changed"):
        _fit(_cfg(epochs=1), dataclasses.replace(arrays, x_train=arrays.x_train + 1), tmp_path)
    assert before == {f: (tmp_path / f).read_bytes() for f in before}
    fp = json.loads(before["config.json"])["data_fingerprint"]
    assert set(fp) == {"training images", "noisy labels", "clean labels", "test images", "test labels"}


def test_download_goes_to_the_user_cache_not_a_found_data_dir(tmp_path, monkeypatch):
    """Row 4: with no --data-dir, a download never targets a (shared, read-only) data folder."""
    shared = tmp_path / "shared" / "data"
    shared.mkdir(parents=True)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(data, "candidate_dirs", lambda explicit=None: [shared])
    targets = []

    def fake_download(url, dest, md5, timeout=60.0):
        targets.append(pathlib.Path(dest))
        raise data.DataError("stop here")
    monkeypatch.setattr(data, "download", fake_download)
    with pytest.raises(data.DataError, match="stop here"):
        data.load_cifar("cifar10", cache_dir=tmp_path / "c")
    assert targets == [tmp_path / "xdg" / "sopjax" / "data" / "cifar-10-python.tar.gz"]


# ------------------------------------------------------------ silently wrong


@pytest.mark.parametrize("flag, value", [("--lr", "-1"), ("--subset", "-49488"), ("--seed", "-1"),
                                         ("--width", "nan"), ("--milestones", "a,b"), ("--subset", "100000")])
def test_bad_flag_exits_2_in_one_line_and_writes_nothing(tmp_path, cli, flag, value):
    """Rows "--lr -1", "--subset -49488", "--seed -1", "--width nan", "--milestones a,b", and a
    subset larger than the data: refused before any work, with no run directory left."""
    d = tiny_cifar(tmp_path / "data")
    rc, err = cli(flag, value, "--label-set", "worst", "--workdir", tmp_path / "w", data_dir=d)
    assert rc == 2 and flag in err
    assert not (tmp_path / "w").exists()


def test_exploding_tables_are_caught_even_when_the_loss_stays_finite(tmp_path):
    """Row "--lr-u 1e30": the loss stays finite while u, v overflow (u⊙u is inf, so the noise
    scores would be NaN); the check reads the tables."""
    with pytest.raises(
        errors.TrainingDiverged, match=r"the [uv] table hold .*% entries that are NaN, inf or overflow.*--lr-[uv]"
    ):
        _fit(_cfg(lr_u=1e30, lr_v=1e30, epochs=1), _synthetic(), tmp_path / "w", log_every=1)
    assert not (tmp_path / "w").exists()  # no epoch finished: nothing to keep


def test_summary_and_metrics_are_strict_json_with_null_for_undefined(tmp_path):
    """Row "bare NaN in summary.json": with no wrong label, AUROC and memorization are undefined."""
    arrays = _synthetic()
    clean = dataclasses.replace(arrays, labels=noise.make_label_set("clean", arrays.labels.clean, 10))
    s = _fit(_cfg(label_set="clean", epochs=1), clean, tmp_path)
    summary = _strict_lines(tmp_path / "summary.json", whole=True)
    assert summary["detection_auroc"] is None and s["detection_auroc"] is None
    assert _strict_lines(tmp_path / "metrics.jsonl")[0]["memorized_wrong"] is None
    assert jsonio.dumps({"a": float("nan"), "b": [np.float32("inf")]}) == '{"a": null, "b": [null]}'


# -------------------------------------------------------------- clear errors


def test_workdir_that_is_a_file_or_unwritable_fails_before_loading_data(tmp_path, cli):
    f = tmp_path / "file"
    f.write_text("x")
    rc, err = cli("--workdir", f)  # no --data-dir: the check comes before any data lookup
    assert rc == 2 and "is a file" in err
    ro = tmp_path / "ro"
    ro.mkdir()
    undo = _make_unwritable(ro)
    try:
        rc, err = cli("--workdir", ro / "run")
        assert rc == 2 and f"cannot write in {ro}" in err and not (ro / "run").exists()
    finally:
        undo()


def test_unwritable_checkpoint_dir_fails_at_once(tmp_path):
    """Row "checkpoints/ not writable": refused when the run opens, not after an orbax timeout."""
    arrays = _synthetic()
    _fit(_cfg(epochs=3), arrays, tmp_path, stop_after_epochs=1)
    undo = _make_unwritable(tmp_path / "checkpoints")
    try:
        with pytest.raises(errors.RunDirError, match="cannot write in .*checkpoints"):
            _fit(_cfg(epochs=3), arrays, tmp_path)
    finally:
        undo()
    assert len(_strict_lines(tmp_path / "metrics.jsonl")) == 1


def _damage(ckpt: pathlib.Path, how: str):
    files = sorted((p for p in ckpt.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    if how == "metadata":
        (ckpt / "default" / "_METADATA").unlink()
    elif how == "delete":
        files[-1].unlink()
    else:
        files[-1].write_bytes(files[-1].read_bytes()[: files[-1].stat().st_size // 2])


@pytest.fixture(scope="module")
def two_epoch_run(tmp_path_factory):
    wd = tmp_path_factory.mktemp("base")
    _fit(_cfg(epochs=3), _synthetic(), wd, stop_after_epochs=2)
    return wd


@pytest.mark.parametrize("how", ["truncate", "delete", "metadata"])
def test_corrupt_latest_checkpoint_falls_back_to_the_previous_one(tmp_path, two_epoch_run, how, capsys):
    """Row "corrupt latest checkpoint": skipped with a warning naming it, kept aside, and the
    epoch it held is trained again to the same numbers."""
    wd = tmp_path / "run"
    shutil.copytree(two_epoch_run, wd)
    epoch2 = _strict_lines(wd / "metrics.jsonl")[1]
    _damage(wd / "checkpoints" / "2", how)
    assert _fit(_cfg(epochs=3), _synthetic(), wd, stop_after_epochs=1) is None
    err = capsys.readouterr().err
    assert "checkpoint after epoch 2 cannot be read" in err and (wd / "corrupt-checkpoints" / "2").is_dir()
    again = _strict_lines(wd / "metrics.jsonl")
    assert [r["epoch"] for r in again] == [1, 2]
    assert again[1]["train_loss"] == epoch2["train_loss"] and again[1]["test_acc"] == epoch2["test_acc"]


def test_no_readable_checkpoint_is_an_error_not_a_silent_restart(tmp_path, two_epoch_run):
    shutil.copytree(two_epoch_run, tmp_path / "run")
    for step in ("1", "2"):
        _damage(tmp_path / "run" / "checkpoints" / step, "truncate")
    with pytest.raises(errors.RunDirError, match="no checkpoint .* can be read"):
        _fit(_cfg(epochs=3), _synthetic(), tmp_path / "run")


@pytest.mark.parametrize("payload", ["malicious", "garbage", "no_key", "out_of_range"])
def test_bad_label_file_exits_2_before_training(tmp_path, cli, payload):
    """Rows "malicious or garbage pickle", ".pt without the expected key", "labels out of range"."""
    d = tiny_cifar(tmp_path / "data")
    pt = d / "CIFAR-10_human.pt"
    clean = cifar_n.read_cifar_n(pt)["clean_label"]
    if payload == "malicious":
        with zipfile.ZipFile(pt, "w") as z:  # a pickle that would call os.system
            z.writestr("x/data.pkl", b"cos\nsystem\n(S'touch " + str(tmp_path / "pwned").encode() + b"'\ntR.")
    elif payload == "garbage":
        with zipfile.ZipFile(pt, "w") as z:
            z.writestr("x/data.pkl", b"\x80\x02}q\x00(X\x03\x00\x00\x00abc")
    elif payload == "no_key":
        write_pt(pt, {"clean_label": clean})
    else:
        write_pt(pt, {"clean_label": clean, "worse_label": clean + 10})
    rc, err = cli("--label-set", "worst", "--workdir", tmp_path / "w", data_dir=d)
    assert rc == 2 and (str(pt) in err or "outside [0, 10)" in err)
    assert not (tmp_path / "w").exists() and not (tmp_path / "pwned").exists()


def test_divergence_message_is_true_and_its_advice_can_be_followed(tmp_path):
    """Row "divergence": no false "after epoch 0"; resuming with a lower lr works with
    --allow-lr-change and is recorded; without it the refusal says how."""
    arrays, wd = _synthetic(), tmp_path / "run"
    with pytest.raises(errors.TrainingDiverged, match="No epoch finished, so nothing was kept: re-run") as e:
        _fit(_cfg(lr=1e30, epochs=3), arrays, wd, log_every=1)
    assert "epoch 0" not in str(e.value) and not wd.exists()
    _fit(_cfg(epochs=3), arrays, wd, stop_after_epochs=1)
    with pytest.raises(errors.TrainingDiverged, match="checkpoint after epoch 1 is kept .* --allow-lr-change"):
        _fit(_cfg(lr=1e30, epochs=3), arrays, wd, log_every=1, allow_lr_change=True)
    with pytest.raises(errors.RunDirError, match="lr: 0.05 -> 0.01.*add --allow-lr-change"):
        _fit(_cfg(lr=0.01, epochs=3), arrays, wd)
    assert _fit(_cfg(lr=0.01, epochs=3), arrays, wd, allow_lr_change=True) is not None
    rec = json.loads((wd / "config.json").read_text())
    # the diverged attempt kept nothing, so only the change that trained epochs 2-3 is recorded
    assert rec["config"]["lr"] == 0.05 and [(c["after_epoch"], c["lr"]) for c in rec["lr_changes"]] == [(1, 0.01)]
    assert [r["epoch"] for r in _strict_lines(wd / "metrics.jsonl")] == [1, 2, 3]


def test_run_that_kept_no_epoch_does_not_block_the_corrected_rerun(tmp_path):
    """Row "a run that fails after writing config.json blocks the corrected re-run"."""
    arrays = _synthetic()
    rundir.RunDir.open(tmp_path, fit_lib.config_record(_cfg(lr=1e30), arrays, 128, 4)).close()  # as if killed
    assert (tmp_path / "config.json").is_file()
    assert _fit(_cfg(epochs=3), arrays, tmp_path, stop_after_epochs=1) is None
    assert json.loads((tmp_path / "config.json").read_text())["config"]["lr"] == 0.05


def test_disk_full_is_one_line_and_debug_shows_the_traceback(tmp_path, cli, monkeypatch):
    """Row "full disk": exit 2 and one line; --debug re-raises for the traceback."""
    d = tiny_cifar(tmp_path / "data")

    def full(self, rec, total_epochs):
        raise OSError(errno.ENOSPC, "No space left on device", str(self.path))
    monkeypatch.setattr(metrics.MetricWriter, "write", full)
    rc, err = cli("--label-set", "worst", "--workdir", tmp_path / "w", data_dir=d)
    assert rc == 2 and "No space left on device" in err and "free disk space" in err
    with pytest.raises(OSError):
        cifar.main([*CLI_BASE, "--label-set", "worst", "--workdir", str(tmp_path / "w2"), "--data-dir", str(d),
                    "--debug"])


def test_cli_end_to_end_on_tiny_data_then_a_changed_label_file(tmp_path, cli):
    """The CLI path of row 2: a finished run, then the same command with another label file."""
    d = tiny_cifar(tmp_path / "data")
    assert cli("--label-set", "worst", "--workdir", tmp_path / "w", data_dir=d)[0] == 0
    summary = (tmp_path / "w" / "summary.json").read_bytes()
    clean = cifar_n.read_cifar_n(d / "CIFAR-10_human.pt")["clean_label"]
    write_pt(d / "CIFAR-10_human.pt", {"clean_label": clean, "worse_label": clean})
    rc, err = cli("--label-set", "worst", "--workdir", tmp_path / "w", data_dir=d)
    assert rc == 2 and "noisy labels changed" in err
    assert (tmp_path / "w" / "summary.json").read_bytes() == summary
