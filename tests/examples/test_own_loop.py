"""examples/own_loop.py: SOP in a user's own loop, with public names only."""

import ast
import pathlib
import re
import subprocess
import sys

import pytest

EXAMPLE = pathlib.Path(__file__).resolve().parents[2] / "examples" / "own_loop.py"


def test_the_example_uses_only_import_sopjax_and_fits_in_40_lines():
    text = EXAMPLE.read_text()
    assert len(text.splitlines()) <= 40
    imports = [n for n in ast.walk(ast.parse(text)) if isinstance(n, (ast.Import, ast.ImportFrom))]
    from_sopjax = [n.module for n in imports if isinstance(n, ast.ImportFrom) and (n.module or "").startswith("sopjax")]
    deep = [a.name for n in imports if isinstance(n, ast.Import) for a in n.names if a.name.startswith("sopjax.")]
    assert not from_sopjax and not deep
    assert "import sopjax" in text


@pytest.mark.slow
def test_sop_memorizes_fewer_flipped_labels_than_the_same_loop_without_tables():
    out = subprocess.run([sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    m = re.search(r"SOP ([\d.]+), CE ([\d.]+); noise score flipped ([\d.]+), kept ([\d.]+)", out.stdout)
    sop, ce, flipped, kept = map(float, m.groups())
    assert ce > 0.9  # without the tables the network fits the flipped labels
    assert sop < ce - 0.3
    assert flipped > 5 * kept  # the tables' noise score singles out the flipped labels
