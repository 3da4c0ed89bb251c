"""sopjax's default XLA:CPU flags: added only where the user named none, recorded truthfully,
and the same training numbers with and without them."""

import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np

from sopjax.infra import xla_flags

YNN = "--xla_cpu_experimental_ynn_fusion_type"
REPO = str(pathlib.Path(__file__).resolve().parents[2])


def test_defaults_are_appended_and_the_users_own_value_wins():
    assert xla_flags.with_defaults("") == " ".join(xla_flags.CPU_DEFAULTS)
    kept = "--xla_force_host_platform_device_count=4"
    assert xla_flags.with_defaults(kept).split() == [kept, *xla_flags.CPU_DEFAULTS]
    # a user's own value for the flag, even an empty one, is not overridden nor duplicated
    assert xla_flags.with_defaults(f"{YNN}=") == f"{YNN}="
    assert xla_flags.with_defaults(f"{kept} {YNN}=eltwise") == f"{kept} {YNN}=eltwise"


def test_nothing_is_claimed_once_the_backend_has_started():
    jax.devices()  # the backend exists: flags set now would not take effect
    env = {"XLA_FLAGS": ""}
    assert xla_flags.apply_defaults(env) == () and env["XLA_FLAGS"] == ""


def _run(tmp_path, name: str, env: dict) -> dict:
    out = tmp_path / f"{name}.npz"
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", xla_flags.OPT_OUT)} | env
    env |= {"JAX_PLATFORMS": "cpu", "PYTHONPATH": REPO}
    proc = subprocess.run([sys.executable, "-m", "tests.workers.xla_flags_worker", str(out)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    with np.load(out) as z:
        return {k: z[k] for k in z.files}


def test_twenty_steps_agree_with_and_without_the_defaults(tmp_path):
    on = _run(tmp_path, "on", {})
    off = _run(tmp_path, "off", {xla_flags.OPT_OUT: "0"})
    flags_on, flags_off = json.loads(str(on["flags"])), json.loads(str(off["flags"]))
    assert flags_on["sopjax_defaults"] == list(xla_flags.CPU_DEFAULTS)
    assert all(f in flags_on["XLA_FLAGS"].split() for f in xla_flags.CPU_DEFAULTS)
    assert flags_off == {"XLA_FLAGS": "", "sopjax_defaults": []}
    # the run trains (the loss and the tables move) and both runs trained the same way
    assert not np.allclose(on["loss"][0], on["loss"][-1]) and np.linalg.norm(on["u"]) > 0
    np.testing.assert_array_less(np.abs(on["loss"] - off["loss"]) / np.abs(off["loss"]), 1e-4)
    for key in ("u", "v"):
        rel = np.linalg.norm(on[key] - off[key]) / np.linalg.norm(off[key])
        assert rel <= 1e-4, (key, rel)
