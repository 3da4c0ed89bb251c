"""The reliability catalogue, second part: one test per row (re-runs that lost or overwrote
files, data that differs from its fingerprint, values some paths did not check, sizes that
do not fit, and errors that were unclear or hung). The first part is test_reliability.py;
benchmarks/reliability_probe.py runs every row as a user would and counts the verdicts.
"""

import argparse
import dataclasses
import gc
import io
import json
import os
import pathlib
import pickle
import shutil
import signal
import socket
import threading
import time
import warnings
import zipfile

import numpy as np
import pytest
from PIL import Image

from experiments import cifar
from experiments import image_restoration as ir
from sopjax.data import cifar as data
from sopjax.data import cifar_n, decode_cache
from sopjax.data import folder as folder_lib
from sopjax.evaluators import comparison
from sopjax.infra import cli, distributed, errors, memory, rundir
from tests.experiments.test_reliability import CLI_BASE, _cfg, _fit, _strict_lines, _synthetic
from tests.tiny_data import tiny_cifar
from theory import matrix_recovery as mr
from theory import phase_transition as pt


def _files(d: pathlib.Path) -> dict:
    """Every file under ``d`` but the lock with its bytes and mtime: what "nothing was touched" compares."""
    return {str(p.relative_to(d)): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(d.rglob("*"))
            if p.is_file() and not p.name.startswith(".lock")}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished 2-epoch run (config, metrics, checkpoints, summary) to copy and damage."""
    wd = tmp_path_factory.mktemp("finished") / "run"
    _fit(_cfg(epochs=2), _synthetic(), wd)
    return wd


@pytest.fixture
def run_cli(tmp_path, monkeypatch, capsys):
    """The CLI on tiny data (test_reliability's ``cli``): returns (rc, stderr) and checks that a
    failure is one ``error:`` line without a traceback."""
    monkeypatch.setenv("SOPJAX_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))

    def run(*argv, data_dir=None):
        capsys.readouterr()
        rc = cifar.main([*CLI_BASE, *(["--data-dir", str(data_dir)] if data_dir else []), *map(str, argv)])
        err = capsys.readouterr().err
        if rc != 0:
            assert len([x for x in err.splitlines() if x.startswith("error:")]) == 1 and "Traceback" not in err, err
        return rc, err
    return run


def _copy(finished, tmp_path) -> pathlib.Path:
    shutil.copytree(finished, tmp_path / "run")
    return tmp_path / "run"


# ------------------------------------------------------------------ data loss


def test_finished_run_rerun_touches_nothing_and_returns_its_summary(finished, tmp_path):
    wd = _copy(finished, tmp_path)
    before = _files(wd)
    s = _fit(_cfg(epochs=2), _synthetic(), wd)
    assert _files(wd) == before and s == json.loads((wd / "summary.json").read_text()) and s["epochs"] == 2


def test_finished_run_without_metrics_is_refused_and_its_summary_kept(finished, tmp_path):
    """Was: summary.json overwritten with 0 epochs and null accuracies, exit 0."""
    wd = _copy(finished, tmp_path)
    (wd / "metrics.jsonl").unlink()
    before = _files(wd)
    with pytest.raises(errors.RunDirError, match="metrics.jsonl is missing or empty but checkpoints/ reaches epoch 2"):
        _fit(_cfg(epochs=2), _synthetic(), wd)
    assert _files(wd) == before


def test_run_without_checkpoints_keeps_its_metrics(finished, tmp_path):
    """Was: metrics.jsonl emptied before retraining. Finished: left as it is; unfinished
    (no summary): refused, since training on would drop the recorded epochs."""
    wd = _copy(finished, tmp_path)
    shutil.rmtree(wd / "checkpoints")
    before = _files(wd)
    assert _fit(_cfg(epochs=2), _synthetic(), wd)["epochs"] == 2 and _files(wd) == before
    (wd / "summary.json").unlink()
    before = _files(wd)
    with pytest.raises(errors.RunDirError, match="holds epochs 1–2 but there is no checkpoint"):
        _fit(_cfg(epochs=2), _synthetic(), wd)
    assert _files(wd) == before


def test_checkpoints_without_config_json_are_refused(finished, tmp_path):
    """Was: resumed under any config or data, the new record claiming the new lr."""
    wd = _copy(finished, tmp_path)
    (wd / "config.json").unlink()
    with pytest.raises(errors.RunDirError,
                       match=r"holds checkpoints/ \(epochs 1, 2\), metrics.jsonl, summary.json but no config.json"):
        _fit(_cfg(epochs=3, lr=0.5), _synthetic(), wd)
    assert not (wd / "config.json").exists()


def test_a_metrics_file_with_a_lost_middle_line_is_refused(finished, tmp_path):
    wd = _copy(finished, tmp_path)
    lines = (wd / "metrics.jsonl").read_text().splitlines()
    (wd / "metrics.jsonl").write_text(lines[1] + "\n")
    with pytest.raises(errors.RunDirError, match=r"holds epochs \[2\]"):
        _fit(_cfg(epochs=2), _synthetic(), wd)


@pytest.mark.parametrize("module, stem", [(mr, "dop_matrix_phase"), (ir, "dop_image_restoration")])
def test_figure_clis_refuse_an_existing_out_without_force(tmp_path, capsys, module, stem):
    """Was: matrix_recovery and image_restoration overwrote the files in --out."""
    (tmp_path / f"{stem}.json").write_text("keep me")
    argv = ["--quick", "--out", str(tmp_path)] + (["--part", "phase"] if module is mr else [])
    assert module.main(argv) == 2
    err = capsys.readouterr().err
    assert f"already holds {stem}.json; pass --force" in err and (tmp_path / f"{stem}.json").read_text() == "keep me"


# ------------------------------------------------------------ silently wrong


@pytest.mark.parametrize("bad", ["one_extra", "floats"])
def test_cifar_n_array_of_wrong_length_or_dtype_is_refused(tmp_path, run_cli, bad):
    """Was: 50,001 labels (all shifted by one) trained with --subset; float labels truncated."""
    d = tiny_cifar(tmp_path / "data")
    clean = cifar_n.read_cifar_n(d / "CIFAR-10_human.pt")["clean_label"]
    worst = np.concatenate([[0], clean]) if bad == "one_extra" else clean + 0.7
    buf = io.BytesIO()  # write_pt casts to int64; these arrays must reach the file as they are
    pickle.dump({"clean_label": clean.astype(np.int64), "worse_label": worst}, buf, protocol=2)
    with zipfile.ZipFile(d / "CIFAR-10_human.pt", "w") as z:
        z.writestr("CIFAR-10_human/data.pkl", buf.getvalue())
    rc, err = run_cli("--label-set", "worst", "--subset", "40", "--workdir", tmp_path / "w", data_dir=d)
    want = "worse_label has 81 labels but the training set has 80" if bad == "one_extra" else "not 1-D integer"
    assert rc == 2 and want in err and not (tmp_path / "w").exists()


def test_altered_jpeg_npz_is_refused_by_its_sha256(tmp_path):
    """Was: permuted test labels or a garbled JPEG trained on without complaint."""
    (tmp_path / data.JPEG_NPZ).write_bytes(b"PK\x03\x04 an npz with its test labels permuted")
    with pytest.raises(data.DataError, match=f"corrupt or altered: its sha256 is .* has {data.JPEG_NPZ_SHA256}"):
        data.load_cifar("cifar10", tmp_path, download_missing=False, cache_dir=tmp_path / "c")
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize("flags, message", [(("--seeds", "0,4294967296"), "--seeds 4294967296: --seed must be"),
                                            (("--lr", "0.01", "--lr-min", "5"), "--lr-min 5.0 exceeds --lr 0.01")])
def test_values_checked_on_every_path(tmp_path, run_cli, flags, message):
    """Was: --seeds skipped the seed check (2**32 trained as seed 0); --lr-min above --lr made
    the cosine rise."""
    d = tiny_cifar(tmp_path / "data")
    rc, err = run_cli(*flags, "--method", "sop", "--label-set", "worst", "--workdir", tmp_path / "w", data_dir=d)
    assert rc == 2 and message in err and not list(tmp_path.glob("w*"))


def test_image_restoration_alpha_is_checked_and_named_in_the_legend(tmp_path, capsys):
    """Was: --alpha nan exited 0 with NaN in the JSON, and the legend said α = 500 always."""
    assert ir.main(["--quick", "--alpha", "nan", "--out", str(tmp_path / "o")]) == 2
    assert "--alpha must be a positive finite number" in capsys.readouterr().err and not (tmp_path / "o").exists()
    img = np.zeros((32, 32, 1), np.float32)
    methods = {m: {"psnr_curve": [1.0, 2.0], "psnr_final": 2.0} for m in ir.METHODS}
    rec = {"config": {"alpha": 100.0, "size": 32, "width": 4, "iters": 20, "lr": 1.0}, "seed": 0, "steps": [10, 20],
           "cases": [{"image": "camera", "level": 0.5, "psnr_noisy": 5.0, "methods": methods}],
           "_images": [{k: img for k in ("clean", "noisy", *ir.METHODS)}]}
    fig = ir.plot_restoration(rec)
    texts = [t.get_text() for ax in fig.axes for t in (ax.get_legend().get_texts() if ax.get_legend() else [])]
    assert "DOP (α=100)" in texts and not any("500" in t for t in texts)


@pytest.mark.slow
def test_runs_side_by_side_honour_test_subset(tmp_path, run_cli):
    """Was: --seeds measured the whole test set every epoch whatever --test-subset said."""
    d = tiny_cifar(tmp_path / "data")
    rc, err = run_cli("--seeds", "0,1", "--test-subset", "8", "--method", "sop", "--label-set", "worst",
                      "--workdir", tmp_path / "w", data_dir=d)
    assert rc == 0, err
    for s in (0, 1):  # the last epoch is measured on the whole test set (16 images)
        assert [r["test_size"] for r in _strict_lines(tmp_path / f"w-s{s}" / "metrics.jsonl")] == [8, 16]


# -------------------------------------------------------------- false records


def _tiny_npz(path: pathlib.Path) -> None:
    rng = np.random.default_rng(0)

    def jpegs(n):
        blobs = []
        for _ in range(n):
            buf = io.BytesIO()
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buf, format="JPEG")
            blobs.append(np.frombuffer(buf.getvalue(), np.uint8))
        return np.concatenate(blobs), np.cumsum([0] + [len(b) for b in blobs]), rng.integers(0, 10, n).astype(np.uint8)
    (tj, to, tl), (ej, eo, el) = jpegs(6), jpegs(3)
    np.savez(path, train_jpeg=tj, train_offsets=to, train_labels=tl, test_jpeg=ej, test_offsets=eo, test_labels=el)


def test_provenance_is_the_file_read_and_a_cache_without_source_txt_is_rebuilt(tmp_path, monkeypatch):
    """Was: data_source named whichever folder first filled the cache; a cache without
    source.txt gave "free disk space…"."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    _tiny_npz(a / data.JPEG_NPZ)
    (b / data.JPEG_NPZ).symlink_to(a / data.JPEG_NPZ)  # the same bytes through another folder
    monkeypatch.setattr(data, "JPEG_NPZ_SHA256", data.file_digest(a / data.JPEG_NPZ, "sha256"))
    cache = tmp_path / "c"
    assert data.load_cifar("cifar10", a, cache_dir=cache).source == str(a / data.JPEG_NPZ)
    ds = data.load_cifar("cifar10", b, cache_dir=cache)
    assert ds.source == str(b / data.JPEG_NPZ) and len(list(cache.iterdir())) == 1  # one cache, read twice
    (next(cache.iterdir()) / "source.txt").unlink()
    again = data.load_cifar("cifar10", b, cache_dir=cache)
    np.testing.assert_array_equal(again.x_train, ds.x_train)
    assert (next(cache.iterdir()) / "source.txt").is_file()
    assert decode_cache.read_cache(next(cache.iterdir()), [next(cache.iterdir()) / "x_train.npy"] * 4) is not None


def test_lr_change_on_a_finished_run_is_refused_and_the_original_command_still_works(finished, tmp_path):
    """Was: recorded as an lr change that trained nothing, after which the original command was refused."""
    wd = _copy(finished, tmp_path)
    before = _files(wd)
    with pytest.raises(errors.RunDirError, match="finished run of 2 epochs; new learning rates .* would train nothing"):
        _fit(_cfg(epochs=2, lr=0.5), _synthetic(), wd, allow_lr_change=True)
    assert _files(wd) == before
    assert _fit(_cfg(epochs=2), _synthetic(), wd)["epochs"] == 2


# ------------------------------------------------------------------ sizes


@pytest.mark.parametrize("argv", [["--part", "phase", "--n", "3000"], ["--part", "curves", "--n", "60000"]])
def test_matrix_recovery_refuses_a_size_that_does_not_fit_with_both_numbers(tmp_path, capsys, argv):
    """Was: grew to 22 GB and was killed by the kernel, or a MemoryError traceback."""
    t = time.perf_counter()
    assert mr.main([*argv, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "GiB of memory, but only" in err and "available (" in err
    assert time.perf_counter() - t < 30 and not (tmp_path / "o").exists()
    assert mr.memory_estimate("phase", mr.PhaseConfig()) < memory.available()[0]  # the committed figure's size fits


def test_a_memory_estimate_counts_the_ulimit(monkeypatch):
    used = int(pathlib.Path("/proc/self/statm").read_text().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    limit = used + 2 * memory.GIB
    monkeypatch.setattr(memory.resource, "getrlimit", lambda what: (limit, memory.resource.RLIM_INFINITY))
    have, where = memory.available()
    assert memory.GIB < have <= 2 * memory.GIB and where == "the ulimit -v headroom"
    with pytest.raises(memory.TooLarge, match=r"needs about 3.0 GiB of memory, but only .* \(the ulimit -v headroom"):
        memory.check_fits(3 * memory.GIB, "this", "lower it")


@pytest.fixture
def image_folder(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):
        Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(d / f"{i}.png")
    (d / "train.txt").write_text("".join(f"{i}.png {i % 2}\n" for i in range(8)))
    return d


def test_folder_image_size_that_does_not_fit_is_refused(tmp_path, run_cli, image_folder):
    """Was: --image-size 50000 on a folder gave a MemoryError traceback."""
    rc, err = run_cli("--image-root", image_folder, "--label-file", image_folder / "train.txt", "--num-classes", "2",
                  "--image-size", "50000", "--batch-size", "4", "--method", "sop", "--workdir", tmp_path / "w")
    assert rc == 2 and "on 50000x50000 images" in err and "but only" in err and not (tmp_path / "w").exists()
    assert ir.main(["--quick", "--size", "51200", "--out", str(tmp_path / "o")]) == 2


# ------------------------------------------------------ unclear errors, hangs


def test_unreachable_coordinator_is_one_line_within_the_timeout(tmp_path, run_cli):
    """Was: hung ≥ 150 s with no output (and JAX's own timeout aborts with a C++ stack trace)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    t = time.perf_counter()
    rc, err = run_cli("--coordinator", f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", "1",
                  "--coordinator-timeout", "2", "--workdir", tmp_path / "w")
    assert rc == 2 and f"cannot reach the coordinator 127.0.0.1:{port} within 2 s" in err
    assert time.perf_counter() - t < 10
    with pytest.raises(ValueError, match="must be host:port"):
        distributed.wait_for_coordinator("nohostport", 1)


def test_truncated_image_and_a_directory_as_label_file_name_the_path(tmp_path, run_cli, image_folder):
    """Was: "image file is truncated" without a file name; "free disk space…" for a folder."""
    good = (image_folder / "3.png").read_bytes()
    (image_folder / "3.png").write_bytes(good[: len(good) // 2])
    images = folder_lib.read_list(image_folder / "train.txt", image_folder, 2)
    with pytest.raises(errors.DataError, match=f"cannot decode image {image_folder / '3.png'} .*line 4.*truncated"):
        list(folder_lib.make_loader(images, 4, 0, size=12, shuffle=False))
    rc, err = run_cli("--image-root", image_folder, "--label-file", image_folder, "--num-classes", "2",
                      "--method", "sop", "--workdir", tmp_path / "w")
    assert rc == 2 and f"--label-file {image_folder} is a folder; pass a file" in err


@pytest.mark.parametrize("argv, message", [(["--flow-log-gamma", "nan"], "--flow-log-gamma must be a number"),
                                           (["--replot", "REC"], "the record is incomplete or damaged (KeyError")])
def test_phase_transition_bad_values_are_one_line(tmp_path, capsys, argv, message):
    (tmp_path / "rec.json").write_text(json.dumps({"figure": 4}))
    argv = [str(tmp_path / "rec.json") if a == "REC" else a for a in argv]
    assert pt.main([*argv, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and not (tmp_path / "o").exists()


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_theory_cli_signals_are_one_line_and_leave_no_partial_file(tmp_path, capsys, monkeypatch, sig, code):
    """Was: a raw traceback on Ctrl-C, and a silent death on SIGTERM."""
    def killed(*a, **k):
        os.kill(os.getpid(), sig)
        time.sleep(5)  # the signal arrives first
    monkeypatch.setitem(pt.FIGURES, 4, dataclasses.replace(pt.FIGURES[4], compute=killed))
    assert pt.main(["--quick", "--figure", "4", "--out", str(tmp_path / "o")]) == code
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and ("SIGTERM" if code == 143 else "Ctrl-C") in err
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").iterdir())


def test_sigterm_during_training_is_one_line_exit_143_and_resumes(tmp_path, run_cli, monkeypatch, capsys):
    """Was: SIGTERM killed the run silently (the resume was already fine)."""
    d = tiny_cifar(tmp_path / "data")
    save = rundir.RunDir.save

    def save_then_term(self, epoch, state, loader=None):
        save(self, epoch, state, loader)
        os.kill(os.getpid(), signal.SIGTERM)
    monkeypatch.setattr(rundir.RunDir, "save", save_then_term)
    capsys.readouterr()
    argv = ["--label-set", "worst", "--method", "sop", "--workdir", str(tmp_path / "w")]
    assert cifar.main([*CLI_BASE, "--data-dir", str(d), *argv]) == 143
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["terminated (SIGTERM); re-run the same command to resume from the last finished epoch"]
    assert [r["epoch"] for r in _strict_lines(tmp_path / "w" / "metrics.jsonl")] == [1]
    monkeypatch.setattr(rundir.RunDir, "save", save)
    assert run_cli("--label-set", "worst", "--method", "sop", "--workdir", tmp_path / "w", data_dir=d)[0] == 0
    assert [r["epoch"] for r in _strict_lines(tmp_path / "w" / "metrics.jsonl")] == [1, 2]


def test_ctrl_c_during_an_scs_solve_is_not_swallowed():
    """Was: SCS caught Ctrl-C itself, the cell was recorded as a failed solve and the run went
    on to exit 0."""
    P = mr.make_problem(100, 2, 0.1, 0)
    prog = mr.ConvexRPCA(100, "SCS")
    prog.solve(P.Y, 0.1)  # compiles the problem: the next call spends its time inside SCS
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            prog.solve(P.Y * 1.5, 0.05)
            time.sleep(5)  # a missed signal would still arrive here; a swallowed one never
    finally:
        timer.cancel()


def test_comparison_on_labels_without_wrong_ones_reports_na_instead_of_crashing():
    """Was: --compare ce,sop on a label set with no wrong (or no clean) label trained both
    methods, then exited 1 with an internal TypeError (None compared with a float)."""
    from tests.evaluators.test_comparison import _summary

    s = {"ce": _summary("ce", 0.40, None, None), "sop": _summary("sop", 0.45, None, None, float("nan"))}
    s["sop"]["detection"]["sop_uv"]["auroc"] = None
    claims = comparison.checks(s)
    assert [c["holds"] for c in claims] == [None, None, True, None]
    text = comparison.markdown(["ce", "sop"], comparison.table_rows(s), claims)
    assert "| CE memorizes ≥ 50% of the wrong labels | n/a | 0.5000 | n/a |" in text
    assert "| 0.0500 | 0.0300 | yes |" in text


def test_an_interrupted_async_save_adds_no_warning_under_the_one_line():
    """Was: Ctrl-C during orbax's asyncio save printed "coroutine … was never awaited" and
    "Enable tracemalloc …" (7 lines) under the interruption line."""
    async def save():
        pass

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with cli.quiet_background_errors(True):
            save()  # created, never awaited, dropped: what an interrupted event loop leaves
            gc.collect()
    assert not [w for w in seen if "never awaited" in str(w.message)]


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_swallowed_by_a_catch_all_still_ends_the_command(capsys, sig, code):
    """Was: SIGTERM landing in an import guarded by a bare ``except`` (matplotlib's 3-D axes)
    was lost: the command ran on and exited 0."""
    def run(args):
        try:
            os.kill(os.getpid(), sig)
            time.sleep(5)
        except BaseException:  # what a library's bare ``except:`` does
            pass
        return 0

    assert cli.guarded(run, argparse.Namespace(debug=False)) == code
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
