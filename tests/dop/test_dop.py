"""Deep image prior and double over-parameterization for images (sopjax/dop.py, sopjax/overparam.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sopjax.core.overparam import sparse_term
from sopjax.dop import restore as dop

# one small network for every test, so the step compiles once per test run
CH = (8, 8)


def _synthetic(size=32):
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = 0.2 + 0.5 * xx * (1 - yy) + 0.3 * ((xx - 0.5) ** 2 + (yy - 0.5) ** 2 < 0.08)
    return img[..., None].astype(np.float32)


def test_sparse_term():
    g, h = jnp.array([1.0, 2.0, 0.0]), jnp.array([0.0, 1.0, 3.0])
    np.testing.assert_allclose(sparse_term(g, h), [1.0, 3.0, -9.0])
    with pytest.raises(ValueError):
        sparse_term(jnp.ones(3), jnp.ones((3, 1)))


def test_dop_step_is_discrepant_gd_on_the_stated_objective():
    # θ ← θ − τ ∇θ ℓ,  (g, h) ← (g, h) − α τ ∇ ℓ  with ℓ = mean((f(θ) + g⊙g − h⊙h − y)²)
    # (slides). Catches α applied to the wrong group, a wrong loss, or a wrong sign.
    clean = _synthetic()
    y = jnp.asarray(dop.salt_and_pepper(clean, 0.3, seed=0))[None]
    cfg = dop.DIPConfig(method="dop", channels=CH, lr=0.7, alpha=50.0, init_gh=1e-2)
    params, z = dop.init(cfg, clean.shape, seed=0)
    key = jax.random.PRNGKey(3)
    zp = z + cfg.reg_noise_std * jax.random.normal(key, z.shape, z.dtype)
    net = dop.SkipNet(CH, 4, 1)

    def stated(p):  # written out here, independently of dop.dop_loss
        x = net.apply({"params": p["net"]}, zp)
        return jnp.mean((x + p["g"] ** 2 - p["h"] ** 2 - y) ** 2)

    grads = jax.jit(jax.grad(stated))(params)
    R = jax.jit(net.apply)({"params": params["net"]}, zp) + params["g"] ** 2 - params["h"] ** 2 - y
    np.testing.assert_allclose(grads["g"], 4 * params["g"] * R / R.size, rtol=1e-4, atol=1e-12)
    want = {"net": jax.tree.map(lambda p, g: p - cfg.lr * g, params["net"], grads["net"]),
            "g": params["g"] - cfg.alpha * cfg.lr * grads["g"], "h": params["h"] - cfg.alpha * cfg.lr * grads["h"]}
    step = dop.compiled_step(CH, 4, 1, cfg.reg_noise_std)
    copy = jax.tree.map(jnp.array, params)
    got, _, _ = step(copy, dop.optimizer(cfg).init(copy), z, key, y, jnp.asarray(clean)[None],
                     jnp.asarray(dop.LOSS_WEIGHTS["dop"]))
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-7)


def test_restoration_raises_psnr_above_the_noisy_input_and_l2_keeps_s_zero():
    clean = _synthetic()
    noisy = dop.salt_and_pepper(clean, 0.3, seed=1)
    base = float(dop.psnr(noisy, clean))
    r = dop.restore(noisy, clean, dop.DIPConfig(method="dop", iters=150, channels=CH, record_every=50), seed=0)
    assert r["psnr_final"] > base + 5.0, (r["psnr_final"], base)
    assert r["psnr"].shape == (150,) and r["image"].shape == clean.shape
    # s ends up on the corrupted pixels, not elsewhere
    hit = np.abs(noisy - clean) > 0.05
    assert np.abs(r["sparse"][hit]).mean() > 3 * np.abs(r["sparse"][~hit]).mean()
    r2 = dop.restore(noisy, clean, dop.DIPConfig(method="l2", iters=10, channels=CH, record_every=10), seed=0)
    assert np.all(r2["sparse"] == 0)  # ℓ2 is not DOP in disguise


@pytest.mark.parametrize("shape", [(30, 32, 1), (32, 32, 2), (32, 32), (8, 2, 1)])
def test_bad_sizes_raise(shape):
    img = np.zeros(shape, np.float32)
    with pytest.raises(ValueError):
        dop.restore(img, img, dop.DIPConfig(channels=CH, iters=10, record_every=10))


def test_bad_settings_raise():
    img = _synthetic()
    with pytest.raises(ValueError):
        dop.restore(img, img[:16], dop.DIPConfig(channels=CH))
    with pytest.raises(ValueError):
        dop.salt_and_pepper(img, 1.5, seed=0)
    for bad in (dict(method="l3"), dict(iters=15, record_every=10), dict(alpha=0.0)):
        with pytest.raises(ValueError):
            dop.DIPConfig(channels=CH, **bad).validate(img.shape)


def test_image_cli_bad_input_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    from experiments import image_restoration as ir

    monkeypatch.chdir(tmp_path)
    assert ir.main(["--quick", "--size", "100"]) == 2
    assert ir.main(["--quick", "--images", "lena"]) == 2
    assert ir.main(["--quick", "--levels", "0.5,1.2"]) == 2
    (tmp_path / "afile").write_text("")
    assert ir.main(["--quick", "--out", str(tmp_path / "afile")]) == 2  # unwritable: fails before computing
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 4 and all(e.startswith("error: ") for e in err)
    assert not (tmp_path / "runs").exists()
