"""The cases of :mod:`benchmarks.reliability_probe` about input: data that differs from its
fingerprint and values a path did not check (``silent``), sizes that do not fit (``size``),
and errors, hangs and signals (``unclear``). The run-directory cases are in
:mod:`benchmarks.reliability_cases`.
"""

from __future__ import annotations

import io
import json
import pathlib
import pickle
import signal
import zipfile

import numpy as np
from PIL import Image

from benchmarks.reliability_cases import TRAIN, Case, train
from benchmarks.reliability_probe import refusal, run, run_signalled, signal_verdict
from tests.tiny_data import tiny_cifar

MR, IR = ["-m", "theory.matrix_recovery"], ["-m", "experiments.image_restoration"]
PT = ["-m", "theory.phase_transition"]


def _pt_file(path: pathlib.Path, arrays: dict) -> None:
    """A CIFAR-N .pt whose arrays are stored as given (dtype and shape kept)."""
    buf = io.BytesIO()
    pickle.dump(arrays, buf, protocol=2)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("CIFAR-10_human/data.pkl", buf.getvalue())


def bad_cifar_n(make, names: str, *extra):
    """The tiny CIFAR-10 with its worst labels replaced by ``make(clean)``."""
    def check(tmp):
        d = tiny_cifar(tmp / "data")
        clean = np.concatenate([pickle.loads((d / "cifar-10-batches-py" / f"data_batch_{i}").read_bytes())[b"labels"]
                                for i in range(1, 6)]).astype(np.int64)
        _pt_file(d / "CIFAR-10_human.pt", {"clean_label": clean, "worse_label": make(clean)})
        return refusal(train(tmp, *extra), names, kept=not (tmp / "w").exists())
    return check


def altered_npz(alter):
    """A copy of the real cifar10-jpeg.npz with ``alter(arrays)`` applied, trained on."""
    def check(tmp):
        from sopjax.data.cifar import JPEG_NPZ, candidate_dirs

        src = next((d / JPEG_NPZ for d in candidate_dirs() if (d / JPEG_NPZ).is_file()), None)
        if src is None:
            return "skipped", "no cifar10-jpeg.npz found (set SOPJAX_DATA_DIR)"
        with np.load(src) as z:
            arrays = {k: np.array(z[k]) for k in z.files}
        alter(arrays)
        (tmp / "data").mkdir()
        np.savez(tmp / "data" / JPEG_NPZ, **arrays)
        r = train(tmp, "--label-set", "clean", "--subset", "64", timeout=600)
        return refusal(r, "sha256", kept=not (tmp / "w").exists())
    return check


def _garble(a):
    start = int(a["train_offsets"][10])
    a["train_jpeg"][start + 300:start + 340] = 7


def flags_refused(names: str, *flags):
    def check(tmp):
        tiny_cifar(tmp / "data")
        r = train(tmp, *flags)
        return refusal(r, names, kept=not list(tmp.glob("w*")))
    return check


def cli_refused(argv: list, names: str, limit_memory: bool = False, timeout: float = 120):
    """A theory/DOP command (``OUT`` stands for a fresh --out) that must be refused in one line."""
    def check(tmp):
        r = run([str(tmp / "o") if a == "OUT" else a for a in argv], tmp, timeout=timeout, limit_memory=limit_memory)
        return refusal(r, names, kept=not (tmp / "o").exists())
    return check


def seeds_test_subset(tmp):
    tiny_cifar(tmp / "data")
    r = train(tmp, "--seeds", "0,1", "--test-subset", "8")
    if r.rc != 0:
        return refusal(r)
    sizes = [[json.loads(x)["test_size"] for x in (tmp / f"w-s{s}" / "metrics.jsonl").read_text().splitlines()]
             for s in (0, 1)]
    return ("correct", f"test sizes per epoch {sizes}") if sizes == [[8, 16]] * 2 else ("silent", f"{sizes}")


SILENT = [
    Case("S1", "silent", "CIFAR-N label array one longer (all shifted), --subset 40",
         bad_cifar_n(lambda c: np.concatenate([[0], c]), "81 labels", "--subset", "40")),
    Case("S2", "silent", "CIFAR-N label array one longer, whole set", bad_cifar_n(lambda c: np.concatenate([[0], c]),
                                                                                "81 labels")),
    Case("S3", "silent", "CIFAR-N labels as floats (would be truncated)", bad_cifar_n(lambda c: c + 0.7, "integer")),
    Case("S4", "silent", "CIFAR-N labels as a (N, 1) array", bad_cifar_n(lambda c: c[:, None], "1-D")),
    Case("S5", "silent", "CIFAR-N labels with a -1", bad_cifar_n(lambda c: np.where(np.arange(len(c)) == 3, -1, c),
                                                                "0, 2**31")),
    Case("S6", "silent", "cifar10-jpeg.npz with its test labels permuted",
         altered_npz(lambda a: a.update(test_labels=np.random.default_rng(0).permutation(a["test_labels"])))),
    Case("S7", "silent", "cifar10-jpeg.npz with a garbled JPEG", altered_npz(_garble)),
    Case("S8", "silent", "--seeds 0,4294967296 (2**32 wraps to 0)", flags_refused("--seeds 4294967296", "--seeds",
                                                                                  "0,4294967296")),
    Case("S9", "silent", "--seeds 0,-1", flags_refused("--seeds -1", "--seeds", "0,-1")),
    Case("S10", "silent", "--lr-min above --lr", flags_refused("--lr-min", "--lr", "0.002", "--lr-min", "1")),
    Case("S11", "silent", "--lr-min above --lr with --seeds", flags_refused("--lr-min", "--seeds", "0,1", "--lr-min",
                                                                          "1")),
    Case("S12", "silent", "--seeds with --lr-u nan", flags_refused("--lr-u", "--seeds", "0,1", "--lr-u", "nan")),
    Case("S13", "silent", "--seeds 0,1 --test-subset 8 (per-epoch test size)", seeds_test_subset),
    Case("S14", "silent", "image_restoration --alpha nan", cli_refused([*IR, "--quick", "--alpha", "nan", "--out",
                                                                        "OUT"], "--alpha")),
    Case("S15", "silent", "image_restoration --alpha -5", cli_refused([*IR, "--quick", "--alpha", "-5", "--out", "OUT"],
                                                                      "--alpha")),
    Case("S16", "silent", "image_restoration --alpha inf", cli_refused([*IR, "--quick", "--alpha", "inf", "--out",
                                                                        "OUT"], "--alpha")),
    Case("S17", "silent", "matrix_recovery --seed -1", cli_refused([*MR, "--quick", "--seed", "-1", "--out", "OUT"],
                                                                   "--seed")),
    Case("S18", "silent", "image_restoration --seed -1", cli_refused([*IR, "--quick", "--seed", "-1", "--out", "OUT"],
                                                                     "--seed")),
]


def image_folder(tmp: pathlib.Path, truncate: bool = False) -> pathlib.Path:
    d = tmp / "imgs"
    d.mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):
        Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(d / f"{i}.png")
    if truncate:
        (d / "3.png").write_bytes((d / "3.png").read_bytes()[:60])
    (d / "train.txt").write_text("".join(f"{i}.png {i % 2}\n" for i in range(8)))
    return d


def folder_run(names: str, *flags, truncate: bool = False, limit_memory: bool = False):
    """A folder run (``IMGS`` stands for the image folder) that must be refused in one line."""
    def check(tmp):
        d = image_folder(tmp, truncate)
        argv = [str(d) if a == "IMGS" else str(d / a[5:]) if a.startswith("IMGS/") else a for a in flags]
        r = train(tmp, "--num-classes", "2", "--batch-size", "4", *argv, limit_memory=limit_memory)
        return refusal(r, names.replace("IMGS", str(d)), kept=not (tmp / "w").exists())
    return check


def unreachable_coordinator(tmp):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = train(tmp, "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", "1", timeout=150)
    if r.rc is None:
        return "unclear", f"no exit within {r.wall:.0f} s"
    verdict, note = refusal(r, "cannot reach the coordinator")
    return (verdict, f"{note} ({r.wall:.0f} s)") if r.wall < 45 or verdict != "clear" else ("unclear", f"{r.wall} s")


def _partial(d: pathlib.Path) -> list:
    return [p.name for p in d.rglob("*") if p.is_file() and (".partial" in p.name or p.name.endswith(".tmp"))]


def theory_signal(module: str, args: list, sig: int, code: int, delay: float = 3.0):
    """Ctrl-C or SIGTERM ``delay`` s into the computation of ``python -m module args``."""
    def check(tmp):
        # What ``python -m module`` runs, with a line once the imports are done (a signal before
        # that reaches Python's import machinery, not the program).
        code_ = (f"import sys; from {module} import main; from sopjax.infra import cli; print('ready', flush=True); "
                 "cli.exit(main(sys.argv[1:]))")
        r = run_signalled(["-c", code_, *args, "--out", tmp / "o"], tmp, sig, "ready", delay)
        return signal_verdict(r, code, _partial(tmp / "o") if (tmp / "o").exists() else [])
    return check


def training_signal(sig: int, code: int):
    """Ctrl-C or SIGTERM after epoch 1 of 3; then the same command must finish the run."""
    def check(tmp):
        tiny_cifar(tmp / "data")
        cmd = [*TRAIN, "--epochs", "3", "--data-dir", tmp / "data", "--workdir", tmp / "w"]
        r = run_signalled(cmd, tmp, sig, "epoch 1/3")
        verdict, note = signal_verdict(r, code, _partial(tmp / "w"))
        if verdict != "correct":
            return verdict, note
        again = run(cmd, tmp)
        epochs = [json.loads(x)["epoch"] for x in (tmp / "w" / "metrics.jsonl").read_text().splitlines()]
        return (verdict, f"{note}; resumed to epochs {epochs}") if again.rc == 0 and epochs == [1, 2, 3] else \
            ("loss", f"resume: exit {again.rc}, epochs {epochs}")
    return check


def label_file_folder(tmp):
    d = tiny_cifar(tmp / "data")
    (d / "CIFAR-10_human.pt").unlink()
    (d / "CIFAR-10_human.pt").mkdir()
    return refusal(train(tmp), "CIFAR-10_human.pt", kept=not (tmp / "w").exists())


def replot(text: str):
    def check(tmp):
        (tmp / "rec.json").write_text(text)
        return cli_refused([*PT, "--replot", str(tmp / "rec.json"), "--out", "OUT"], "--replot")(tmp)
    return check


def training_kill(tmp):
    """kill -9 right after epoch 1's line: no message is possible; the same command must resume."""
    tiny_cifar(tmp / "data")
    cmd = [*TRAIN, "--epochs", "3", "--data-dir", tmp / "data", "--workdir", tmp / "w"]
    r = run_signalled(cmd, tmp, signal.SIGKILL, "epoch 1/3")
    again = run(cmd, tmp)
    epochs = [json.loads(x)["epoch"] for x in (tmp / "w" / "metrics.jsonl").read_text().splitlines()]
    if again.rc == 0 and epochs == [1, 2, 3] and (tmp / "w" / "summary.json").exists():
        return "correct", f"killed (exit {r.rc}); the same command resumed to epochs {epochs}"
    return ("loss", f"resume: exit {again.rc}, epochs {epochs}") if again.rc in (0, 2) else refusal(again)


MEM = dict(limit_memory=True)
SIZE = [
    Case("Z1", "size", "matrix_recovery --part phase --n 3000", cli_refused([*MR, "--part", "phase", "--n", "3000",
                                                                             "--out", "OUT"], "GiB of memory", **MEM)),
    Case("Z2", "size", "matrix_recovery --n 60000", cli_refused([*MR, "--n", "60000", "--out", "OUT"], "GiB of memory",
                                                                **MEM)),
    Case("Z3", "size", "matrix_recovery --part curves --n 3000", cli_refused([*MR, "--part", "curves", "--n", "3000",
                                                                              "--out", "OUT"], "GiB of memory", **MEM)),
    Case("Z4", "size", "folder --image-size 50000", folder_run("GiB of memory", "--image-root", "IMGS", "--label-file",
                                                               "IMGS/train.txt", "--image-size", "50000", **MEM)),
    Case("Z5", "size", "folder --image-size 4096, preact_resnet18, batch 128",
         folder_run("GiB of memory", "--image-root", "IMGS", "--label-file", "IMGS/train.txt", "--image-size", "4096",
                    "--arch", "preact_resnet18", "--batch-size", "128", **MEM)),
    Case("Z6", "size", "image_restoration --size 51200", cli_refused([*IR, "--quick", "--size", "51200", "--out",
                                                                      "OUT"], "GiB of memory", **MEM)),
    Case("Z7", "size", "image_restoration --size 8192 --width 128",
         cli_refused([*IR, "--quick", "--size", "8192", "--width", "128", "--out", "OUT"], "GiB of memory", **MEM)),
]
UNCLEAR = [
    Case("U1", "unclear", "unreachable coordinator (process 1 of 2)", unreachable_coordinator),
    Case("U2", "unclear", "--coordinator without a port", flags_refused("host:port", "--coordinator", "nohost",
                                                                        "--num-processes", "2", "--process-id", "1")),
    Case("U3", "unclear", "--coordinator-timeout 0", flags_refused("--coordinator-timeout", "--coordinator", "h:1",
                                                                   "--num-processes", "2", "--process-id", "1",
                                                                   "--coordinator-timeout", "0")),
    Case("U4", "unclear", "a truncated image in the folder", folder_run("IMGS/3.png", "--image-root", "IMGS",
                                                                        "--label-file", "IMGS/train.txt",
                                                                        truncate=True)),
    Case("U5", "unclear", "--label-file is a folder", folder_run("is a folder", "--image-root", "IMGS", "--label-file",
                                                                 "IMGS")),
    Case("U6", "unclear", "--test-label-file is a folder", folder_run("is a folder", "--image-root", "IMGS",
                                                                      "--label-file", "IMGS/train.txt",
                                                                      "--test-label-file", "IMGS")),
    Case("U7", "unclear", "--image-root is a file", folder_run("is a file", "--image-root", "IMGS/train.txt",
                                                               "--label-file", "IMGS/train.txt")),
    Case("U8", "unclear", "CIFAR-10_human.pt is a folder", label_file_folder),
    Case("U9", "unclear", "phase_transition --flow-log-gamma nan", cli_refused([*PT, "--flow-log-gamma", "nan",
                                                                               "--out", "OUT"], "--flow-log-gamma")),
    Case("U10", "unclear", "phase_transition --flow-log-gamma 5", cli_refused([*PT, "--flow-log-gamma", "5", "--out",
                                                                               "OUT"], "--flow-log-gamma")),
    Case("U11", "unclear", "phase_transition --replot of a record missing its fields", replot('{"figure": 4}')),
    Case("U12", "unclear", "phase_transition --replot of a file that is not JSON", replot("{oops")),
    Case("U13", "unclear", "phase_transition Ctrl-C", theory_signal("theory.phase_transition", ["--figure", "2"],
                                                                    signal.SIGINT, 130)),
    Case("U14", "unclear", "phase_transition SIGTERM", theory_signal("theory.phase_transition", ["--figure", "2"],
                                                                     signal.SIGTERM, 143)),
    Case("U15", "unclear", "matrix_recovery Ctrl-C", theory_signal("theory.matrix_recovery", ["--quick"],
                                                                   signal.SIGINT, 130)),
    Case("U16", "unclear", "matrix_recovery SIGTERM", theory_signal("theory.matrix_recovery", ["--quick"],
                                                                    signal.SIGTERM, 143)),
    Case("U17", "unclear", "image_restoration Ctrl-C", theory_signal("experiments.image_restoration", ["--quick"],
                                                                     signal.SIGINT, 130)),
    Case("U18", "unclear", "image_restoration SIGTERM", theory_signal("experiments.image_restoration", ["--quick"],
                                                                      signal.SIGTERM, 143)),
    Case("U19", "unclear", "training SIGTERM after epoch 1, then the same command", training_signal(signal.SIGTERM,
                                                                                                    143)),
    Case("U20", "unclear", "training Ctrl-C after epoch 1, then the same command", training_signal(signal.SIGINT, 130)),
    Case("U21", "unclear", "training kill -9 after epoch 1, then the same command", training_kill),
]
CASES = SILENT + SIZE + UNCLEAR
