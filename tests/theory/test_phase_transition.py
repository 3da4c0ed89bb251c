"""A --quick run of theory.phase_transition writes valid PNG and JSON files."""

import json

import numpy as np

from theory import phase_transition as pt


def _strict_json(path):
    def no_nan(tok):
        raise ValueError(f"non-standard JSON token {tok} in {path}")

    return json.loads(path.read_text(), parse_constant=no_nan)


def test_quick_run_writes_png_and_json(tmp_path):
    assert pt.main(["--quick", "--out", str(tmp_path)]) == 0
    for stem in ("fig2_gd_vs_convex", "fig3_lambda_sweep", "fig4_phase_transition"):
        png = tmp_path / f"{stem}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert png.stat().st_size > 10_000
        rec = _strict_json(tmp_path / f"{stem}.json")
        assert rec["seed"] == 0 and rec["solver"] == "ECOS" and "code_version" in rec
    f2 = _strict_json(tmp_path / "fig2_gd_vs_convex.json")
    grid = np.array(f2["rho_theta_gd"], dtype=float)
    assert grid.shape == (len(f2["alphas"]), len(f2["lams"]))
    assert all(s == "optimal" for s in f2["solver_status"])
    s = f2["summary"]["gd"]
    assert s["median_rho_theta_on_curve"] < 1e-2 < s["median_rho_theta_off_curve"]
    f4 = _strict_json(tmp_path / "fig4_phase_transition.json")
    rate = np.array(f4["success_rate"], dtype=float)
    assert rate[0, 0] == 1.0 and rate[-1, -1] == 0.0
