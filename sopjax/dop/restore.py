"""Deep image prior (DIP) and double over-parameterization (DOP) for robust image restoration.

Source: You, Zhu, Qu, Ma, "Robust recovery via implicit bias of discrepant learning
rates for double over-parameterization", NeurIPS 2020 (slides
/work/shared/seeds/002_*.txt, "Extension to Image Recovery"); the network is the
encoder-decoder with skip connections of Ulyanov, Vedaldi, Lempitsky, "Deep image
prior" (CVPR 2018 / IJCV 2020), as used in the DOP authors' ``denoising.py``
(github.com/ChongYou/robust-image-recovery): 5 scales, stride-2 downsampling, bilinear
upsampling, 4-channel 1×1 skips, reflection padding, LeakyReLU, sigmoid output, a
fixed noise input U(0, 0.1) perturbed by N(0, (1/30)²) at every step. Width is
configurable (the authors use 128; this CPU runs 16–32).

Observation ``y = x★ + s★`` (H, W, C) float32 in [0, 1], s★ salt-and-pepper. Methods:

- ``"l2"``:  min_θ  mean((f(θ) − y)²)                        (overfits: PSNR peaks, then falls)
- ``"l1"``:  min_θ  mean(|f(θ) − y|)                         (robust loss; overfits later)
- ``"dop"``: min_{θ,g,h}  mean((f(θ) + g⊙g − h⊙h − y)²)     (θ at step τ, g and h at step α·τ)

Every method is plain gradient descent (SGD without momentum), as in the authors'
code (``--alg sgd --lr 1 --lr_c 500``): the discrepant-learning-rate bias is a
statement about gradient descent, not about Adam. g and h start at N(0, 1)·``init_gh``.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

from sopjax.core.overparam import sparse_term
from sopjax.dop.skipnet import SkipNet
from sopjax.infra import extras

METHODS = ("l2", "l1", "dop")


# --------------------------------------------------------------------------- losses


def l1_loss(x, y):
    """mean(|x − y|); DIP with a robust loss (the slides' "DIP-ℓ1")."""
    return jnp.mean(jnp.abs(x - y))


def dop_loss(x, g, h, y):
    """mean((x + g⊙g − h⊙h − y)²): the slides' DOP objective for images, per pixel.

    x, g, h, y: one shape (…, H, W, C) float. Raises ValueError if g and h differ in shape.
    """
    return jnp.mean((x + sparse_term(g, h) - y) ** 2)


# --------------------------------------------------------------------------- config and data


@dataclasses.dataclass(frozen=True)
class DIPConfig:
    """One restoration run. ``lr`` is τ (step for θ), ``alpha`` the ratio for g, h (slides: 500)."""

    method: str = "dop"
    iters: int = 2000
    lr: float = 1.0
    alpha: float = 500.0
    channels: tuple = (32, 32, 32, 32, 32)
    skip_channels: int = 4
    input_depth: int = 32
    reg_noise_std: float = 1.0 / 30.0
    init_gh: float = 1e-5
    record_every: int = 10

    def validate(self, shape) -> "DIPConfig":
        """Raise ValueError naming the fix for an unusable config or image shape (H, W, C)."""
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.iters < 1 or self.record_every < 1 or not (0 < self.lr < math.inf and 0 < self.alpha < math.inf):
            raise ValueError(f"iters, record_every, lr and alpha must be positive and finite, got {self.iters}, "
                             f"{self.record_every}, {self.lr}, {self.alpha}")
        if self.iters % self.record_every:
            raise ValueError(f"iters ({self.iters}) must be a multiple of record_every ({self.record_every})")
        if not self.channels or min(self.channels) < 1:
            raise ValueError(f"channels must be a non-empty tuple of positive ints, got {self.channels}")
        check_image_shape(shape, len(self.channels))
        return self


def check_image_shape(shape, scales: int) -> None:
    """Raise ValueError unless ``shape`` is (H, W, C), C in {1, 3}, H and W multiples of 2**scales."""
    m = 2 ** scales
    if len(shape) != 3 or shape[-1] not in (1, 3):
        raise ValueError(f"image must be (H, W, 1) or (H, W, 3), got shape {tuple(shape)}")
    if shape[0] < m or shape[1] < m or shape[0] % m or shape[1] % m:
        raise ValueError(f"image height and width must be positive multiples of {m} for a {scales}-scale "
                         f"network, got {shape[0]}×{shape[1]}; crop or resize it, or use fewer scales")


def salt_and_pepper(clean: np.ndarray, amount: float, seed: int) -> np.ndarray:
    """Set a fraction ``amount`` of pixels to 0 or 1 (equal odds), per channel value.

    clean: (H, W, C) float in [0, 1]. Uses ``skimage.util.random_noise(mode="s&p")``,
    as the DOP authors do. Raises ValueError unless 0 ≤ amount ≤ 1.
    """
    if not 0.0 <= amount <= 1.0:
        raise ValueError(f"amount must be in [0, 1], got {amount}")
    random_noise = extras.require("skimage.util", "salt-and-pepper noise (scikit-image)").random_noise
    return random_noise(np.asarray(clean, np.float64), mode="s&p", amount=amount, rng=seed).astype(np.float32)


def psnr(x, ref) -> jnp.ndarray:
    """PSNR in dB of x against ref, both in [0, 1] (peak 1): −10·log10(mean((x − ref)²))."""
    return -10.0 * jnp.log10(jnp.mean((jnp.clip(x, 0.0, 1.0) - ref) ** 2))


# --------------------------------------------------------------------------- training


# (weight of the squared loss on x + g⊙g − h⊙h − y, weight of the ℓ1 loss on x − y).
# ℓ2 is DOP with g = h = 0, which is a fixed point (∇g = 4 g⊙R / P), so all three
# methods run one compiled step: on this CPU compiling the step costs more than
# hundreds of iterations.
LOSS_WEIGHTS = {"l2": (1.0, 0.0), "l1": (0.0, 1.0), "dop": (1.0, 0.0)}


def init(cfg: DIPConfig, shape, seed: int):
    """Parameters and the fixed network input for an image of ``shape`` (H, W, C).

    Returns (params, z): params = {"net": Flax params, "g": (1, H, W, C), "h": (1, H, W, C)},
    z (1, H, W, input_depth) float32 ~ U(0, 0.1) (DIP's ``get_noise(…, 'noise')``).
    g, h ~ N(0, 1)·init_gh for "dop" and exactly 0 (so they stay 0) for "l2" and "l1".
    """
    k_net, k_z, k_g, k_h = jax.random.split(jax.random.PRNGKey(seed), 4)
    z = 0.1 * jax.random.uniform(k_z, (1, shape[0], shape[1], cfg.input_depth), jnp.float32)
    scale = cfg.init_gh if cfg.method == "dop" else 0.0
    params = {"net": _compiled_init(tuple(cfg.channels), cfg.skip_channels, shape[-1])(k_net, z)["params"],
              "g": scale * jax.random.normal(k_g, (1, *shape), jnp.float32),
              "h": scale * jax.random.normal(k_h, (1, *shape), jnp.float32)}
    return params, z


@functools.lru_cache(maxsize=8)
def _compiled_init(channels: tuple, skip_channels: int, out_channels: int):
    # jitted: Flax's eager init dispatches (and compiles) op by op, ~40 s on a loaded 2-core CPU
    return jax.jit(SkipNet(channels, skip_channels, out_channels).init)


def _loss(net: SkipNet, weights, params, z, y):
    x = net.apply({"params": params["net"]}, z)
    return weights[0] * dop_loss(x, params["g"], params["h"], y) + weights[1] * l1_loss(x, y), x


def objective(cfg: DIPConfig, params, z, y):
    """The loss of ``cfg.method`` at network input z; returns (loss, network output (1, H, W, C))."""
    net = SkipNet(tuple(cfg.channels), cfg.skip_channels, y.shape[-1])
    return _loss(net, jnp.asarray(LOSS_WEIGHTS[cfg.method], jnp.float32), params, z, y)


def optimizer(cfg: DIPConfig) -> optax.GradientTransformation:
    """Plain GD: step τ = cfg.lr on θ, α·τ on g and h (the slides' discrepant learning rates).

    Both rates live in the optimizer state (``inject_hyperparams``), so one compiled
    step serves every τ and α.
    """
    sgd = optax.inject_hyperparams(optax.sgd)
    return optax.multi_transform({"net": sgd(learning_rate=cfg.lr), "gh": sgd(learning_rate=cfg.alpha * cfg.lr)},
                                 {"net": "net", "g": "gh", "h": "gh"})


@functools.lru_cache(maxsize=8)
def compiled_step(channels: tuple, skip_channels: int, out_channels: int, reg_noise_std: float):
    """``step(params, opt_state, z, key, y, clean, weights) -> (params, opt_state, psnr)``, jitted once
    per network shape: method (``weights``, see LOSS_WEIGHTS), τ and α are all runtime values."""
    net = SkipNet(channels, skip_channels, out_channels)

    def step(params, opt_state, z, key, y, clean, weights):
        zp = z + reg_noise_std * jax.random.normal(key, z.shape, z.dtype)
        (_, x), grads = jax.value_and_grad(functools.partial(_loss, net, weights), has_aux=True)(params, zp, y)
        updates, opt_state = optimizer_update(opt_state, grads, params)
        return optax.apply_updates(params, updates), opt_state, psnr(x, clean)

    return jax.jit(step, donate_argnums=(0, 1))


@functools.lru_cache(maxsize=8)
def compiled_forward(channels: tuple, skip_channels: int, out_channels: int):
    """Jitted ``f(net_params, z) -> image (1, H, W, C)`` of :class:`SkipNet`."""
    net = SkipNet(channels, skip_channels, out_channels)
    return jax.jit(lambda p, z: net.apply({"params": p}, z))


def optimizer_update(opt_state, grads, params):
    # the learning rates are read from opt_state, so any DIPConfig gives the same update rule
    return optimizer(DIPConfig()).update(grads, opt_state, params)


def restore(noisy: np.ndarray, clean: np.ndarray, cfg: DIPConfig, seed: int = 0, progress=None) -> dict:
    """Fit ``noisy`` (H, W, C) float32 in [0, 1] with ``cfg.method``; report PSNR against ``clean``.

    Returns a dict: ``psnr`` (iters,) float — PSNR of the training output after each
    step's input perturbation, as the DOP authors log it; ``psnr_final`` (of the
    output at the unperturbed input after the last step), ``psnr_best``, ``iter_best``;
    ``image`` (H, W, C) float32 final output; ``sparse`` (H, W, C) the final g⊙g − h⊙h.
    ``progress(done_iters)`` is called every ``cfg.record_every`` steps.
    Raises ValueError for bad sizes or settings (see :meth:`DIPConfig.validate`).
    """
    noisy, clean = np.asarray(noisy, np.float32), np.asarray(clean, np.float32)
    if noisy.shape != clean.shape:
        raise ValueError(f"noisy and clean images differ in shape: {noisy.shape} vs {clean.shape}")
    cfg.validate(noisy.shape)
    params, z = init(cfg, noisy.shape, seed)
    opt_state = optimizer(cfg).init(params)
    step = compiled_step(tuple(cfg.channels), cfg.skip_channels, noisy.shape[-1], cfg.reg_noise_std)
    y, ref = jnp.asarray(noisy)[None], jnp.asarray(clean)[None]
    weights = jnp.asarray(LOSS_WEIGHTS[cfg.method], jnp.float32)
    # A Python loop over one jitted step: on XLA:CPU a lax.scan body ran the
    # convolutions several times slower than the same step jitted on its own.
    key = jax.random.PRNGKey(seed + 1)
    curve, vals = [], []
    for i in range(cfg.iters):
        params, opt_state, v = step(params, opt_state, z, jax.random.fold_in(key, i), y, ref, weights)
        vals.append(v)
        if (i + 1) % cfg.record_every == 0:
            curve.append(np.asarray(jnp.stack(vals)))
            vals = []
            if progress is not None:
                progress(i + 1)
    curve = np.concatenate(curve)
    image = np.asarray(compiled_forward(tuple(cfg.channels), cfg.skip_channels, noisy.shape[-1])(params["net"], z)[0])
    return {"psnr": curve, "psnr_final": float(psnr(image, clean)), "psnr_best": float(np.max(curve)),
            "iter_best": int(np.argmax(curve)) + 1, "image": image,
            "sparse": np.asarray(sparse_term(params["g"], params["h"])[0])}
