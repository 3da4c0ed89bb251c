"""Neural-collapse diagnostics NC1–NC4 of last-layer features (host-side numpy).

Source: V. Papyan, X. Y. Han, D. L. Donoho, "Prevalence of neural collapse during the
terminal phase of deep learning training", PNAS 117(40), 2020 (Figs. 2–7 define the
measures); the ETF distance is the Frobenius form of Zhu et al., "A geometric analysis
of neural collapse with unconstrained features", NeurIPS 2021 (the lecture in
``../shared/seeds/003_…``, "Neural Collapse in Classification I–V").

Notation: features ``H`` (N, D), labels ``y`` (N,) int in [0, K), classifier ``W``
(K, D) and bias ``b`` (K,) (logits = H Wᵀ + b). μ_c is the mean feature of class c,
μ_G the global mean (the mean of the class means, so that class sizes do not tilt it;
Papyan et al. use balanced classes, where both agree), M = [μ_c − μ_G] (K, D).

- NC1 = Tr(Σ_W Σ_B⁺)/K, Σ_W the within-class covariance (pooled over all samples),
  Σ_B = MᵀM/K the between-class covariance, ⁺ the Moore–Penrose pseudo-inverse.
- NC2 equinorm = std_c ‖M_c‖ / mean_c ‖M_c‖;
  NC2 ETF distance = ‖ M Mᵀ/‖M Mᵀ‖_F − (I − 11ᵀ/K)/√(K−1) ‖_F (0 for a simplex ETF,
  whatever its scale); NC2 max-angle = mean_{c≠c'} |cos∠(M_c, M_c') + 1/(K−1)|.
- NC3 = ‖ W/‖W‖_F − M/‖M‖_F ‖²_F (self-duality; 0 when W ∝ M).
- NC4 = fraction of samples where argmax_c (W h + b)_c ≠ argmin_c ‖h − μ_c‖
  (the nearest-class-center rule disagrees with the classifier).

All four are invariant to a rotation h → Q h, W → W Qᵀ (Q orthogonal), because each is
built from inner products only. Classes with no sample are left out of every measure
(and K counts only the classes present).
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
import numpy as np


def class_means(H: np.ndarray, y: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-class mean features (K, D) float64 and the boolean mask (K,) of classes present."""
    H = np.asarray(H, np.float64)
    counts = np.bincount(y, minlength=num_classes)
    sums = np.zeros((num_classes, H.shape[1]))
    np.add.at(sums, y, H)
    present = counts > 0
    means = np.where(present[:, None], sums / np.maximum(counts, 1)[:, None], 0.0)
    return means, present


def nc1(H, y, means, present) -> float:
    """Tr(Σ_W Σ_B⁺)/K (Papyan et al. Fig. 6). H (N, D), y (N,), means (K, D)."""
    K = int(present.sum())
    centered = np.asarray(H, np.float64) - means[y]
    sigma_w = centered.T @ centered / len(H)
    M = means[present] - means[present].mean(0)
    sigma_b = M.T @ M / K
    return float(np.trace(sigma_w @ np.linalg.pinv(sigma_b, rcond=1e-10, hermitian=True)) / K)


def nc2(means, present) -> dict:
    """Equinorm spread, Frobenius distance from a simplex ETF, and mean max-angle gap
    (Papyan et al. Figs. 2–3; Zhu et al. 2021) of the centered class means."""
    M = means[present] - means[present].mean(0)
    K = len(M)
    norms = np.linalg.norm(M, axis=1)
    G = M @ M.T
    etf = (np.eye(K) - np.ones((K, K)) / K) / np.sqrt(K - 1)
    cos = G / np.maximum(np.outer(norms, norms), 1e-300)
    off = ~np.eye(K, dtype=bool)
    return {"nc2_equinorm": float(norms.std() / norms.mean()),
            "nc2_etf": float(np.linalg.norm(G / np.linalg.norm(G) - etf)),
            "nc2_maxangle": float(np.mean(np.abs(cos[off] + 1.0 / (K - 1))))}


def nc3(W, means, present) -> float:
    """‖W/‖W‖_F − M/‖M‖_F‖²_F over the classes present (Papyan et al. Fig. 5). W (K, D)."""
    W = np.asarray(W, np.float64)[present]
    M = means[present] - means[present].mean(0)
    return float(np.sum((W / np.linalg.norm(W) - M / np.linalg.norm(M)) ** 2))


def nc4(H, W, b, means, present) -> float:
    """Fraction of samples whose classifier prediction differs from the nearest class mean
    (Papyan et al. Fig. 7). Only classes present compete in both rules."""
    H = np.asarray(H, np.float64)
    cls = np.flatnonzero(present)
    logits = H @ np.asarray(W, np.float64)[cls].T + np.asarray(b, np.float64)[cls]
    d2 = (np.sum(H * H, 1)[:, None] - 2 * H @ means[cls].T + np.sum(means[cls] ** 2, 1)[None, :])
    return float(np.mean(logits.argmax(1) != d2.argmin(1)))


def nc_metrics(H, y, W, b, num_classes: int) -> dict:
    """All NC measures for features H (N, D) under labels y (N,) int, classifier W (K, D),
    bias b (K,). Returns a JSON-able dict of floats: nc1, nc2_equinorm, nc2_etf,
    nc2_maxangle, nc3, nc4. Raises ValueError if fewer than two classes are present or
    the shapes disagree."""
    H, y = np.asarray(H), np.asarray(y)
    if H.ndim != 2 or y.shape != (len(H),) or np.shape(W) != (num_classes, H.shape[1]) or np.shape(b) != (num_classes,):
        raise ValueError(f"shapes: H {H.shape}, y {y.shape}, W {np.shape(W)}, b {np.shape(b)}; "
                         f"need (N, D), (N,), ({num_classes}, D), ({num_classes},)")
    means, present = class_means(H, y, num_classes)
    if present.sum() < 2:
        raise ValueError("neural-collapse measures need samples from at least two classes")
    return {"nc1": nc1(H, y, means, present), **nc2(means, present), "nc3": nc3(W, means, present),
            "nc4": nc4(H, W, b, means, present)}


def nc_record(H, given, true, W, b, num_classes: int) -> dict:
    """Flat per-epoch record: every :func:`nc_metrics` key twice, ``<key>_given`` (class means
    from the given, possibly wrong, labels) and ``<key>_true`` (from the true labels).
    H (N, D), given/true (N,) int (true None when unknown), W (K, D), b (K,). A label kind
    with fewer than two classes present, or without labels, is left out."""
    out = {}
    for kind, y in (("given", given), ("true", true)):
        if y is not None and len(np.unique(y)) >= 2:  # a tiny fit subset may hold one class: nothing to measure
            out.update({f"{k}_{kind}": v for k, v in nc_metrics(H, y, W, b, num_classes).items()})
    return out


def last_layer(apply_fn, variables, x):
    """Eval-mode forward that also returns the last ``nn.Dense`` layer's input and weights:
    (logits (B, K), features H (B, D), W (K, D), b (K,)). Works for any network whose
    head is its last Dense call (all of :mod:`sopjax.models`); a head without bias gets
    b = 0. Traceable under jit.
    Raises ValueError if the network has no Dense layer."""
    seen = {}

    def capture(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        if isinstance(context.module, nn.Dense) and context.method_name == "__call__":
            p = context.module.variables["params"]
            W = p["kernel"].T
            seen.update(h=args[0], W=W, b=p["bias"] if "bias" in p else jnp.zeros(W.shape[0], W.dtype))
        return out

    with nn.intercept_methods(capture):
        logits = apply_fn(variables, x, train=False)
    if not seen:
        raise ValueError("the network has no Dense layer; neural-collapse features need a linear head")
    return logits, seen["h"].astype(logits.dtype), seen["W"], seen["b"]
