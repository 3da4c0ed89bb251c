"""Networks (sopjax/models.py): the authors' PreActResNet18, He et al.'s, init, compute dtype."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sopjax import models
from sopjax.models import layers


def _count(arch, K):
    m = models.make_model(arch, K)
    shapes = jax.eval_shape(lambda: m.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)), train=False))
    return sum(x.size for x in jax.tree.leaves(shapes["params"]))


@pytest.mark.parametrize("arch,K,expected", [
    ("preact_resnet18", 10, 11_171_274),      # the authors' PreResNet.PreActResNet18
    ("preact_resnet18", 100, 11_217_444),     # + 90 classes × (512 weights + 1 bias)
    ("preact_resnet18_he", 10, 11_172_170),   # stem BN moves to a final BN over 512 channels
    ("preact_resnet18_he", 100, 11_218_340),
])
def test_parameter_counts(arch, K, expected):
    assert _count(arch, K) == expected


def _identity_block_output(shortcut_from):
    """A stride-1, same-width block with both 3×3 convs zeroed returns just its shortcut."""
    block = models.PreActBlock(8, 1, shortcut_from=shortcut_from)
    x = jax.random.normal(jax.random.PRNGKey(1), (4, 6, 6, 8)) * 2.0 + 0.5
    v = block.init(jax.random.PRNGKey(0), x, train=True)
    params = jax.tree.map(lambda p: p, v["params"])
    for name in ("conv1", "conv2"):
        params[name]["kernel"] = jnp.zeros_like(params[name]["kernel"])
    out, _ = jax.jit(lambda v, x: block.apply(v, x, train=True, mutable=["batch_stats"]))({**v, "params": params}, x)
    return x, np.asarray(out)


def test_authors_shortcut_takes_preactivation():
    x, out = _identity_block_output("preact")
    xn = np.asarray(x)
    bn = (xn - xn.mean((0, 1, 2))) / np.sqrt(xn.var((0, 1, 2)) + 1e-5)  # train-mode BN, γ=1, β=0
    np.testing.assert_allclose(out, np.maximum(bn, 0.0), rtol=1e-4, atol=1e-5)
    x, out = _identity_block_output("x")
    np.testing.assert_allclose(out, np.asarray(x), rtol=1e-6)


def test_dense_init_is_pytorch_default():
    head = layers.torch_dense(100, 256)
    p = jax.jit(head.init)(jax.random.PRNGKey(0), jnp.zeros((1, 256)))["params"]
    w, b = np.asarray(p["kernel"]), np.asarray(p["bias"])
    bound = 1.0 / np.sqrt(w.shape[0])
    assert np.abs(w).max() <= bound and np.abs(b).max() <= bound
    # uniform on ±bound has std bound/√3; lecun_normal would give std bound and zero bias
    assert abs(w.std() - bound / np.sqrt(3)) < 0.1 * bound / np.sqrt(3)
    assert np.abs(b).max() > 0.3 * bound


def test_bfloat16_compute_keeps_float32_params_stats_logits():
    assert models.make_model("preact_resnet18", 10, dtype=jnp.bfloat16).dtype == jnp.bfloat16
    # two stages keep the (one-off, threefry-dominated) init compilation short
    net = lambda dt: models.CifarResNet(
        models.PreActBlock, (1, 1), 10, 0.125, block_kwargs=(("shortcut_from", "preact"),), dtype=dt
    )
    m32, m16 = net(jnp.float32), net(jnp.bfloat16)
    x = jax.random.normal(jax.random.PRNGKey(2), (8, 16, 16, 3))
    # eager init: its per-op compilations are cached, so the second init is nearly free
    v, v16 = m32.init(jax.random.PRNGKey(0), x, train=False), m16.init(jax.random.PRNGKey(0), x, train=False)
    assert {a.dtype for a in jax.tree.leaves(v16)} == {jnp.dtype(jnp.float32)}
    apply = jax.jit(lambda m, v, x: m.apply(v, x, train=True, mutable=["batch_stats"]), static_argnums=0)
    out32, s32 = apply(m32, v, x)
    out16, s16 = apply(m16, v, x)
    assert out16.dtype == jnp.float32
    assert {a.dtype for a in jax.tree.leaves(s16)} == {jnp.dtype(jnp.float32)}
    # same function at bfloat16 precision (8 mantissa bits)
    err = np.abs(np.asarray(out16) - np.asarray(out32)).max() / np.abs(np.asarray(out32)).max()
    assert 0 < err < 0.1
    jaxpr = str(jax.make_jaxpr(lambda x: m16.apply(v, x, train=False))(x))
    assert "conv_general_dilated" in jaxpr and "bf16" in jaxpr


def test_batchnorm_running_stats_follow_pytorch():
    """momentum 0.1 on the new batch and the unbiased variance in the running estimate."""
    bn = layers.BatchNorm(use_running_average=False)
    x = jax.random.normal(jax.random.PRNGKey(3), (2, 3, 3, 5)) * 3.0 + 1.0
    v = bn.init(jax.random.PRNGKey(0), x)
    y, new = bn.apply(v, x, mutable=["batch_stats"])
    xn = np.asarray(x).reshape(-1, 5)
    n = xn.shape[0]
    np.testing.assert_allclose(new["batch_stats"]["mean"], 0.1 * xn.mean(0), rtol=1e-5)
    np.testing.assert_allclose(new["batch_stats"]["var"], 0.9 + 0.1 * xn.var(0, ddof=1), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(y).reshape(-1, 5), (xn - xn.mean(0)) / np.sqrt(xn.var(0) + 1e-5),
                               rtol=1e-4, atol=1e-5)
    assert n == 18


def test_unknown_arch_raises():
    with pytest.raises(ValueError, match="preact_resnet18_he"):
        models.make_model("resnet50", 10)


def test_batchnorm_closed_form_gradient_equals_autodiff_of_its_formula():
    k = jax.random.split(jax.random.PRNGKey(0), 4)
    x = jax.random.normal(k[0], (8, 5, 5, 6)) * 3 + 1
    scale, bias, w = jax.random.normal(k[1], (6,)), jax.random.normal(k[2], (6,)), jax.random.normal(k[3], x.shape)

    def formula(x, scale, bias):
        mean = x.mean((0, 1, 2))
        var = jnp.square(x - mean).mean((0, 1, 2))
        return (x - mean) * jax.lax.rsqrt(var + 1e-5) * scale + bias

    def grads(fn):  # a loss whose gradient reaches every term of the backward pass
        return jax.grad(lambda *a: jnp.sum(jnp.sin(fn(*a)) * w), (0, 1, 2))(x, scale, bias)

    ours = lambda x, s, b: layers.normalize(x, s, b, jnp.float32(1e-5))
    np.testing.assert_allclose(ours(x, scale, bias), formula(x, scale, bias), atol=2e-6)
    for mine, ref in zip(grads(ours), grads(formula)):
        np.testing.assert_allclose(mine, ref, rtol=1e-5, atol=1e-5 * float(jnp.abs(ref).max()))
    assert layers.normalize(x.astype(jnp.bfloat16), scale, bias, jnp.float32(1e-5)).dtype == jnp.bfloat16
