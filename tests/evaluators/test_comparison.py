"""CE vs. SOP comparison: the four checks, the table, the run directory and the shared data order."""

import copy
import json

import numpy as np
import pytest

from sopjax import configs as config_lib
from sopjax.data import arrays as arrays_lib
from sopjax.data import noise
from sopjax.evaluators import comparison as compare
from sopjax.trainers import compare as run_compare


def _summary(method, test, mem, auc_1mp, auc_uv=None):
    det = {"model_1mp": {"auroc": auc_1mp, "precision": 0.5, "recall": 0.5, "threshold": 0.5}}
    if auc_uv is not None:
        det["sop_uv"] = {"auroc": auc_uv, "precision": 0.9, "recall": 0.6, "threshold": 0.5}
    return {"method": method, "test_acc_last": test, "test_acc_best": test, "test_acc_best_epoch": 3,
            "memorized_wrong_last": mem, "fit_clean_acc_last": 0.6, "detection": det,
            "mean_images_per_s": 400.0, "train_wall_s": 100.0}


def passing():
    return {"ce": _summary("ce", 0.40, 0.80, 0.70), "sop": _summary("sop", 0.45, 0.20, 0.85, 0.93)}


def test_checks_hold_on_a_passing_run_and_each_fails_alone():
    assert [c["holds"] for c in compare.checks(passing())] == [True] * 4
    breaks = [("ce", "memorized_wrong_last", 0.45),   # CE did not memorize enough
              ("sop", "memorized_wrong_last", 0.41),  # more than half of CE's 0.80
              ("sop", "test_acc_last", 0.42),         # only +2 points
              ("sop", ("detection", "sop_uv", "auroc"), 0.89)]  # below 0.90
    for i, (m, key, value) in enumerate(breaks):
        s = copy.deepcopy(passing())
        if isinstance(key, tuple):
            s[m][key[0]][key[1]][key[2]] = value
        else:
            s[m][key] = value
        holds = [c["holds"] for c in compare.checks(s)]
        assert holds == [j != i for j in range(4)], (key, holds)
    s = passing()
    s["ce"]["detection"]["model_1mp"]["auroc"] = 0.95  # CE's own 1 − p ranks better than SOP's u, v
    assert not compare.checks(s)[3]["holds"]


def test_markdown_table_has_one_column_per_method_and_the_checks():
    s = passing()
    text = compare.markdown(["ce", "sop"], compare.table_rows(s), compare.checks(s))
    assert "| | CE | SOP |" in text
    assert "| test accuracy, last epoch | 40.00% | 45.00% |" in text
    assert "| detection AUROC, SOP ‖s‖₁ from u, v | — | 0.930 |" in text
    assert "| label issues flagged: count / precision / recall / F1 | — | — |" in text
    s["sop"]["label_issues"] = {"num_label_issues": 120, "precision": 0.6, "recall": 0.5, "f1": 6 / 11}
    text = compare.markdown(["ce", "sop"], compare.table_rows(s), compare.checks(s))
    assert "| label issues flagged: count / precision / recall / F1 | — | 120 / 0.600 / 0.500 / 0.545 |" in text
    assert text.count("| yes |") == 4


def _arrays(N=256):
    rng = np.random.default_rng(0)
    mu = rng.standard_normal((10, 30)) * 1.2
    y, yt = rng.integers(0, 10, N).astype(np.int32), rng.integers(0, 10, 200).astype(np.int32)
    x = (mu[y] + rng.standard_normal((N, 30))).astype(np.float32)
    xt = (mu[yt] + rng.standard_normal((200, 30))).astype(np.float32)
    return arrays_lib.Arrays(x, noise.make_label_set("symflip", y, 10, 0.4, seed=0), xt, yt, 10)


def test_run_comparison_one_directory_same_data_order(tmp_path):
    cfg = config_lib.Config(label_set="symflip", noise_rate=0.4, arch="mlp", width=0.25, epochs=2, batch_size=32,
                            lr=0.05, augment=False, eval_subset=0, init_std=1e-8)
    rec = run_compare.run_comparison(cfg, _arrays(), tmp_path)
    for f in ("comparison.json", "comparison.md", "fig1.png", "neural_collapse.png", "ce/metrics.jsonl",
              "sop/metrics.jsonl", "sop/noise_scores.npz"):
        assert (tmp_path / f).is_file(), f
    on_disk = json.loads((tmp_path / "comparison.json").read_text())
    assert on_disk["methods"] == ["ce", "sop"] and len(on_disk["checks"]) == 4
    ce, sop = rec["histories"]["ce"], rec["histories"]["sop"]
    assert [h["epoch"] for h in ce] == [1, 2] == [h["epoch"] for h in sop]
    # With u, v at 1e-8 SOP's CE term is CE itself, so the same init and the same batches in
    # the same order give the same first-epoch loss; another data order would not.
    assert sop[0]["train_ce"] == pytest.approx(ce[0]["train_loss"], rel=1e-4)
    for kind in ("given", "true"):
        assert np.isfinite([h[f"nc1_{kind}"] for h in ce + sop]).all()
    with pytest.raises(ValueError, match="distinct methods"):
        run_compare.run_comparison(cfg, _arrays(), tmp_path / "bad", methods=("ce", "ce"))


def test_cli_default_on_cpu_is_the_comparison_and_bad_lists_exit_2(capsys):
    from experiments import cifar

    assert cifar.choose_preset(None)[0] == "cpu-compare"  # the test machine has no accelerator
    assert config_lib.PRESETS["cpu-compare"].validate().augment is False
    assert cifar.main(["--compare", "ce,ce"]) == 2
    assert "distinct methods" in capsys.readouterr().err
    assert cifar.main(["--compare", "ce,bogus"]) == 2
