"""The method registry: the step, the CLI and the comparison read it, so a new method is one
entry plus its loss."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import cifar
from sopjax.core import methods
from tests.tiny_data import tiny_cifar

Q = 0.7


def generalized_ce(logits, y, rows, strong, spec):
    """Generalized cross-entropy (Zhang & Sabuncu, NeurIPS 2018): mean (1 − p_y^q)/q."""
    p = jnp.take_along_axis(jax.nn.softmax(logits), y[:, None], axis=1)[:, 0]
    loss = jnp.mean((1.0 - p**Q) / Q)
    return loss, {"gce": loss}


@pytest.fixture
def gce():
    methods.register(methods.Method("gce", generalized_ce, tables=False, strong_view=False, lr_u=None, lr_v=None,
                                    summary="generalized cross-entropy, q = 0.7", source="Zhang & Sabuncu 2018"))
    yield
    methods.unregister("gce")


def test_a_method_registered_with_its_loss_trains_one_epoch_through_the_cli(gce, tmp_path, capsys):
    data = tiny_cifar(tmp_path / "data")
    rc = cifar.main(["--method", "gce", "--preset", "quick", "--arch", "mlp", "--width", "0.125", "--epochs", "1",
                     "--batch-size", "16", "--eval-subset", "16", "--no-augment", "--no-progress", "--no-download",
                     "--data-dir", str(data), "--workdir", str(tmp_path / "run")])
    assert rc == 0, capsys.readouterr().err
    line = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    # the step ran the registered loss: its aux term is logged and is the whole loss
    assert line["train_gce"] == pytest.approx(line["train_loss"]) and 0 < line["train_loss"] < 1 / Q
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["method"] == "gce" and "sop_uv" not in summary["detection"]  # no tables, no table score


def test_the_cli_offers_exactly_the_registered_methods(gce):
    method_flag = next(a for a in cifar.build_parser()._actions if a.dest == "method")
    assert tuple(method_flag.choices) == methods.names() and "gce" in method_flag.choices
    methods.unregister("gce")
    method_flag = next(a for a in cifar.build_parser()._actions if a.dest == "method")
    assert "gce" not in method_flag.choices
    with pytest.raises(ValueError, match="--method must be one of ce, sop, sop_plus, got 'gce'"):
        methods.get("gce")


def test_registry_facts_decide_tables_and_strong_view():
    assert [(m, methods.get(m).tables, methods.get(m).strong_view) for m in ("ce", "sop", "sop_plus")] == \
        [("ce", False, False), ("sop", True, False), ("sop_plus", True, True)]


def test_registered_sop_loss_is_the_paper_loss_on_the_batch_rows():
    from sopjax.core import losses
    from sopjax.trainers.step import StepSpec

    rng = np.random.default_rng(0)
    logits, y = jnp.asarray(rng.standard_normal((8, 10)), jnp.float32), jnp.asarray(rng.integers(0, 10, 8))
    rows = {"u": jnp.asarray(rng.standard_normal((8, 1)), jnp.float32),
            "v": jnp.asarray(rng.standard_normal((8, 10)), jnp.float32)}
    got, aux = methods.get("sop").loss(logits, y, rows, None, StepSpec(method="sop", sop_variant="paper"))
    want, _ = losses.sop_loss(logits, y, rows["u"], rows["v"], "paper")
    assert float(got) == float(want) and set(aux) == {"ce", "mse"}
