"""A missing optional package is one line naming the extra to install."""

import sys

import pytest

from experiments import cifar
from sopjax.infra import extras


def test_a_missing_package_names_its_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "dm_pix", None)  # as if dm-pix were not installed
    with pytest.raises(extras.MissingExtra, match=r"--method sop_plus needs the optional package dm-pix .*"
                                                  r"pip install 'sopjax\[plus\]'") as e:
        extras.require("dm_pix", "--method sop_plus")
    assert isinstance(e.value, ImportError) and isinstance(e.value, ValueError)


@pytest.mark.parametrize("hidden, argv, extra", [
    ("dm_pix", ["--method", "sop_plus"], "plus"),
    ("grain", ["--method", "sop", "--image-root", ".", "--num-classes", "2"], "stream"),
])
def test_the_cli_stops_in_one_line_before_writing_anything(tmp_path, monkeypatch, capsys, hidden, argv, extra):
    monkeypatch.setitem(sys.modules, hidden, None)
    rc = cifar.main(["--preset", "quick", *argv, "--workdir", str(tmp_path / "w"), "--no-download"])
    err = capsys.readouterr().err
    assert rc == 2 and f"pip install 'sopjax[{extra}]'" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "w").exists()
