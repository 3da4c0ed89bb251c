"""A smoke run of `python -m experiments.cifar` on a subset of the real data."""

import json

import pytest

from experiments import cifar
from sopjax.data import cifar as data


def _have_cifar10():
    return any((d / "cifar10-jpeg.npz").is_file() or (d / "cifar-10-batches-py").is_dir()
               or (d / "cifar-10-python.tar.gz").is_file() for d in data.candidate_dirs())


@pytest.mark.skipif(not _have_cifar10(), reason="CIFAR-10 not found in any data directory")
def test_cli_smoke_on_real_subset(tmp_path, capsys):
    rc = cifar.main(["--preset", "quick", "--subset", "256", "--epochs", "1", "--eval-subset", "128",
                     "--batch-size", "64", "--workdir", str(tmp_path), "--no-progress", "--no-download"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "preset 'quick' (requested with --preset)" in out and "test acc best" in out
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["label_set"] == "worst" and s["epochs"] == 1
    assert abs(s["realized_noise_rate"] - 0.4) < 0.1  # worst labels on the first 256 images
    line = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])
    assert line["fit_subset_size"] == 128 and line["epoch"] == 1 and line["step"] == 256 // 64
    # the summary reports what the epoch measured, and the printed table shows it
    assert s["test_acc_last"] == line["test_acc"] and s["memorized_wrong_last"] == line["memorized_wrong"]
    assert f"{line['test_acc']:.4f}" in out
    assert cifar.main(["--label-set", "bogus", "--workdir", str(tmp_path / "x")]) == 2
    assert "--label-set: invalid choice: 'bogus' (choose from 'clean'" in capsys.readouterr().err
    assert cifar.main(["--label-set", "sym", "--noise-rate", "1.5", "--workdir", str(tmp_path / "y")]) == 2
    assert "[0, 1]" in capsys.readouterr().err
