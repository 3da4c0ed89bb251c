"""Training library: the state, the optimizer, the pure step, evaluation and the run loop.

Design (flax ``examples/imagenet``, big_vision, airbench):
- :class:`TrainState` is flax's ``TrainState`` plus BatchNorm statistics and the run's
  RNG key. ``params = {"net": …, "u": (N, 1), "v": (N, K)}``: the per-sample tables
  are indexed by dataset position and live in the state like any parameter.
- One optimizer, ``optax.partition`` by a label function: the network gets SGD with
  momentum, the tables plain SGD at ``lr_u``/``lr_v``.
- :func:`train_step` is pure and takes a ready batch (what parity tests feed);
  :func:`device_step` is the jitted, donated update that gathers the batch from the
  on-device training set and augments it from ``fold_in(rng, step)``.
- :func:`fit` only orchestrates; the run directory (config record, metrics, checkpoints)
  is :mod:`sopjax.rundir`, the end-of-run report :mod:`sopjax.report`.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training import train_state

from sopjax import autoaugment, datasets_constants, detection, inputs, losses, models, neural_collapse, parallel, pipeline, report, rundir
from sopjax.config import Config
from sopjax.noise import LabelSet

EVAL_BATCH = 1000
SOP_METHODS = ("sop", "sop_plus")


class TrainingDiverged(FloatingPointError):
    """A trained quantity became NaN or inf; the run directory keeps its last checkpoint."""


class TrainState(train_state.TrainState):
    """flax's TrainState (step, apply_fn, params, tx, opt_state) plus:

    batch_stats: BatchNorm running statistics ({} for networks without BN).
    rng: uint32[2] base key of the run; step t uses ``fold_in(rng, t)``.
    norm: {"mean", "std"} float32 (3,) input normalization of ``cfg.dataset``'s loader
    (:mod:`sopjax.datasets_constants`); kept in the state so evaluation needs no config.
    """

    batch_stats: Any
    rng: jax.Array
    norm: Any


def normalize(state: TrainState, x):
    """Network input from raw rows: uint8 images scaled by the run's ``norm``; floats as they are."""
    return pipeline.preprocess(x, state.norm["mean"], state.norm["std"])


# ----------------------------------------------------------------- optimizer


def lr_schedule(cfg: Config, steps_per_epoch: int) -> optax.Schedule:
    """The network's learning rate per *step*: cosine from ``lr`` to ``lr_min`` over all steps;
    ``cosine_epoch``, PyTorch's ``CosineAnnealingLR(T_max=epochs, eta_min=lr_min)`` stepped once
    per epoch (the authors' trainer); or ×0.1 at each epoch in ``milestones`` (``multistep``)."""
    total = cfg.epochs * steps_per_epoch
    if cfg.schedule == "cosine":
        return optax.cosine_decay_schedule(cfg.lr, decay_steps=max(total, 1), alpha=cfg.lr_min / cfg.lr)
    if cfg.schedule == "cosine_epoch":
        def per_epoch(step):
            e = jnp.minimum(step // steps_per_epoch, cfg.epochs)
            return cfg.lr_min + (cfg.lr - cfg.lr_min) * 0.5 * (1.0 + jnp.cos(jnp.pi * e / cfg.epochs))
        return per_epoch
    return optax.piecewise_constant_schedule(cfg.lr, {int(m) * steps_per_epoch: 0.1 for m in cfg.milestones})


def _top_level_labels(params) -> dict:
    """Every leaf is labelled by its top-level key: "net", "u" or "v"."""
    return {k: jax.tree.map(lambda _: k, sub) for k, sub in params.items()}


def make_optimizer(cfg: Config, steps_per_epoch: int) -> optax.GradientTransformation:
    """The run's one optimizer (reference code: ``train.py`` of the authors' repository).

    net: SGD with momentum and the decayed lr, weight decay added to the gradient
    (PyTorch's coupled ``SGD(weight_decay=…)``). u, v: plain SGD at ``lr_u``/``lr_v``, no
    momentum, decay or schedule (but the optional warm-up of :func:`table_lr`), so rows
    outside the batch never move. A CE run has no "u"/"v" leaves and their transforms stay unused.
    """
    return optax.partition({
        "net": optax.chain(optax.add_decayed_weights(cfg.weight_decay),
                           optax.sgd(lr_schedule(cfg, steps_per_epoch), momentum=cfg.momentum)),
        "u": optax.sgd(table_lr(cfg.lr_u, cfg, steps_per_epoch)),
        "v": optax.sgd(table_lr(cfg.lr_v, cfg, steps_per_epoch))}, _top_level_labels)


def table_lr(lr: float, cfg: Config, steps_per_epoch: int):
    """The learning rate of a per-sample table: the constant ``lr`` (the paper), or with
    ``cfg.uv_warmup_epochs`` > 0 a step schedule that is 0 for that many epochs (rounded to
    whole steps) and ``lr`` after. u and v grow about multiplicatively per visit from their
    1e-8 init, at a rate set by how badly the network fits the sample's label, so in a short
    run the tables would otherwise grow during the first epochs, when the network fits no
    label and clean and wrong labels look alike (see the ``cpu-compare`` preset)."""
    if cfg.uv_warmup_epochs <= 0:
        return lr
    start = int(round(cfg.uv_warmup_epochs * steps_per_epoch))
    return lambda step: jnp.where(step < start, 0.0, lr)


def build_model(cfg: Config, num_classes: int):
    """The network of ``cfg``: ``cfg.arch`` at ``cfg.width``, computing in ``cfg.dtype``
    (convolutions and matmuls; params stay float32, logits are returned as float32)."""
    return models.make_model(cfg.arch, num_classes, cfg.width, dtype=jnp.dtype(cfg.dtype))


def create_train_state(cfg: Config, model, example_x, num_train: int, num_classes: int,
                       steps_per_epoch: int) -> TrainState:
    """Initialise from ``cfg.seed``: the network, and for SOP ``u`` (N, 1), ``v`` (N, K)
    float32 drawn from N(0, init_std²) (Algorithm 1, line 2).

    example_x: at least one training input (uint8 image or float feature row).
    """
    k_init, k_u, k_v, k_run = jax.random.split(jax.random.PRNGKey(cfg.seed), 4)
    mean, std = datasets_constants.normalization_stats(cfg.dataset)
    norm = {"mean": jnp.asarray(mean), "std": jnp.asarray(std)}
    variables = model.init(k_init, pipeline.preprocess(jnp.asarray(example_x[:1]), mean, std), train=False)
    params = {"net": variables["params"]}
    if cfg.method in SOP_METHODS:
        params["u"] = cfg.init_std * jax.random.normal(k_u, (num_train, 1), jnp.float32)
        params["v"] = cfg.init_std * jax.random.normal(k_v, (num_train, num_classes), jnp.float32)
    return TrainState.create(apply_fn=model.apply, params=params, tx=make_optimizer(cfg, steps_per_epoch),
                             batch_stats=variables.get("batch_stats", {}), rng=k_run, norm=norm)


# ------------------------------------------------------------------ the step


def _forward(state: TrainState, net_params, x):
    """Training-mode forward: (logits (B, K), new batch_stats)."""
    if not state.batch_stats:
        return state.apply_fn({"params": net_params}, x, train=True), state.batch_stats
    logits, new = state.apply_fn({"params": net_params, "batch_stats": state.batch_stats}, x,
                                 train=True, mutable=["batch_stats"])
    return logits, new["batch_stats"]


def loss_fn(params, state: TrainState, batch: dict, cfg: Config):
    """Batch-mean training loss of ``cfg.method``; returns (loss, (logits, batch_stats, aux)).

    SOP+ runs one forward pass over ``[x; x_strong]`` (2B images, so BatchNorm's batch
    statistics cover both views, as in the authors' trainer) and returns the weak half's logits.
    """
    if cfg.method == "sop_plus":
        both, new_stats = _forward(state, params["net"], jnp.concatenate([batch["x"], batch["x_strong"]]))
        logits, strong = jnp.split(both, 2)
        u_b, v_b = params["u"][batch["idx"]], params["v"][batch["idx"]]
        loss, aux = losses.sop_plus_loss(logits, strong, batch["y"], u_b, v_b, cfg.lambda_c, cfg.lambda_b,
                                         cfg.sop_variant)
        return loss, (logits, new_stats, aux)
    logits, new_stats = _forward(state, params["net"], batch["x"])
    if cfg.method in SOP_METHODS:
        u_b, v_b = params["u"][batch["idx"]], params["v"][batch["idx"]]
        loss, aux = losses.sop_loss(logits, batch["y"], u_b, v_b, cfg.sop_variant)
    else:
        loss = losses.cross_entropy(logits, batch["y"])
        aux = {"ce": loss}
    return loss, (logits, new_stats, aux)


def train_step(state: TrainState, batch: dict, cfg: Config):
    """One SGD step on a ready batch. Pure (jit it, or call :func:`device_step`).

    batch: {"x": (B, …) float32 network input, "y": (B,) int32 given labels, "idx": (B,)
    int32 dataset positions (rows of u, v)}; SOP+ adds "x_strong" (B, …) float32, the strong
    view of the same images. Returns (new state, metrics): batch means of loss, ce, mse
    (SOP), consistency and balance (SOP+), and acc against the given labels.
    """
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    (loss, (logits, new_stats, aux)), grads = grad_fn(state.params, state, batch, cfg)
    state = state.apply_gradients(grads=grads, batch_stats=new_stats)
    metrics = {"loss": loss, "acc": jnp.mean(jnp.argmax(logits, -1) == batch["y"]), **aux}
    return state, metrics


def gather_batch(state: TrainState, idx, data, cfg: Config) -> dict:
    """Rows ``idx`` (B,) int32 of the on-device ``data = (x (N, …), y (N,))``, augmented
    (uint8 images only) from ``fold_in(state.rng, state.step)`` and normalized.

    SOP+ adds "x_strong": :func:`sopjax.autoaugment.strong_view` of the same uint8 images
    (AutoAugment, crop and flip, normalize, Cutout 16) from ``fold_in(that key, 1)``, drawn
    whatever ``cfg.augment`` says (it governs the weak view); float inputs have no strong view
    and are used as they are.
    """
    x_all, y_all = data
    idx = parallel.shard_batch(idx)  # data parallel under a mesh (sopjax.parallel)
    x = raw = x_all[idx]
    key = jax.random.fold_in(state.rng, state.step)
    if cfg.augment and x.ndim == 4:
        x = pipeline.augment(key, x)
    batch = {"x": normalize(state, x), "y": y_all[idx], "idx": idx}
    if cfg.method == "sop_plus":
        # The weak view's constants, so both views share one input scale (docs/notes.md, SOP+).
        strong = (autoaugment.strong_view(jax.random.fold_in(key, 1), raw, state.norm["mean"], state.norm["std"])
                  if raw.dtype == jnp.uint8 and raw.ndim == 4 else normalize(state, raw))
        batch["x_strong"] = strong
    return batch


@functools.partial(jax.jit, static_argnames=("cfg",), donate_argnums=(0,))
def device_step(state: TrainState, idx, data, cfg: Config):
    """The jitted, donated training update: :func:`gather_batch` then :func:`train_step`."""
    return train_step(state, gather_batch(state, idx, data, cfg), cfg)



# ---------------------------------------------------------------- evaluation


def eval_variables(state: TrainState) -> dict:
    """The network's variables for an eval-mode ``apply_fn`` (params, and BatchNorm's running
    statistics when the network has them)."""
    return {"params": state.params["net"], **({"batch_stats": state.batch_stats} if state.batch_stats else {})}


@jax.jit
def _predict(state: TrainState, x_all, idx):
    x = normalize(state, x_all[parallel.shard_batch(idx)])
    return jax.nn.softmax(state.apply_fn(eval_variables(state), x, train=False))


def evaluate(state: TrainState, x_dev, indices: np.ndarray, batch: int = EVAL_BATCH) -> np.ndarray:
    """Eval-mode class probabilities (len(indices), K) float32 for rows ``indices`` of the
    on-device ``x_dev``. Runs in chunks of ``batch``; the last chunk is padded to keep one
    compiled shape, and its padding rows are dropped."""
    out, bs = [], min(batch, len(indices))
    for s in range(0, len(indices), bs):
        chunk = indices[s:s + bs]
        idx = np.concatenate([chunk, np.zeros(bs - len(chunk), chunk.dtype)])
        out.append(parallel.to_host(_predict(state, x_dev, jnp.asarray(idx)))[: len(chunk)])
    return np.concatenate(out)


@jax.jit
def _predict_features(state: TrainState, x_all, idx):
    x = normalize(state, x_all[parallel.shard_batch(idx)])
    logits, h, W, b = neural_collapse.last_layer(state.apply_fn, eval_variables(state), x)
    return jax.nn.softmax(logits), h, W, b


def evaluate_features(state: TrainState, x_dev, indices: np.ndarray, batch: int = EVAL_BATCH):
    """As :func:`evaluate`, in the same single pass also the penultimate features: returns
    probs (n, K), features (n, D) (the input of the last Dense layer), and that layer's
    W (K, D), b (K,), all float32 numpy."""
    probs, feats, bs = [], [], min(batch, len(indices))
    for s in range(0, len(indices), bs):
        chunk = indices[s:s + bs]
        idx = np.concatenate([chunk, np.zeros(bs - len(chunk), chunk.dtype)])
        p, h, W, b = parallel.to_host(_predict_features(state, x_dev, jnp.asarray(idx)))
        probs.append(p[: len(chunk)])
        feats.append(h[: len(chunk)])
    return np.concatenate(probs), np.concatenate(feats).astype(np.float32), np.asarray(W), np.asarray(b)


@dataclasses.dataclass(frozen=True)
class Arrays:
    """Host arrays of one run: x_train (N, …), labels (a LabelSet over N), x_test, y_test (int32);
    x_val, y_val: a held-out validation split and its *given* (noisy) labels, or None."""

    x_train: np.ndarray
    labels: LabelSet
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None


def split_validation(arrays: Arrays, val_size: int, seed: int) -> Arrays:
    """Hold out ``val_size`` seeded random training samples with their given (noisy) labels
    for model selection (the authors select on a noisy-label validation split taken from the
    training set). At most N // 10 samples are held out (the authors' 5,000 of 50,000), so a
    ``--subset`` run keeps 90% for training; each epoch record says the size used (val_size).
    Returns ``arrays`` unchanged when ``val_size`` is 0 or a split exists."""
    if val_size <= 0 or arrays.x_val is not None:
        return arrays
    N = len(arrays.x_train)
    val_size = max(1, min(val_size, N // 10))
    perm = np.random.default_rng([seed, 13]).permutation(N)
    val, keep = np.sort(perm[:val_size]), np.sort(perm[val_size:])
    labels = dataclasses.replace(arrays.labels, noisy=arrays.labels.noisy[keep], clean=arrays.labels.clean[keep])
    return dataclasses.replace(arrays, x_train=arrays.x_train[keep], labels=labels, x_val=arrays.x_train[val],
                               y_val=np.asarray(arrays.labels.noisy[val], np.int32))


def fit_subset(cfg: Config, num_train: int) -> np.ndarray:
    """Sorted dataset indices of the seeded training subset that memorization is measured on
    (all N when ``eval_subset`` is 0 or ≥ N)."""
    n = num_train if cfg.eval_subset <= 0 or cfg.eval_subset >= num_train else cfg.eval_subset
    return np.sort(np.random.default_rng([cfg.seed, 7]).choice(num_train, size=n, replace=False))


def test_rows(cfg: Config, num_test: int, last: bool) -> np.ndarray:
    """Sorted test-set rows evaluated after an epoch: a seeded subset of ``cfg.test_subset``
    rows, or all of them when it is 0 or ≥ ``num_test``, and always at the ``last`` epoch (so
    the reported last-epoch accuracy is on the whole test set)."""
    if last or cfg.test_subset <= 0 or cfg.test_subset >= num_test:
        return np.arange(num_test)
    return np.sort(np.random.default_rng([cfg.seed, 11]).choice(num_test, size=cfg.test_subset, replace=False))


def _epoch_detection(state: TrainState, probs, noisy, wrong, sub) -> dict:
    """Per-epoch wrong-label detection AUROC on the fit subset: ``auroc_1mp`` from the
    network's 1 − p(given label) and, for SOP runs, ``auroc_uv`` from ‖s_i‖₁ of the current
    u, v rows (:func:`report.detection_scores`). Tracks when the tables start to separate the
    wrong labels, the curve a final-epoch number hides."""
    params = {} if "u" not in state.params else {
        "u": parallel.to_host(state.params["u"])[sub], "v": parallel.to_host(state.params["v"])[sub]}
    scores = report.detection_scores(probs, noisy, params)
    aucs = {f"auroc_{k.split('_', 1)[1]}": detection.auroc(v, wrong) for k, v in scores.items()}
    return {k: (None if np.isnan(a) else a) for k, a in aucs.items()}  # NaN: no wrong (or no clean) labels


def epoch_record(state: TrainState, arrays: Arrays, devs: dict, sub: np.ndarray,
                 test_idx: np.ndarray | None = None) -> dict:
    """Test accuracy (on rows ``test_idx``, default all), and on the fit subset the fit to the
    given, wrong and clean labels, and the
    neural-collapse measures of its penultimate features against the given and the true labels
    (:func:`sopjax.neural_collapse.nc_record`: ``nc1_given``, ``nc1_true``, …)."""
    labels = arrays.labels
    test_idx = np.arange(len(arrays.x_test)) if test_idx is None else test_idx
    test_pred = evaluate(state, devs["x_test"], test_idx).argmax(-1)
    probs, feats, W, b = evaluate_features(state, devs["x_train"], sub)
    pred = probs.argmax(-1)
    noisy, clean, wrong = labels.noisy[sub], labels.clean[sub], labels.is_wrong[sub]
    val = ({} if arrays.x_val is None else {"val_acc": float(np.mean(
        evaluate(state, devs["x_val"], np.arange(len(arrays.x_val))).argmax(-1) == arrays.y_val)),
        "val_size": int(len(arrays.x_val))})
    return {"test_acc": float(np.mean(test_pred == arrays.y_test[test_idx])), "test_size": int(len(test_idx)), **val,
            **_epoch_detection(state, probs, noisy, wrong, sub),
            "fit_noisy_acc": float(np.mean(pred == noisy)),
            "memorized_wrong": float(np.mean(pred[wrong] == noisy[wrong])) if wrong.any() else None,
            "fit_clean_acc": float(np.mean(pred == clean)), "fit_subset_size": int(len(sub)),
            **neural_collapse.nc_record(feats, noisy, clean, W, b, arrays.num_classes)}


# ------------------------------------------------------------------ run loop


def every(n: int, i: int, last: int) -> bool:
    """Periodic action helper (big_vision's ``itstime``): true at steps n, 2n, … and at ``last``."""
    return (i + 1) % n == 0 or i + 1 == last


@jax.jit
def nonfinite_fractions(params) -> dict:
    """Fraction (float32 scalar) of entries that are NaN/inf or whose square overflows
    (|x| > ~1.8e19 in float32: the noise score u⊙u⊙y − v⊙v⊙(1−y) is then NaN) in each trained
    group of ``params``: "net" (all network leaves together), "u", "v". One scalar each."""
    out = {}
    for name, sub in params.items():
        leaves = jax.tree.leaves(sub)
        out[name] = sum(jnp.sum(~jnp.isfinite(l * l)) for l in leaves) / sum(l.size for l in leaves)
    return out


_ARRAY_NAMES = {"net": ("the network weights", "--lr"), "u": ("the u table", "--lr-u"), "v": ("the v table", "--lr-v")}


def check_finite(metrics: dict, where: str, last_good: int | None, workdir, tables: dict | None = None) -> None:
    """Raise :class:`TrainingDiverged` if a host-read metric is NaN or inf, or a trained
    array group in ``tables`` ({name: fraction of NaN/inf entries}) has any. The message
    says what is kept in ``workdir`` and how to go on."""
    bad = [f"{k} became {v}" for k, v in metrics.items() if not np.isfinite(v)]
    groups = [k for k, f in (tables or {}).items() if not float(f) == 0.0]
    bad += [f"{_ARRAY_NAMES.get(k, (k,))[0]} hold {100 * float(tables[k]):.3g}% entries that are NaN, inf or overflow when squared" for k in groups]
    if not bad:
        return
    flags = " and ".join(_ARRAY_NAMES[k][1] for k in groups if k in _ARRAY_NAMES) or "--lr, --lr-u or --lr-v"
    if last_good:
        advice = (f"The checkpoint after epoch {last_good} is kept in {workdir}: resume from it with a lower {flags} "
                  "and --allow-lr-change (same --workdir), or start anew in a new --workdir")
    else:
        advice = f"No epoch finished, so nothing was kept: re-run with a lower {flags}"
    raise TrainingDiverged(f"training diverged at {where}: {'; '.join(bad)}. {advice}.")


def run_steps(state: TrainState, steps: int, step, log_every: int, run, where: str = "", bar=None):
    """``steps`` calls of ``step(state, i) -> (state, metrics)``; returns (state, step-mean
    metrics as floats, keys prefixed "train_"). The loop both input paths share (this
    module's device-resident data, :mod:`sopjax.stream_train`'s loader).

    The host reads metrics only every ``log_every`` steps (for the bar and the NaN check,
    whose message names ``where`` and the step); raises :class:`TrainingDiverged`.
    """
    sums = None
    for i in range(steps):
        state, m = step(state, i)
        sums = m if sums is None else jax.tree.map(jnp.add, sums, m)
        if every(log_every, i, steps):
            mean = {k: float(v) / (i + 1) for k, v in sums.items()}
            check_finite({**mean, "loss (this step)": float(m["loss"])}, f"{where}step {i + 1}",
                         run.last_epoch, run.path, tables=nonfinite_fractions(state.params))
            if bar is not None:
                bar.update(i + 1 - bar.n)
                bar.set_postfix(loss=f"{mean['loss']:.3f}", acc=f"{mean['acc']:.3f}")
    return state, {f"train_{k}": float(v) / steps for k, v in sums.items()}


def train_epoch(state: TrainState, epoch: int, data, cfg: Config, log_every: int, run, bar=None):
    """One pass over the device-resident training set ``data``; returns (state, epoch-mean
    metrics as floats). See :func:`run_steps`."""
    batches = pipeline.epoch_batches(state.rng, epoch, len(data[1]), cfg.batch_size)
    return run_steps(state, len(batches), lambda st, i: device_step(st, batches[i], data, cfg), log_every, run,
                     f"epoch {epoch + 1}, ", bar)


def _device_arrays(arrays: Arrays) -> tuple[dict, tuple]:
    # Sharded by sample under a data-parallel mesh, else on the default device.
    devs = {"x_train": parallel.put_rows(arrays.x_train), "x_test": parallel.put_rows(arrays.x_test)}
    if arrays.x_val is not None:
        devs["x_val"] = parallel.put_rows(arrays.x_val)
    return devs, (devs["x_train"], parallel.put_rows(arrays.labels.noisy.astype(np.int32)))


def _progress_bar(enabled: bool, total: int, epoch: int, epochs: int):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"epoch {epoch + 1}/{epochs}", leave=False, dynamic_ncols=True)


def fit(cfg: Config, arrays: Arrays, workdir, model=None, progress: bool = True, log_every: int = 25,
        extra_config: dict | None = None, stop_after_epochs: int | None = None,
        log_epochs: bool = False, allow_lr_change: bool = False) -> dict | None:
    """Train ``cfg`` on ``arrays`` in ``workdir``, resuming from its newest checkpoint.

    Units: ``cfg.epochs`` are passes over the training set; test accuracy and the fit
    metrics are measured after every epoch. Writes the run directory described in
    :mod:`sopjax.rundir` and :mod:`sopjax.report`. Returns the summary dict, or None when
    ``stop_after_epochs`` ended this call early (as a preemption would; call again to resume).

    Checks the config and the data before writing anything; the run directory is locked
    while in use. ``allow_lr_change``: resume a run with new lr, lr_u, lr_v (recorded).

    Raises TrainingDiverged on a NaN/inf metric or trained array; ValueError for a bad
    config or data, or a ``workdir`` that cannot be written, is in use, or holds a
    different run or data (:class:`sopjax.rundir.RunDirError`).
    """
    cfg.validate()
    inputs.check_arrays(arrays)
    arrays = split_validation(arrays, cfg.val_size, cfg.seed)
    N = len(arrays.x_train)
    spe = N // cfg.batch_size
    if spe < 1:
        raise ValueError(f"batch size {cfg.batch_size} exceeds the {N} training samples; lower --batch-size")
    model = model or build_model(cfg, arrays.num_classes)
    state = create_train_state(cfg, model, arrays.x_train, N, arrays.num_classes, spe)
    record = rundir.config_record(cfg, arrays, N, spe, extra_config)
    with rundir.RunDir.open(workdir, record, allow_lr_change) as run:
        state = run.restore(parallel.place_state(state, N))
        devs, data = _device_arrays(arrays)
        sub, writer = fit_subset(cfg, N), rundir.MetricWriter(run.metrics_path, echo=progress or log_epochs)
        end = cfg.epochs if stop_after_epochs is None else min(cfg.epochs, run.start_epoch + stop_after_epochs)
        for epoch in range(run.start_epoch, end):
            t0, bar = time.perf_counter(), _progress_bar(progress, spe, epoch, cfg.epochs)
            state, train_m = train_epoch(state, epoch, data, cfg, log_every, run, bar)
            train_s = time.perf_counter() - t0
            bar is not None and bar.close()
            rec = {"epoch": epoch + 1, "step": int(state.step), **train_m,
                   **epoch_record(state, arrays, devs, sub, test_rows(cfg, len(arrays.x_test), epoch + 1 == cfg.epochs)),
                   "lr": float(lr_schedule(cfg, spe)(int(state.step))), "epoch_train_s": train_s,
                   "epoch_total_s": time.perf_counter() - t0, "images_per_s": spe * cfg.batch_size / train_s}
            writer.write(rec, total_epochs=cfg.epochs)
            run.save(epoch + 1, state)
        if end < cfg.epochs:
            return None
        probs = evaluate(state, devs["x_train"], np.arange(N))
        return report.finalize(cfg, parallel.to_host(state.params), probs, arrays, writer.history, run.path)
