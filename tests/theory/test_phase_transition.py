"""theory.phase_transition: records, replotting, success boundaries, and the CLI's refusals."""

import dataclasses
import json

import numpy as np
import pytest

from theory import linear_model as lm
from theory import phase_transition as pt


def _strict_json(path):
    def no_nan(tok):
        raise ValueError(f"non-standard JSON token {tok} in {path}")

    return json.loads(path.read_text(), parse_constant=no_nan)


def _is_png(path):
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000


@pytest.fixture(scope="module")
def quick_fig4(tmp_path_factory):
    out = tmp_path_factory.mktemp("fig4")
    assert pt.main(["--quick", "--figure", "4", "--out", str(out)]) == 0
    return out


def test_quick_fig4_record_is_consistent_and_reproducible(quick_fig4):
    rec = _strict_json(quick_fig4 / "fig4_phase_transition.json")
    assert _is_png(quick_fig4 / "fig4_phase_transition.png")
    both, th, s = (np.array(rec[k], dtype=float) for k in ("success_rate", "success_theta", "success_s"))
    # success of both can never exceed success of either
    assert np.all(both <= np.minimum(th, s) + 1e-12)
    assert both[0, 0] == 1.0 and both[-1, -1] == 0.0
    assert rec["solver_counts"]["solves"] == both.size * rec["config"]["trials"]
    # the recorded seeds rebuild the very instances: trial 0 of cell (0, 0) recovers
    cfg = rec["config"]
    P = lm.make_problems(cfg["N"], cfg["p"], cfg["rs"][0], cfg["ks"][0], rec["cell_seeds"][0][0], 1)
    from theory import convex as cx
    sol = cx.solve_batch(P.J, P.y, cfg["lam"])
    assert lm.relative_error(sol.theta[0], P.theta_star[0]) < cfg["threshold"]


def test_replot_redraws_from_json_without_solving(quick_fig4, tmp_path, monkeypatch):
    spec = pt.FIGURES[4]

    def boom(*a, **k):
        raise AssertionError("replot must not compute")

    monkeypatch.setitem(pt.FIGURES, 4, dataclasses.replace(spec, compute=boom))
    out = tmp_path / "re"
    assert pt.main(["--replot", str(quick_fig4 / "fig4_phase_transition.json"), "--out", str(out)]) == 0
    assert _is_png(out / "fig4_phase_transition.png")
    assert not (out / "fig4_phase_transition.json").exists()


def test_success_boundary_counts_a_rate_exactly_at_the_level():
    # Catches `>=` → `>`: a cell at exactly 50% belongs inside the boundary.
    rate = np.array([[1.0, 0.5, 0.45], [0.5, 0.0, 0.0], [0.2, np.nan, 0.0]])
    b = pt.success_boundary([5, 10, 15], [5, 10, 15], rate)
    assert b == {5: 10, 10: 5, 15: None}


def _no_compute(monkeypatch):
    calls = []
    for n, spec in list(pt.FIGURES.items()):
        monkeypatch.setitem(pt.FIGURES, n, dataclasses.replace(spec, compute=lambda *a, **k: calls.append(a)))
    return calls


@pytest.mark.parametrize("argv,needle", [
    (["--seed", "-1"], "--seed must be an integer"),
    (["--seed", "x"], "--seed must be an integer"),
    (["--solver", "BOGUS"], "--solver must be one of"),
    (["--figure", "7"], "invalid choice"),
    (["--no-such-flag"], "unrecognized arguments"),
])
def test_bad_flags_exit_2_with_one_line(argv, needle, capsys, monkeypatch, tmp_path):
    calls = _no_compute(monkeypatch)
    assert pt.main(argv + ["--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not calls and not (tmp_path / "o").exists()


def test_bad_out_is_refused_before_computing(tmp_path, capsys, monkeypatch):
    calls = _no_compute(monkeypatch)
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    assert pt.main(["--out", str(a_file)]) == 2
    assert "is a file" in capsys.readouterr().err
    assert pt.main(["--out", str(a_file / "sub")]) == 2
    assert "is a file" in capsys.readouterr().err
    # a folder that cannot be written (a read-only file system)
    assert pt.main(["--out", "/proc/sopjax-figures"]) == 2
    assert "cannot be written" in capsys.readouterr().err
    assert not calls and a_file.read_text() == "x"


def test_existing_figures_need_force_and_default_out_is_fresh(tmp_path, capsys, monkeypatch):
    out = tmp_path / "figs"
    out.mkdir()
    (out / "fig3_lambda_sweep.json").write_text("{}")
    calls = _no_compute(monkeypatch)
    assert pt.main(["--figure", "3", "--out", str(out)]) == 2
    assert "--force" in capsys.readouterr().err
    assert not calls and (out / "fig3_lambda_sweep.json").read_text() == "{}"
    # with no --out the run goes to a fresh runs/figures-<time>/, never to figures/
    monkeypatch.chdir(tmp_path)
    args = pt.parse_args(["--quick"])
    assert args.out is None
    monkeypatch.setattr(pt, "save", lambda out, *a: calls.append(out))
    monkeypatch.setitem(pt.FIGURES, 3, dataclasses.replace(pt.FIGURES[3], compute=lambda *a: {"timings_s": {}},
                                                           plot=lambda r: None, report=lambda r: None))
    assert pt.main(["--quick", "--figure", "3"]) == 0
    (dest,) = [c for c in calls if not isinstance(c, tuple)]
    assert dest.parent.name == "runs" and dest.name.startswith("figures-")


def test_debug_shows_the_traceback(monkeypatch, tmp_path):
    with pytest.raises(pt.UsageError):
        pt.main(["--seed", "-1", "--debug", "--out", str(tmp_path / "o")])


def test_figures_compute_with_one_blas_thread():
    # Catches the limit not being applied: OpenBLAS on both cores made Fig. 4's set-up 14× slower under load.
    from threadpoolctl import threadpool_info

    inside = pt.one_blas_thread(lambda: [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"])()
    assert inside and all(n == 1 for n in inside)
    assert pt.compute_fig4.__wrapped__ is not None  # the figures go through it


def test_boundary_offset_counts_cells_inside_the_reference():
    # Catches a sign flip or counting in k units instead of grid cells.
    ks = [5, 10, 15, 20]
    ref = {5: 20, 10: 15, 15: 5, 20: None}
    other = {5: 10, 10: 15, 15: None, 20: 5}
    assert pt.boundary_offset(ks, ref, other) == {5: 2, 10: 0, 15: 1, 20: -1}
