"""Config validation and the CLI flags generated from the Config fields (no data needed)."""

import dataclasses

import pytest

from experiments import cifar
from sopjax import configs as config_lib


@pytest.mark.parametrize("change, message", [
    ({"method": "mixup"}, "--method"), ({"label_set": "sym40"}, "unknown label set"),
    ({"noise_rate": 1.5}, r"\[0, 1\]"), ({"noise_rate": float("nan")}, r"\[0, 1\]"),
    ({"arch": "vgg"}, "unknown --arch"), ({"schedule": "linear"}, "--schedule"),
    ({"epochs": 0}, "--epochs"), ({"batch_size": -1}, "--batch-size"), ({"width": 0.0}, "--width"),
    # signs, NaN, ranges and types
    ({"lr": -1.0}, r"--lr must be a finite number > 0"), ({"subset": -49488}, "--subset"),
    ({"seed": -1}, "--seed"), ({"seed": 2**32}, "--seed"), ({"width": float("nan")}, "--width"),
    ({"lr_u": float("inf")}, "--lr-u"), ({"lr_v": -1.0}, "--lr-v"), ({"momentum": 1.0}, "--momentum"),
    ({"weight_decay": float("nan")}, "--weight-decay"), ({"init_std": -1e-8}, "--init-std"),
    ({"eval_subset": -1}, "--eval-subset"), ({"detect_threshold": float("nan")}, "--detect-threshold"),
    ({"epochs": 1.5}, "--epochs must be of type int"), ({"augment": 1}, "--augment must be of type bool"),
    ({"seed": True}, "--seed must be of type int"), ({"milestones": (0, 5)}, "--milestones"),
    ({"dataset": " "}, "--dataset must name"), ({"sop_variant": "x"}, "--sop-variant"),
    ({"label_set": "worst", "dataset": "cifar100"}, "--dataset cifar10"),
    ({"label_set": "asymclean", "dataset": "cifar100"}, "cifar10 only"),
    ({"strong_view_norm": "cifar100"}, "--strong-view-norm"),
    ({"val_holdout": 1}, "--val-holdout must be of type bool"),
])
def test_validate_names_the_bad_field(change, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(config_lib.Config(), **change).validate()


def test_every_preset_is_valid():
    for name, cfg in config_lib.PRESETS.items():
        assert cfg.validate() is cfg, name


def test_every_config_field_is_a_flag_with_its_type():
    args = cifar.build_parser().parse_args(
        [
            "--preset",
            "quick",
            "--momentum",
            "0.5",
            "--no-augment",
            "--milestones",
            "3,5",
            "--init-std",
            "1e-3",
            "--detect-threshold",
            "0.25",
            "--lr-u",
            "7",
            "--seed",
            "3",
        ]
    )
    cfg, preset, _, changes = cifar.build_config(args)
    assert preset == "quick"
    assert (cfg.momentum, cfg.augment, cfg.milestones, cfg.init_std, cfg.detect_threshold, cfg.lr_u, cfg.seed) == \
        (0.5, False, (3, 5), 1e-3, 0.25, 7.0, 3)
    assert cfg.width == config_lib.PRESETS["quick"].width  # unset flags keep the preset's value
    assert set(changes) == {"momentum", "augment", "milestones", "init_std", "detect_threshold", "lr_u", "seed"}
    flags = {a.dest for a in cifar.build_parser()._actions}
    assert {f.name for f in dataclasses.fields(config_lib.Config)} <= flags


def test_docs_list_every_preset_with_its_source():
    import pathlib
    rows = {line.split("|")[1].strip().strip("`"): line.split("|")[4]
            for line in (pathlib.Path(__file__).parents[2] / "docs" / "presets.md").read_text().splitlines()
            if line.startswith("| `")}
    assert set(rows) == set(config_lib.PRESETS)
    for name, source in rows.items():
        assert any(s in source for s in ("Table A.1", "README", "config_cifar100.json", "project")), name
