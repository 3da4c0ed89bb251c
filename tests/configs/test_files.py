"""Config ⇄ JSON without loss, and configs read from files."""

import dataclasses
import json
import re

import pytest

from sopjax.configs import PRESETS, Config, files


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_round_trips_through_json(name):
    cfg = PRESETS[name]
    assert files.from_json(files.to_json(cfg)) == cfg


def test_every_field_comes_back_with_its_type():
    cfg = Config(milestones=(3, 7), lr=0.1 + 0.2, width=2.0, augment=False, lr_u=1e-300, seed=7, dataset="mine")
    back = files.from_json(files.to_json(cfg))
    assert back == cfg
    assert isinstance(back.milestones, tuple) and isinstance(back.width, float) and back.lr == 0.1 + 0.2


def test_a_runs_config_json_is_read_from_its_config_entry(tmp_path):
    cfg = dataclasses.replace(PRESETS["quick"], epochs=3)
    (tmp_path / "config.json").write_text(json.dumps({"config": files.to_dict(cfg), "seed": 0, "preset": "quick"}))
    assert files.load(tmp_path / "config.json") == cfg


def test_a_python_file_returns_its_config(tmp_path):
    (tmp_path / "c.py").write_text("from sopjax import Config\n\ndef get_config():\n    return Config(epochs=4)\n")
    assert files.load(tmp_path / "c.py") == Config(epochs=4)
    (tmp_path / "d.py").write_text("x = 1\n")
    with pytest.raises(ValueError, match="must define get_config"):
        files.load(tmp_path / "d.py")


@pytest.mark.parametrize("text, message", [
    ('{"epochs": 2, "colour": "red"}', "unknown Config field(s) colour"),
    ('{"epochs": -2}', "--epochs must be"),
    ('{"epochs": 2', "is not valid JSON"),
    ('[1, 2]', "must hold a JSON object"),
])
def test_a_bad_file_is_one_line_naming_it(tmp_path, text, message):
    (tmp_path / "c.json").write_text(text)
    with pytest.raises(ValueError, match=re.escape(message)) as e:
        files.load(tmp_path / "c.json")
    assert str(tmp_path / "c.json") in str(e.value) and "\n" not in str(e.value)


def test_a_missing_file_is_named():
    with pytest.raises(ValueError, match="--config /no/such.json does not exist"):
        files.load("/no/such.json")
