"""The public API: every exported name resolves, is documented, and importing sopjax stays light."""

import importlib.metadata
import inspect
import re
import subprocess
import sys

import pytest

import sopjax

FUNCTIONS = ("init_tables", "sop_optimizer", "sop_loss", "sop_plus_loss", "noise_score", "cross_entropy", "fit",
             "load_config")


@pytest.mark.parametrize("name", [n for n in sopjax.__all__ if n != "__version__"])
def test_every_exported_name_resolves_and_has_a_docstring(name):
    obj = getattr(sopjax, name)
    assert obj.__doc__ and len(obj.__doc__.strip()) > 40, name
    assert name in dir(sopjax)


@pytest.mark.parametrize("name", FUNCTIONS)
def test_the_core_functions_document_args_and_returns(name):
    doc = inspect.getdoc(getattr(sopjax, name))
    assert re.search(r"^Args:", doc, re.M) and re.search(r"^Returns:", doc, re.M), name


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        sopjax.nope  # noqa: B018


def test_import_sopjax_loads_no_training_stack_until_a_name_is_used():
    # only the XLA-flags module (os and sys) runs at import: it must act before JAX starts
    code = ("import sys, sopjax; before = {m for m in sys.modules if m.startswith(('sopjax.', 'jax', 'flax'))}; "
            "sopjax.sop_loss; after = {m for m in sys.modules if m.startswith('sopjax.')}; "
            "print(sorted(before), 'sopjax.trainers.fit' in after, 'sopjax.core.losses' in after)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['sopjax.infra', 'sopjax.infra.xla_flags'] False True"


def test_the_installed_version_is_sopjax_version():
    assert importlib.metadata.version("sopjax") == sopjax.__version__


def test_the_console_scripts_point_at_the_command_line_mains():
    entry_points = importlib.metadata.distribution("sopjax").entry_points
    scripts = {e.name: e for e in entry_points if e.group == "console_scripts"}
    assert {"sopjax-cifar", "sopjax-figures", "sopjax-matrix-recovery", "sopjax-image-restoration"} <= set(scripts)
    assert scripts["sopjax-cifar"].load().__module__ == "experiments.cifar"
    assert all(callable(e.load()) for e in scripts.values())
