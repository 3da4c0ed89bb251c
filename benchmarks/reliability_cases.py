"""The cases of :mod:`benchmarks.reliability_probe`: each builds its files in a fresh
temporary folder, runs the commands a user would, and returns (verdict, what happened).

Groups: ``loss`` (re-runs and outputs that could lose or overwrite files), ``silent`` (input
that trained or computed without complaint on wrong data or values), ``record`` (what the run
records about itself), ``size`` (sizes that do not fit in memory), ``unclear`` (errors, hangs
and signals).
"""

from __future__ import annotations

import atexit
import dataclasses
import functools
import json
import pathlib
import shutil
import tempfile
from typing import Callable

from benchmarks.reliability_probe import refusal, run
from tests.tiny_data import tiny_cifar

TRAIN = ["-m", "experiments.cifar", "--preset", "quick", "--arch", "mlp", "--width", "0.125", "--epochs", "2",
         "--batch-size", "16", "--eval-subset", "16", "--no-augment", "--no-progress", "--no-download",
         "--method", "sop", "--label-set", "worst"]


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    group: str
    what: str
    check: Callable[[pathlib.Path], tuple[str, str]]


def train(tmp, *extra, workdir="w", data="data", **kw):
    return run([*TRAIN, "--data-dir", tmp / data, "--workdir", tmp / workdir, *extra], tmp, **kw)


def files(d: pathlib.Path) -> dict:
    """Bytes of every file under ``d`` but the lock files."""
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*"))
            if p.is_file() and not p.name.startswith(".lock")}


@functools.cache
def _template() -> pathlib.Path:
    """Tiny data and a finished 2-epoch run in ``data/`` and ``w/``, made once and copied per case."""
    root = pathlib.Path(tempfile.mkdtemp(prefix="probe-template-"))
    atexit.register(shutil.rmtree, root, True)
    tiny_cifar(root / "data")
    r = train(root)
    if r.rc != 0:
        raise RuntimeError(f"the template run failed: {r.err[-300:]}")
    shutil.rmtree(root / "cache", ignore_errors=True)
    return root


def finished(tmp: pathlib.Path) -> pathlib.Path:
    """A copy of the finished template run in ``tmp/w`` (its data in ``tmp/data``); returns ``tmp/w``."""
    for name in ("data", "w"):
        shutil.copytree(_template() / name, tmp / name, symlinks=True)
    return tmp / "w"


def damaged_run(damage, names: str, expect_refusal: bool = True):
    """A case on the finished run after ``damage(w)``: a refusal naming ``names`` with nothing
    changed, or (``expect_refusal`` False) exit 0 with nothing changed."""
    def check(tmp):
        w = finished(tmp)
        damage(w)
        before = files(w)
        r = train(tmp)
        if expect_refusal:
            return refusal(r, names, kept=files(w) == before)
        if files(w) != before:
            return "loss", f"exit {r.rc}; files changed"
        return ("correct", "exit 0, every file unchanged") if r.rc == 0 else refusal(r)
    return check


def _rm(*names):
    def damage(w):
        for n in names:
            p = w / n
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    return damage


def _drop_first_metric_line(w):
    lines = (w / "metrics.jsonl").read_text().splitlines()
    (w / "metrics.jsonl").write_text("\n".join(lines[1:]) + "\n")


def summary_regenerated(tmp):
    w = finished(tmp)
    old = json.loads((w / "summary.json").read_text())
    (w / "summary.json").unlink()
    r = train(tmp)
    new = json.loads((w / "summary.json").read_text()) if (w / "summary.json").exists() else None
    return ("correct", "summary.json written again, equal to the lost one") if r.rc == 0 and new == old else \
        ("silent", f"exit {r.rc}, summary differs") if r.rc == 0 else refusal(r)


def cut_line_resumes(tmp):
    """A kill while appending epoch 2's line: the cut line is dropped and epoch 2 trained again."""
    w = finished(tmp)
    for n in ("summary.json", "noise_scores.npz"):
        (w / n).unlink()
    shutil.rmtree(w / "checkpoints" / "2")
    lines = (w / "metrics.jsonl").read_text().splitlines()
    (w / "metrics.jsonl").write_text(lines[0] + "\n" + lines[1][: len(lines[1]) // 2])
    r = train(tmp)
    epochs = [json.loads(x)["epoch"] for x in (w / "metrics.jsonl").read_text().splitlines()]
    ok = r.rc == 0 and epochs == [1, 2] and (w / "summary.json").exists()
    return ("correct", "resumed from epoch 1, epochs [1, 2], summary written") if ok else refusal(r)


def figure_out_kept(argv: list, stem: str):
    def check(tmp):
        (tmp / "o").mkdir()
        (tmp / "o" / f"{stem}.json").write_text("an earlier figure")
        r = run([*argv, "--out", tmp / "o"], tmp, timeout=120)
        return refusal(r, "--force", kept=(tmp / "o" / f"{stem}.json").read_text() == "an earlier figure")
    return check


def compare_rerun(tmp):
    tiny_cifar(tmp / "data")
    first = train(tmp, "--compare", "ce,sop")
    if first.rc != 0:
        return refusal(first)
    before = files(tmp / "w")
    r = train(tmp, "--compare", "ce,sop")
    if files(tmp / "w") != before:
        return "loss", f"exit {r.rc}; files of the finished comparison changed"
    return ("correct", "exit 0, every file unchanged") if r.rc == 0 else refusal(r)


LOSS = [
    Case("D1", "loss", "finished run, metrics.jsonl deleted, same command", damaged_run(_rm("metrics.jsonl"),
                                                                                      "metrics.jsonl")),
    Case("D2", "loss", "finished run, checkpoints/ deleted, same command",
         damaged_run(_rm("checkpoints"), "", expect_refusal=False)),
    Case("D3", "loss", "finished run, checkpoints/ and summary.json deleted",
         damaged_run(_rm("checkpoints", "summary.json"), "no checkpoint")),
    Case("D4", "loss", "finished run, config.json deleted", damaged_run(_rm("config.json"), "no config.json")),
    Case("D5", "loss", "finished run, metrics.jsonl's first line lost", damaged_run(_drop_first_metric_line,
                                                                                  "metrics.jsonl")),
    Case("D6", "loss", "finished run, the same command again", damaged_run(lambda w: None, "", False)),
    Case("D7", "loss", "finished run, summary.json lost (killed in the final evaluation)", summary_regenerated),
    Case("D8", "loss", "killed while appending epoch 2's metric line", cut_line_resumes),
    Case("D9", "loss", "summary.json replaced by text that is not JSON",
         damaged_run(lambda w: (w / "summary.json").write_text("{oops"), "summary.json")),
    Case("D10", "loss", "theory.matrix_recovery --out holding its figure",
         figure_out_kept(["-m", "theory.matrix_recovery", "--quick", "--part", "phase"], "dop_matrix_phase")),
    Case("D11", "loss", "experiments.image_restoration --out holding its figure",
         figure_out_kept(["-m", "experiments.image_restoration", "--quick"], "dop_image_restoration")),
    Case("D12", "loss", "theory.phase_transition --out holding its figure",
         figure_out_kept(["-m", "theory.phase_transition", "--quick", "--figure", "4"], "fig4_phase_transition")),
    Case("D13", "loss", "finished --compare ce,sop, the same command again", compare_rerun),
]


def lr_change_on_finished(same: bool):
    """``--allow-lr-change --lr X`` on a finished run: X new must be refused (it would train
    nothing yet be recorded); X as recorded changes nothing. Then the original command must work."""
    def check(tmp):
        w = finished(tmp)
        before = files(w)
        r = train(tmp, "--allow-lr-change", "--lr", "0.1" if same else "0.5")
        kept = files(w) == before
        again = train(tmp)
        if again.rc != 0:
            return "loss", f"the original command fails afterwards: {again.err.strip()[-160:]}"
        if same:
            return ("correct", "exit 0, nothing recorded") if r.rc == 0 and kept else ("loss", f"exit {r.rc}; changed")
        return refusal(r, "would train nothing", kept)
    return check


def provenance_through_another_folder(tmp):
    """The same CIFAR folder reached through a symlinked data dir, sharing the decode cache:
    config.json must name the folder this run read."""
    tiny_cifar(tmp / "d1")
    (tmp / "d2").mkdir()
    (tmp / "d2" / "cifar-10-batches-py").symlink_to(tmp / "d1" / "cifar-10-batches-py")
    shutil.copy(tmp / "d1" / "CIFAR-10_human.pt", tmp / "d2")
    for d, w in (("d1", "wa"), ("d2", "wb")):
        r = train(tmp, "--epochs", "1", data=d, workdir=w)
        if r.rc != 0:
            return refusal(r)
    got = json.loads((tmp / "wb" / "config.json").read_text())["data_source"]
    want = str(tmp / "d2" / "cifar-10-batches-py")
    return ("correct", f"data_source {got}") if got == want else ("silent", f"data_source {got}, read {want}")


def damaged_cache(damage: str):
    """A decode cache without source.txt, or with a cut .npy: decoded again, not an error."""
    def check(tmp):
        tiny_cifar(tmp / "data")
        first = train(tmp, "--epochs", "1", workdir="wa")
        if first.rc != 0:
            return refusal(first)
        cache = next((tmp / "cache").iterdir())
        if damage == "source":
            (cache / "source.txt").unlink()
        else:
            (cache / "x_train.npy").write_bytes((cache / "x_train.npy").read_bytes()[:200])
        r = train(tmp, "--epochs", "1", workdir="wb")
        return ("correct", "exit 0, the cache rebuilt") if r.rc == 0 else refusal(r)
    return check


def no_config_new_lr(tmp):
    """Checkpoints without config.json, re-run with another --lr: once resumed under any config."""
    w = finished(tmp)
    for n in ("config.json", "summary.json"):
        (w / n).unlink()
    before = files(w)
    r = train(tmp, "--lr", "0.5")
    return refusal(r, "no config.json", kept=files(w) == before)


RECORD = [
    Case("F1", "record", "data_source when another folder filled the decode cache", provenance_through_another_folder),
    Case("F2", "record", "finished run, --allow-lr-change --lr 0.5 (trains nothing)", lr_change_on_finished(False)),
    Case("F3", "record", "finished run, --allow-lr-change with the recorded lr", lr_change_on_finished(True)),
    Case("F4", "record", "checkpoints without config.json, re-run with --lr 0.5", no_config_new_lr),
    Case("F5", "record", "decode cache without source.txt", damaged_cache("source")),
    Case("F6", "record", "decode cache with a cut x_train.npy", damaged_cache("npy")),
]
CASES = LOSS + RECORD
