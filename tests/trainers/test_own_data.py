"""fit with your own model and data: the model contract, runs without true labels, any
dataset name, class names in the outputs."""

import json

import flax.linen as nn
import numpy as np
import pytest

import sopjax
from sopjax.data import constants

K = 4


class Net(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
        return nn.Dense(K)(nn.relu(nn.Dense(16)(x.reshape(len(x), -1))))


class NoTrainFlag(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(K)(x.reshape(len(x), -1))


class WrongWidth(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
        return nn.Dense(K + 1)(x.reshape(len(x), -1))


def _images(n, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, K, n)
    x = np.clip(rng.normal(60 + 40 * y[:, None, None, None], 20, (n, 6, 6, 3)), 0, 255).astype(np.uint8)
    return x, y


CFG = sopjax.Config(dataset="shapes", epochs=1, batch_size=16, eval_subset=32, lr=0.05, augment=False)


def _arrays(**kw):
    (x, y), (xt, yt) = _images(64, 0), _images(32, 1)
    return sopjax.Arrays.from_numpy(x, y, xt, yt, **kw)


def test_a_run_without_true_labels_skips_their_measures_and_says_so(tmp_path, capsys):
    names = ("circle", "square", "star", "moon")
    s = sopjax.fit(CFG, _arrays(class_names=names), tmp_path / "w", model=Net(), progress=False, log_epochs=True)
    out = capsys.readouterr().out
    assert "no true labels given: skipped" in out and "memorized wrong" not in out
    assert s["true_labels"] is False and "no true labels given" in s["skipped"]
    assert s["realized_noise_rate"] is None and s["memorized_wrong_last"] is None and s["detection"] == {}
    rec = json.loads((tmp_path / "w" / "metrics.jsonl").read_text().splitlines()[0])
    assert "fit_clean_acc" not in rec and "auroc_uv" not in rec and not any(k.endswith("_true") for k in rec)
    assert "fit_noisy_acc" in rec and "nc1_given" in rec
    # the noise scores are still written, with the class names beside them
    scores = np.load(tmp_path / "w" / "noise_scores.npz")
    assert scores["score"].shape == (64,) and list(scores["class_names"]) == list(names)
    assert s["class_names"] == list(names)
    assert json.loads((tmp_path / "w" / "config.json").read_text())["class_names"] == list(names)


def test_true_labels_when_given_bring_the_measures_back(tmp_path):
    (x, y), (xt, yt) = _images(64, 0), _images(32, 1)
    noisy = np.where(np.arange(64) % 4 == 0, (y + 1) % K, y)
    arrays = sopjax.Arrays.from_numpy(x, noisy, xt, yt, true_labels=y)
    s = sopjax.fit(CFG, arrays, tmp_path / "w", model=Net(), progress=False)
    assert s["true_labels"] is True and s["realized_noise_rate"] == 0.25 and "sop_uv" in s["detection"]
    assert "fit_clean_acc" in json.loads((tmp_path / "w" / "metrics.jsonl").read_text().splitlines()[0])


def test_another_dataset_normalizes_its_images_by_their_own_statistics(tmp_path):
    arrays = _arrays()
    sopjax.fit(CFG, arrays, tmp_path / "w", model=Net(), progress=False)
    norm = json.loads((tmp_path / "w" / "config.json").read_text())["input_normalization"]
    x = arrays.x_train.astype(np.float64) / 255
    np.testing.assert_allclose(norm["mean"], x.mean((0, 1, 2)), rtol=1e-5)
    np.testing.assert_allclose(norm["std"], x.std((0, 1, 2)), rtol=1e-4)
    assert constants.input_stats("cifar10", arrays.x_train)[2] == "the SOP authors' cifar10 constants"


@pytest.mark.parametrize("model, message", [
    (NoTrainFlag(), "must take the keyword train"),
    (WrongWidth(), r"must return float logits \(batch, num_classes\) = \(1, 4\)"),
    (object(), "must be a flax.linen.Module"),
])
def test_a_model_that_breaks_the_contract_is_refused_before_anything_is_written(tmp_path, model, message):
    with pytest.raises(ValueError, match=message):
        sopjax.fit(CFG, _arrays(), tmp_path / "w", model=model, progress=False)
    assert not (tmp_path / "w").exists()
