"""Training library: state, optimizer, the jitted step, evaluation and the run loop.

Design (flax ``examples/imagenet``, big_vision, airbench):
- :class:`TrainState` is one pytree: network params and BatchNorm stats, the
  per-sample tables ``u`` (N, 1) and ``v`` (N, K) indexed by dataset position,
  the optax state, the step and the RNG key.
- One ``optax.partition`` over labels ``net``/``u``/``v`` covers every leaf.
- ``train_step(state, batch_indices, data) -> (state, metrics)`` is jitted with
  the state donated. The whole training set lives on the device and is an
  *argument* (a closed-over array would be embedded as a constant); crop and flip
  run in the step from ``fold_in(rng, step)``; the per-epoch shuffle is a device
  permutation from ``fold_in(rng, epoch)``.
- The host reads the loss every ``log_every`` steps for the progress bar and stops
  on NaN/inf; metrics go to ``metrics.jsonl``, one line per epoch; an orbax
  checkpoint is written after every finished epoch and a re-run resumes from it.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import pathlib
import time
from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from sopjax import detection, losses, models
from sopjax.config import Config
from sopjax.provenance import code_version
from sopjax.noise import LabelSet

CIFAR_MEAN = np.array([0.4914, 0.4822, 0.4465], dtype=np.float32)
CIFAR_STD = np.array([0.2470, 0.2435, 0.2616], dtype=np.float32)
EVAL_BATCH = 1000


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or inf. The last good checkpoint is kept in the workdir."""


@flax.struct.dataclass
class TrainState:
    """Everything a run needs to continue, as one pytree (checkpointed whole).

    params: {"net": network params, "u": (N, 1) f32, "v": (N, K) f32} ("u"/"v" only for SOP).
    batch_stats: BatchNorm running statistics. opt_state: the partitioned optax state.
    step: int32 scalar, optimizer steps taken. rng: uint32[2] base key of the run.
    """

    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any
    rng: jax.Array


# ----------------------------------------------------------------- optimizer


def lr_schedule(cfg: Config, steps_per_epoch: int) -> optax.Schedule:
    """The network's lr per *step*: cosine to 0 over all steps, or ×0.1 at each milestone epoch."""
    total = cfg.epochs * steps_per_epoch
    if cfg.schedule == "cosine":
        return optax.cosine_decay_schedule(cfg.lr, decay_steps=max(total, 1))
    return optax.piecewise_constant_schedule(cfg.lr, {int(m) * steps_per_epoch: 0.1 for m in cfg.milestones})


def param_labels(params) -> dict:
    """One label per leaf: every leaf under ``net`` is "net"; the tables are "u" and "v"."""
    return {k: jax.tree.map(lambda _: k, sub) for k, sub in params.items()}


def make_optimizer(cfg: Config, steps_per_epoch: int, params) -> optax.GradientTransformation:
    """``optax.partition`` of: net — SGD(momentum, decayed lr) with weight decay added to
    the gradient (PyTorch's SGD convention); u, v — plain SGD at ``lr_u``/``lr_v``, no
    momentum, no decay, no schedule, so rows outside the batch never move."""
    txs = {"net": optax.chain(optax.add_decayed_weights(cfg.weight_decay),
                              optax.sgd(lr_schedule(cfg, steps_per_epoch), momentum=cfg.momentum))}
    if "u" in params:
        txs["u"] = optax.sgd(cfg.lr_u)
        txs["v"] = optax.sgd(cfg.lr_v)
    return optax.partition(txs, param_labels(params))


# --------------------------------------------------------------------- state


def init_state(cfg: Config, model, tx_fn: Callable, example_x, num_train: int, num_classes: int) -> TrainState:
    """Initialise from ``cfg.seed``: network init, u, v ~ N(0, init_std²) (Alg. 1 line 2)."""
    key = jax.random.PRNGKey(cfg.seed)
    k_init, k_u, k_v, k_run = jax.random.split(key, 4)
    variables = model.init(k_init, preprocess(jnp.asarray(example_x[:1])), train=False)
    params = {"net": variables["params"]}
    if cfg.method == "sop":
        params["u"] = cfg.init_std * jax.random.normal(k_u, (num_train, 1), jnp.float32)
        params["v"] = cfg.init_std * jax.random.normal(k_v, (num_train, num_classes), jnp.float32)
    tx = tx_fn(params)
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      batch_stats=variables.get("batch_stats", {}), opt_state=tx.init(params), rng=k_run)


# ---------------------------------------------------------------- data on device


def preprocess(x):
    """uint8 images (B, 32, 32, 3) → normalised float32; float inputs pass through."""
    if x.dtype == jnp.uint8:
        return (x.astype(jnp.float32) / 255.0 - CIFAR_MEAN) / CIFAR_STD
    return x.astype(jnp.float32)


def augment(rng, x):
    """Random crop (zero-pad 4, as torchvision's RandomCrop(32, padding=4)) and horizontal
    flip, per image, on the device. x (B, H, W, C) uint8 → same shape and dtype."""
    k_crop, k_flip = jax.random.split(rng)
    B, H, W, C = x.shape
    padded = jnp.pad(x, ((0, 0), (4, 4), (4, 4), (0, 0)))
    off = jax.random.randint(k_crop, (B, 2), 0, 9)
    x = jax.vmap(lambda img, o: jax.lax.dynamic_slice(img, (o[0], o[1], 0), (H, W, C)))(padded, off)
    flip = jax.random.bernoulli(k_flip, 0.5, (B,))
    return jnp.where(flip[:, None, None, None], x[:, :, ::-1], x)


def epoch_batches(rng, epoch: int, num_train: int, batch_size: int) -> jax.Array:
    """(steps, batch_size) int32 dataset indices: a device permutation from fold_in(rng, epoch).

    The last ``num_train % batch_size`` samples of each permutation are dropped (they
    differ every epoch), so every step has a full batch and one compiled shape.
    """
    steps = num_train // batch_size
    perm = jax.random.permutation(jax.random.fold_in(jax.random.fold_in(rng, 1), epoch), num_train)
    return perm[: steps * batch_size].reshape(steps, batch_size).astype(jnp.int32)


# ------------------------------------------------------------------ the step


def make_train_step(cfg: Config, model, tx: optax.GradientTransformation):
    """Build ``train_step(state, batch_indices, data) -> (state, metrics)``, jitted, state donated.

    batch_indices (B,) int32 positions in the training set; data = (x_train (N, …),
    noisy labels (N,) int32) already on the device. Metrics are batch means:
    loss, ce, mse (SOP), acc (against the noisy labels).
    """

    def loss_fn(params, batch_stats, x, y, idx):
        variables = {"params": params["net"]}
        if batch_stats:
            variables["batch_stats"] = batch_stats
            logits, new = model.apply(variables, x, train=True, mutable=["batch_stats"])
            new_stats = new["batch_stats"]
        else:
            logits, new_stats = model.apply(variables, x, train=True), batch_stats
        if cfg.method == "sop":
            loss, aux = losses.sop_loss(logits, y, params["u"][idx], params["v"][idx], cfg.sop_variant)
        else:
            loss = losses.cross_entropy(logits, y)
            aux = {"ce": loss}
        return loss, (logits, new_stats, aux)

    def train_step(state: TrainState, idx, data):
        x_all, y_all = data
        rng = jax.random.fold_in(state.rng, state.step)
        x = x_all[idx]
        if cfg.augment and x.ndim == 4:
            x = augment(rng, x)
        x, y = preprocess(x), y_all[idx]
        (loss, (logits, new_stats, aux)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params, state.batch_stats, x, y, idx)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {"loss": loss, "acc": jnp.mean(jnp.argmax(logits, -1) == y), **aux}
        return state.replace(step=state.step + 1, params=params, batch_stats=new_stats,
                             opt_state=opt_state), metrics

    return jax.jit(train_step, donate_argnums=(0,))


def make_predict(model):
    """``predict(params_net, batch_stats, x_all, idx) -> probs (B, K)``, jitted, eval mode."""

    @jax.jit
    def predict(params_net, batch_stats, x_all, idx):
        variables = {"params": params_net}
        if batch_stats:
            variables["batch_stats"] = batch_stats
        return jax.nn.softmax(model.apply(variables, preprocess(x_all[idx]), train=False))

    return predict


def predict_all(predict, state: TrainState, x_dev, indices: np.ndarray) -> np.ndarray:
    """Class probabilities (len(indices), K) float32 numpy, in EVAL_BATCH chunks (last padded)."""
    out = []
    n = len(indices)
    bs = min(EVAL_BATCH, n)
    for s in range(0, n, bs):
        chunk = indices[s:s + bs]
        pad = bs - len(chunk)
        idx = jnp.asarray(np.concatenate([chunk, np.zeros(pad, chunk.dtype)]) if pad else chunk)
        out.append(np.asarray(predict(state.params["net"], state.batch_stats, x_dev, idx))[: len(chunk)])
    return np.concatenate(out)


# ------------------------------------------------------------------ run loop


@dataclasses.dataclass(frozen=True)
class Arrays:
    """Host arrays of one run: x_train (N, …), labels (a LabelSet over N), x_test, y_test (int32)."""

    x_train: np.ndarray
    labels: LabelSet
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int


def _versions() -> dict:
    import orbax.checkpoint

    import jaxlib

    return {"jax": jax.__version__, "jaxlib": jaxlib.__version__,
            "flax": flax.__version__, "optax": optax.__version__, "orbax-checkpoint": orbax.checkpoint.__version__,
            "numpy": np.__version__, "backend": jax.default_backend()}


def _checkpointer(workdir: pathlib.Path):
    import orbax.checkpoint as ocp

    return ocp.CheckpointManager(workdir.resolve() / "checkpoints",
                                 options=ocp.CheckpointManagerOptions(max_to_keep=2, create=True))


def fit(cfg: Config, arrays: Arrays, workdir, model=None, progress: bool = True, log_every: int = 25,
        extra_config: dict | None = None, stop_after_epochs: int | None = None,
        log_epochs: bool = False) -> dict | None:
    """Train ``cfg`` on ``arrays`` in ``workdir``; resume if it holds a checkpoint.

    Writes ``config.json`` (config, seed, versions, git commit, data source),
    ``metrics.jsonl`` (one line per epoch), ``summary.json``, PNG plots, and
    ``noise_scores.npz``: per-sample noise score (N,) and ``ranking``, the dataset
    indices sorted from most to least suspect.
    Returns the summary dict. Units: ``epochs`` are passes over the training set;
    test accuracy is measured after every epoch and reported best and last.

    ``stop_after_epochs`` ends this invocation after that many epochs (as a
    preemption would), returning None; the next call with the same workdir resumes.

    Raises TrainingDiverged on a NaN/inf loss (the last good checkpoint stays),
    ValueError if ``workdir`` holds a run with a different config.
    """
    import orbax.checkpoint as ocp
    from tqdm.auto import tqdm

    cfg.validate()
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    model = model or models.make_model(cfg.arch, arrays.num_classes, cfg.width)
    N = len(arrays.x_train)
    steps_per_epoch = N // cfg.batch_size
    if steps_per_epoch < 1:
        raise ValueError(f"batch size {cfg.batch_size} exceeds the {N} training samples; lower --batch-size")

    cfg_record = {"config": dataclasses.asdict(cfg), "seed": cfg.seed, "code_version": code_version(),
                  "versions": _versions(), "num_train": N, "steps_per_epoch": steps_per_epoch,
                  "realized_noise_rate": arrays.labels.realized_rate, **(extra_config or {})}
    cfg_path = workdir / "config.json"
    if cfg_path.exists():
        old = json.loads(cfg_path.read_text())
        if old.get("config") != json.loads(json.dumps(cfg_record["config"])):
            raise ValueError(f"{workdir} holds a run with a different config; use a new --workdir "
                             "(or delete it to start over)")
        # Keep the original record; note the code version of every resumption.
        old["resumed_with"] = old.get("resumed_with", []) + [cfg_record["code_version"]]
        cfg_record = old
    cfg_path.write_text(json.dumps(cfg_record, indent=1))

    tx_fn = functools.partial(make_optimizer, cfg, steps_per_epoch)
    state = init_state(cfg, model, tx_fn, arrays.x_train, N, arrays.num_classes)
    tx = tx_fn(state.params)
    mngr = _checkpointer(workdir)
    start_epoch = 0
    if mngr.latest_step() is not None:
        start_epoch = int(mngr.latest_step())
        state = mngr.restore(start_epoch, args=ocp.args.StandardRestore(state))
        print(f"resuming {workdir} from the checkpoint after epoch {start_epoch}")
    metrics_path = workdir / "metrics.jsonl"
    history = []
    if metrics_path.exists():
        history = [json.loads(l) for l in metrics_path.read_text().splitlines() if l.strip()]
        history = [h for h in history if h["epoch"] <= start_epoch]
    metrics_path.write_text("".join(json.dumps(h) + "\n" for h in history))

    train_step = make_train_step(cfg, model, tx)
    predict = make_predict(model)
    x_dev = jax.device_put(arrays.x_train)
    data = (x_dev, jax.device_put(arrays.labels.noisy.astype(np.int32)))
    x_test_dev = jax.device_put(arrays.x_test)
    test_idx = np.arange(len(arrays.x_test))
    eval_rng = np.random.default_rng([cfg.seed, 7])
    n_eval = N if cfg.eval_subset <= 0 or cfg.eval_subset >= N else cfg.eval_subset
    eval_idx = np.sort(eval_rng.choice(N, size=n_eval, replace=False))
    noisy, clean, wrong = arrays.labels.noisy, arrays.labels.clean, arrays.labels.is_wrong

    end_epoch = cfg.epochs if stop_after_epochs is None else min(cfg.epochs, start_epoch + stop_after_epochs)
    for epoch in range(start_epoch, end_epoch):
        t0 = time.perf_counter()
        batches = epoch_batches(state.rng, epoch, N, cfg.batch_size)
        sums: dict[str, jax.Array] = {}
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not progress,
                   leave=False, dynamic_ncols=True)
        for i in bar:
            state, m = train_step(state, batches[i], data)
            sums = m if not sums else jax.tree.map(jnp.add, sums, m)
            if (i + 1) % log_every == 0 or i + 1 == steps_per_epoch:
                mean = {k: float(v) / (i + 1) for k, v in sums.items()}  # the only host sync
                if not np.isfinite(float(m["loss"])) or not np.isfinite(mean["loss"]):
                    raise TrainingDiverged(
                        f"loss became {float(m['loss'])} at epoch {epoch + 1}, step {i + 1}. The last good checkpoint "
                        f"(after epoch {mngr.latest_step() or 0}) is kept in {workdir}. Lower --lr, --lr-u or --lr-v "
                        "and re-run with the same --workdir to resume from it.")
                bar.set_postfix(loss=f"{mean['loss']:.3f}", acc=f"{mean['acc']:.3f}")
        bar.close()
        train_time = time.perf_counter() - t0
        test_pred = predict_all(predict, state, x_test_dev, test_idx).argmax(-1)
        sub_pred = predict_all(predict, state, x_dev, eval_idx).argmax(-1)
        w = wrong[eval_idx]
        rec = {
            "epoch": epoch + 1, "step": int(state.step),
            **{f"train_{k}": float(v) / steps_per_epoch for k, v in sums.items()},
            "test_acc": float(np.mean(test_pred == arrays.y_test)),
            "fit_noisy_acc": float(np.mean(sub_pred == noisy[eval_idx])),
            "memorized_wrong": float(np.mean(sub_pred[w] == noisy[eval_idx][w])) if w.any() else float("nan"),
            "fit_clean_acc": float(np.mean(sub_pred == clean[eval_idx])),
            "fit_subset_size": int(n_eval), "fit_subset_seeded": [cfg.seed, 7],
            "lr": float(lr_schedule(cfg, steps_per_epoch)(int(state.step))),
            "epoch_train_s": train_time, "epoch_total_s": time.perf_counter() - t0,
            "images_per_s": steps_per_epoch * cfg.batch_size / train_time,
        }
        history.append(rec)
        with metrics_path.open("a") as f:
            f.write(json.dumps(rec) + "\n")
        mngr.save(epoch + 1, args=ocp.args.StandardSave(state))
        mngr.wait_until_finished()
        if progress or log_epochs:
            print(f"epoch {epoch + 1}/{cfg.epochs}: loss {rec['train_loss']:.3f}  test {rec['test_acc']:.4f}  "
                  f"memorized wrong {rec['memorized_wrong']:.3f}  fit clean {rec['fit_clean_acc']:.3f}  "
                  f"{rec['images_per_s']:.0f} img/s", flush=True)

    if end_epoch < cfg.epochs:
        return None
    summary = summarize(cfg, state, arrays, history, predict, x_dev)
    scores = summary.pop("_scores")
    # The ranking users act on: dataset indices, most suspect first (a plain npz, no pickle).
    np.savez(workdir / "noise_scores.npz", score=scores, ranking=detection.ranking(scores),
             given_label=arrays.labels.noisy, score_name=np.array(summary["detection_primary"]))
    (workdir / "summary.json").write_text(json.dumps(summary, indent=1))
    from sopjax import plots

    plots.training_panel(history, workdir / "training_curves.png", title=f"{cfg.method} on {cfg.label_set}")
    plots.detection_panel(scores, wrong, workdir / "detection.png")
    return summary


def summarize(cfg: Config, state: TrainState, arrays: Arrays, history: list, predict, x_dev) -> dict:
    """Best/last test accuracy, memorization, and wrong-label detection over all N samples.

    Detection scores: SOP — ``‖s_i‖₁`` from the learned u, v (:func:`losses.noise_score`);
    both methods — ``1 − p(given label)`` of the final network (eval mode). AUROC plus
    precision/recall at ``cfg.detect_threshold`` against the known wrong labels.
    """
    noisy, wrong = arrays.labels.noisy, arrays.labels.is_wrong
    probs = predict_all(predict, state, x_dev, np.arange(len(noisy)))
    scores = {"model_1mp": 1.0 - probs[np.arange(len(noisy)), noisy]}
    if cfg.method == "sop":
        scores["sop_uv"] = np.asarray(losses.noise_score(state.params["u"], state.params["v"], jnp.asarray(noisy)))
    det = {}
    for name, sc in scores.items():
        p, r = detection.precision_recall(sc, wrong, cfg.detect_threshold)
        det[name] = {"auroc": detection.auroc(sc, wrong), "precision": p, "recall": r,
                     "threshold": cfg.detect_threshold}
    accs = [h["test_acc"] for h in history]
    last = history[-1] if history else {}
    primary = "sop_uv" if cfg.method == "sop" else "model_1mp"
    return {
        "method": cfg.method, "label_set": cfg.label_set, "seed": cfg.seed, "epochs": len(history),
        "realized_noise_rate": arrays.labels.realized_rate,
        "test_acc_best": max(accs) if accs else None,
        "test_acc_best_epoch": int(np.argmax(accs)) + 1 if accs else None,
        "test_acc_last": accs[-1] if accs else None,
        "memorized_wrong_last": last.get("memorized_wrong"), "fit_clean_acc_last": last.get("fit_clean_acc"),
        "detection": det, "detection_primary": primary, "detection_auroc": det[primary]["auroc"],
        "mean_images_per_s": float(np.mean([h["images_per_s"] for h in history])) if history else None,
        "train_wall_s": float(sum(h["epoch_total_s"] for h in history)),
        "_scores": scores[primary],
    }
