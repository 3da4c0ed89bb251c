"""Losses: cross-entropy, the SOP loss (paper eqs. 4–9, App. A) and SOP+ (§4, App. A.3); reference code.

All functions take a batch and return the **batch-mean** scalar loss (the
reference code's reduction), so SGD learning rates mean what they mean there.

SOP notation (paper eq. 5): ``s_i = u_i⊙u_i⊙y_i − v_i⊙v_i⊙(1 − y_i)`` with one-hot
``y_i``. As in the reference code u has one column per sample (only its entry at
the given class matters), v has K columns, and the projection onto [−1, 1] of
eq. (6) is realised by clamping ``U² = clip(u²·y, 0, 1)``, ``V² = clip(v²·(1−y), 0, 1)``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

EPS = 1e-4  # reference code's ε in φ (paper eq. 7)


def cross_entropy(logits, labels):
    """Batch-mean softmax cross-entropy, −mean_i log softmax(f_i)[y_i] (the paper's CE baseline).

    Args:
      logits: (B, K) float network outputs.
      labels: (B,) int given labels in [0, K).

    Returns:
      A float32 scalar.
    """
    logp = jax.nn.log_softmax(logits.astype(jnp.float32))
    return -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=1))


def noise_squares(u_b, v_b, y_onehot):
    """``U² = clip(u²·y, 0, 1)`` and ``V² = clip(v²·(1−y), 0, 1)``, each (B, K).

    u_b (B, 1) or (B, K), v_b (B, K) float32 rows of the per-sample tables.
    """
    return jnp.clip(u_b * u_b * y_onehot, 0.0, 1.0), jnp.clip(v_b * v_b * (1.0 - y_onehot), 0.0, 1.0)


def adjusted_prediction(logits, U2, V2, eps: float = EPS):
    """The SOP-adjusted prediction p̂ = φ(softmax(f) + U² − sg(V²)) (paper eqs. 7–8, reference code).

    φ(w) = clip(max(w, ε)/max(‖max(w, ε)‖₁, ε), ε, 1). logits (B, K); U2, V2 (B, K) float32
    from :func:`noise_squares`. Returns (B, K) float32. V² is stopped: v learns only from
    the MSE term (App. A.1).
    """
    probs = jax.nn.softmax(logits.astype(jnp.float32))
    pred = jnp.maximum(probs + U2 - jax.lax.stop_gradient(V2), eps)
    pred = pred / jnp.maximum(jnp.sum(jnp.abs(pred), axis=-1, keepdims=True), eps)
    return jnp.clip(pred, eps, 1.0)


def sop_loss(logits, labels, u_b, v_b, variant: str = "reference", eps: float = EPS):
    """The SOP loss for one batch; returns (scalar loss, aux dict).

    ``variant="reference"`` (default) is the authors' code, term for term:

        p̂   = φ(softmax(f) + U² − sg(V²)),  φ(w) = clip(max(w, ε)/‖max(w, ε)‖₁, ε, 1)   (eqs. 7–8)
        L   = mean_i −log p̂_i[y_i]  +  Σ_i ‖onehot(argmax f_i) + U²_i − V²_i − y_i‖² / B   (eq. 9)

    so θ and u learn from both terms (θ only through CE: the one-hot of argmax is a
    stop-gradient projection) and v only from the MSE term (App. A.1: CE cannot
    train v). ``variant="paper"`` is Algorithm 1: u from CE only, v from MSE only
    (the MSE term sees ``sg(U²)``).

    Gradient of the MSE term in v (per sample, before the 1/B): differentiating
    ``s = u²y − v²(1−y)`` gives ``−4(h + s − y)⊙v⊙(1−y)``; App. A eq. (A.4) prints
    it with a + sign, a sign slip in the paper (the descent direction is the same
    as this code's).

    Args:
      logits: (B, K) float network outputs for the batch.
      labels: (B,) int given (possibly wrong) labels in [0, K).
      u_b: (B, 1) float32, the batch's rows of the table u (``u[idx]``, idx the samples'
        dataset positions); (B, K) also works (only the given class's entry counts).
      v_b: (B, K) float32, the batch's rows of v.
      variant: "reference" or "paper" (above).
      eps: ε of φ (the authors' 1e-4).

    Returns:
      (loss, aux): the batch-mean scalar loss (float32) and {"ce": …, "mse": …}, its two
      terms (scalars).

    Raises:
      ValueError: for an unknown variant.
    """
    if variant not in ("reference", "paper"):
        raise ValueError(f"unknown SOP variant {variant!r}; use 'reference' or 'paper'")
    K = logits.shape[-1]
    y = jax.nn.one_hot(labels, K, dtype=jnp.float32)
    U2, V2 = noise_squares(u_b, v_b, y)
    pred = adjusted_prediction(logits, U2, V2, eps)
    ce = -jnp.mean(jnp.sum(y * jnp.log(pred), axis=-1))
    hard = jax.nn.one_hot(jnp.argmax(jax.lax.stop_gradient(logits), axis=-1), K, dtype=jnp.float32)
    U2_mse = jax.lax.stop_gradient(U2) if variant == "paper" else U2
    mse = jnp.sum((hard + U2_mse - V2 - y) ** 2) / logits.shape[0]
    return ce + mse, {"ce": ce, "mse": mse}


def consistency_kl(logits_weak, logits_strong):
    """Per-sample KL(sg(softmax(f_weak)) ‖ softmax(f_strong)), (B,) float32 (paper App. A.3, L_C).

    The weak view is the target and carries no gradient; only the strong view is pulled
    toward it (the authors' ``consistency_loss``: ``F.kl_div(log_softmax(out2), softmax(out1).detach())``).
    logits_weak, logits_strong (B, K).
    """
    logp = jax.lax.stop_gradient(jax.nn.log_softmax(logits_weak.astype(jnp.float32)))
    logq = jax.nn.log_softmax(logits_strong.astype(jnp.float32))
    return jnp.sum(jnp.exp(logp) * (logp - logq), axis=-1)


def class_balance(pred, eps: float = EPS):
    """−Σ_k p_k log f̄_k with the uniform prior p_k = 1/K and f̄ = clip(mean_i pred_i, ε, 1)
    (paper App. A.3, L_B: KL(p ‖ f̄) up to the constant entropy of p; the authors'
    ``balance_kl``). pred (B, K) float32 → scalar."""
    avg = jnp.clip(jnp.mean(pred, axis=0), eps, 1.0)
    return -jnp.mean(jnp.log(avg))


def sop_plus_loss(logits_weak, logits_strong, labels, u_b, v_b, lambda_c: float = 0.9, lambda_b: float = 0.1,
                  variant: str = "reference", eps: float = EPS):
    """The SOP+ loss for one batch; returns (scalar loss, aux dict of scalars).

        L = L_SOP(f_weak; u, v) + λ_C · mean_i KL(sg(softmax(f_weak,i)) ‖ softmax(f_strong,i))
            + λ_B · (−Σ_k (1/K) log mean_i p̂_ik)

    (paper §4 and App. A.3, final loss; the authors' ``overparametrization_loss`` with
    ``ratio_consistency`` = λ_C = 0.9 and ``ratio_balance`` = λ_B = 0.1, ``model/loss.py`` of
    github.com/shengliu66/SOP). L_SOP is :func:`sop_loss` on the weak view only. The
    balance term is taken on the SOP-adjusted p̂ of the weak view (as in the authors'
    code, not on softmax(f) as App. A.3 writes it), so its gradient reaches θ and u.
    The two views' logits come from one forward pass over [weak; strong] in the trainer.

    Args:
      logits_weak: (B, K) float logits of the weakly augmented view (crop and flip).
      logits_strong: (B, K) float logits of the strongly augmented view (AutoAugment).
      labels: (B,) int given labels; u_b (B, 1), v_b (B, K): the batch's table rows.
      lambda_c, lambda_b: the weights λ_C, λ_B. variant, eps: as in :func:`sop_loss`.

    Returns:
      (loss, aux): the batch-mean scalar loss and {"ce", "mse", "consistency", "balance"}.

    Raises:
      ValueError: for an unknown variant.
    """
    sop, aux = sop_loss(logits_weak, labels, u_b, v_b, variant, eps)
    y = jax.nn.one_hot(labels, logits_weak.shape[-1], dtype=jnp.float32)
    pred = adjusted_prediction(logits_weak, *noise_squares(u_b, v_b, y), eps)
    consistency = jnp.mean(consistency_kl(logits_weak, logits_strong))
    balance = class_balance(pred, eps)
    loss = sop + lambda_c * consistency + lambda_b * balance
    return loss, {**aux, "consistency": consistency, "balance": balance}


def noise_score(u, v, labels):
    """Per-sample estimate of label noise: ‖s_i‖₁ = U²_i[y_i] + Σ_k V²_ik (paper eq. 5,
    with the clamp of :func:`noise_squares`), in [0, K]; higher means "more likely a wrong label".

    Args:
      u: (N, 1) float32, the trained table u (or the rows of the samples to score).
      v: (N, K) float32, the trained table v (same rows).
      labels: (N,) int, the given labels of those rows.

    Returns:
      (N,) float32 scores.
    """
    y = jax.nn.one_hot(labels, v.shape[-1], dtype=jnp.float32)
    U2, V2 = noise_squares(u, v, y)
    return jnp.sum(U2, axis=-1) + jnp.sum(V2, axis=-1)
