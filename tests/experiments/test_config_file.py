"""`--config runs/X/config.json` re-runs run X."""

import json

from experiments import cifar
from tests.tiny_data import tiny_cifar

# Epoch-record fields that measure the machine, not the run.
TIMING = ("epoch_train_s", "epoch_total_s", "images_per_s")


def _first_epoch(workdir):
    rec = json.loads((workdir / "metrics.jsonl").read_text().splitlines()[0])
    return {k: v for k, v in rec.items() if k not in TIMING}


def test_config_json_reproduces_the_first_epoch_bit_for_bit(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SOPJAX_CACHE_DIR", str(tmp_path / "cache"))
    d = tiny_cifar(tmp_path / "data")
    common = ["--data-dir", str(d), "--no-download", "--no-progress"]
    # A run whose settings differ from the preset's and from Config's defaults in several fields.
    assert cifar.main(["--preset", "quick", "--method", "sop", "--arch", "mlp", "--width", "0.25", "--epochs", "2",
                       "--batch-size", "16", "--eval-subset", "32", "--lr-u", "30", "--seed", "3", "--no-augment",
                       "--label-set", "worst", "--workdir", str(tmp_path / "x"), *common]) == 0
    assert cifar.main(["--config", str(tmp_path / "x" / "config.json"), "--workdir", str(tmp_path / "x2"),
                       *common]) == 0
    assert "preset 'config' (from --config" in capsys.readouterr().out
    first = _first_epoch(tmp_path / "x")
    assert first["train_loss"] > 0 and "test_acc" in first
    assert _first_epoch(tmp_path / "x2") == first
    rec, rec2 = (json.loads((tmp_path / w / "config.json").read_text()) for w in ("x", "x2"))
    assert rec2["config"] == rec["config"]


def test_config_and_preset_together_are_refused(tmp_path, capsys):
    (tmp_path / "c.json").write_text("{}")
    argv = ["--config", str(tmp_path / "c.json"), "--preset", "quick", "--workdir", str(tmp_path / "w")]
    assert cifar.main(argv) == 2
    assert "pass one of them" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()
