"""Wrong-label detection: SOP's u, v against cleanlab (k-fold CE) and CE's own 1 − p.

On the same labels, network and epochs (a preset, default ``cpu-compare``):

- SOP: the run's label-issue report (``label_issues.json``: the score S and the samples it
  flags at its own confident-joint count, :mod:`sopjax.evaluators.label_issues`); the same
  run's network 1 − p(given label) at that count; and the old ‖s_i‖₁ > ``detect_threshold``.
- cleanlab: ``cleanlab.filter.find_label_issues`` (its own count) fed out-of-sample
  probabilities from k-fold cross-validated CE (cleanlab's documented protocol): k networks,
  each trained on k − 1 folds for the preset's epochs and evaluated on the held-out fold,
  for each k of ``--folds``. Its AUROC uses ``1 − cleanlab.rank.get_label_quality_scores``
  (self-confidence).
- CE: 1 − p(given label) of one run's final network, top n at SOP's count.

The SOP and CE runs are read from a finished comparison directory (``--from-compare``,
as written by ``python -m experiments.cifar``) so the same runs are not trained twice;
without it they are trained here. Prints a Markdown table (AUROC, flagged count, precision,
recall, F1 at each method's own count, distinct score values, wall time: SOP's is its one
training run, cleanlab's its k trainings) and writes it with the raw numbers to
``<workdir>/detection.json``. The out-of-fold probabilities are cached in ``--workdir``.

    python -m benchmarks.detection_vs_cleanlab --from-compare runs/cpu-compare-compare-worst-s0 --folds 2,3
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import sys
import time

import numpy as np

from sopjax import configs as config_lib
from sopjax.data import arrays as arrays_lib
from sopjax.evaluators import detection, predict
from sopjax.infra import jsonio
from sopjax.pp import augment as pipeline
from sopjax.trainers import fit as fit_lib
from sopjax.trainers import state as tstate
from sopjax.trainers import step as step_lib


def train_predict(cfg: config_lib.Config, arrays: arrays_lib.Arrays, fit_rows: np.ndarray, pred_rows: np.ndarray):
    """Train CE on rows ``fit_rows`` for ``cfg.epochs`` (no run directory) and return eval-mode
    probabilities (len(pred_rows), K) for rows ``pred_rows``."""
    import jax

    from sopjax import models

    x, y = arrays.x_train[fit_rows], arrays.labels.noisy[fit_rows].astype(np.int32)
    spe = len(fit_rows) // cfg.batch_size
    state = tstate.create_train_state(cfg, models.make_model(cfg.arch, arrays.num_classes, cfg.width), x, len(x),
                                     arrays.num_classes, spe)
    data = (jax.device_put(x), jax.device_put(y))
    for epoch in range(cfg.epochs):
        for idx in pipeline.epoch_batches(state.rng, epoch, len(x), cfg.batch_size):
            state, _ = step_lib.device_step(state, idx, data, step_lib.StepSpec.from_config(cfg))
    return predict.evaluate(state, jax.device_put(arrays.x_train), pred_rows)


def out_of_fold_probs(cfg: config_lib.Config, arrays: arrays_lib.Arrays, k: int) -> np.ndarray:
    """(N, K) out-of-sample probabilities from k-fold CE; folds are a seeded partition."""
    N = len(arrays.x_train)
    folds = np.array_split(np.random.default_rng([cfg.seed, 13]).permutation(N), k)
    probs = np.zeros((N, arrays.num_classes), np.float32)
    for j, held in enumerate(folds):
        rest = np.sort(np.concatenate([f for i, f in enumerate(folds) if i != j]))
        print(f"fold {j + 1}/{k}: CE on {len(rest)} samples, {cfg.epochs} epochs", flush=True)
        probs[np.sort(held)] = train_predict(dataclasses.replace(cfg, method="ce"), arrays, rest, np.sort(held))
    return probs


def cached_oof(
    cfg: config_lib.Config, arrays: arrays_lib.Arrays, k: int, path: pathlib.Path
) -> tuple[np.ndarray, float]:
    """(out-of-fold probs, their wall time in s), from ``path`` when it holds them for the
    same labels, config and k; else computed (:func:`out_of_fold_probs`) and saved there."""
    key = jsonio.dumps({"config": dataclasses.asdict(cfg), "k": k})
    if path.is_file():
        with np.load(path) as z:
            if str(z["key"]) == key and np.array_equal(z["given_label"], arrays.labels.noisy):
                return z["probs"], float(z["wall_s"])
    t0 = time.perf_counter()
    probs = out_of_fold_probs(cfg, arrays, k)
    wall = time.perf_counter() - t0
    np.savez(path, probs=probs, wall_s=wall, key=np.array(key), given_label=arrays.labels.noisy)
    return probs, wall


def flagged_stats(flagged: np.ndarray, wrong: np.ndarray) -> dict:
    """Precision, recall, F1 and size of a flagged set (boolean (N,)) against the wrong labels."""
    tp = int(np.sum(flagged & wrong))
    p = tp / flagged.sum() if flagged.sum() else float("nan")
    r = tp / wrong.sum() if wrong.sum() else float("nan")
    f1 = 2 * p * r / (p + r) if p + r > 0 else float("nan")
    return {"precision": p, "recall": r, "f1": f1, "flagged": int(flagged.sum())}


def top_n(scores: np.ndarray, n: int) -> np.ndarray:
    """Boolean (N,): the n highest scores."""
    out = np.zeros(len(scores), bool)
    out[detection.ranking(scores)[:n]] = True
    return out


def run_dirs(cfg, arrays, args) -> dict:
    """{"sop": dir, "ce": dir}: the comparison directory's runs, or fresh runs trained here."""
    out = {}
    for m in ("sop", "ce"):
        d = pathlib.Path(args.from_compare) / m if args.from_compare else pathlib.Path(args.workdir) / m
        if not args.from_compare:
            fit_lib.fit(dataclasses.replace(cfg, method=m), arrays, d, progress=False, log_epochs=True)
        with np.load(d / "noise_scores.npz") as z:
            if not np.array_equal(z["given_label"], arrays.labels.noisy):
                raise ValueError(f"{d} was trained on other labels; pass the matching --preset/--seed")
        out[m] = d
    return out


def sop_rows(d: pathlib.Path, given: np.ndarray, wrong: np.ndarray) -> dict:
    """SOP's label-issue report (its score and its own flagged count), the same run's network
    1 − p at that count, and the old ‖s‖₁ > threshold, from the run directory ``d``."""
    rep = json.loads((d / "label_issues.json").read_text())
    summary = json.loads((d / "summary.json").read_text())
    wall = summary["train_wall_s"]
    score, flagged = np.zeros(len(given)), np.zeros(len(given), bool)
    for r in rep["rows"]:
        score[r["index"]], flagged[r["index"]] = 1.0 - r["label_score"], r["is_label_issue"]
    with np.load(d / "noise_scores.npz") as z:
        one_minus_p = 1.0 - z["pred_probs"][np.arange(len(given)), given]
    n = int(flagged.sum())
    uv = summary["detection"]["sop_uv"]
    p, r = uv["precision"], uv["recall"]
    return {
        "SOP label_issues.csv (its score, its count)": {"auroc": detection.auroc(score, wrong),
                                                         **flagged_stats(flagged, wrong), "wall_s": wall,
                                                         "distinct": len(np.unique(score.astype(np.float32)))},
        f"SOP network 1 − p(given), top {n}": {"auroc": detection.auroc(one_minus_p, wrong),
                                               **flagged_stats(top_n(one_minus_p, n), wrong), "wall_s": wall},
        f"SOP ‖s‖₁ (u, v) > {uv['threshold']}": {"auroc": uv["auroc"], "precision": p, "recall": r,
                                                 "f1": 2 * p * r / (p + r) if p and r else float("nan"),
                                                 "flagged": None, "wall_s": wall},
    }


def cleanlab_rows(cfg, arrays, args, out: pathlib.Path) -> dict:
    """cleanlab's find_label_issues on k-fold CE out-of-fold probabilities, for each k of --folds."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    given, wrong, rows = arrays.labels.noisy, arrays.labels.is_wrong, {}
    for k in args.folds:
        oof, cv_wall = cached_oof(cfg, arrays, k, out / f"oof_probs_{k}fold.npz")
        t0 = time.perf_counter()
        issues = find_label_issues(given, oof, n_jobs=1)  # no fork: JAX is multithreaded
        score = 1.0 - get_label_quality_scores(given, oof)
        rows[f"cleanlab find_label_issues ({k}-fold CE)"] = {
            "auroc": detection.auroc(score, wrong), **flagged_stats(issues, wrong),
            "wall_s": cv_wall + time.perf_counter() - t0, "distinct": len(np.unique(score.astype(np.float32)))}
    return rows


def table(rows: dict) -> str:
    lines = ["| detector | AUROC | flagged | precision | recall | F1 | distinct scores | wall time (s) |",
             "| --- |" + " --- |" * 7]

    def f(v, spec):
        return "—" if v is None or (isinstance(v, float) and not np.isfinite(v)) else format(v, spec)

    for name, r in rows.items():
        lines.append(f"| {name} | {f(r['auroc'], '.3f')} | {f(r['flagged'], 'd')} | {f(r['precision'], '.3f')} | "
                     f"{f(r['recall'], '.3f')} | {f(r['f1'], '.3f')} | {f(r.get('distinct'), 'd')} | "
                     f"{f(r['wall_s'], '.0f')} |")
    return "\n".join(lines) + "\n"


def _folds(text: str) -> tuple:
    ks = tuple(int(k) for k in text.split(","))
    if not all(2 <= k <= 5 for k in ks):
        raise argparse.ArgumentTypeError(f"folds between 2 and 5, e.g. 2,3; got {text!r}")
    return ks


def main(argv=None) -> int:
    from experiments import cifar

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="cpu-compare", choices=sorted(config_lib.PRESETS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--folds", type=_folds, default=(2,), help="cleanlab's k-fold CE, one or more k, e.g. 2,3")
    ap.add_argument("--from-compare", default=None, help="a finished comparison directory with ce/ and sop/ runs")
    ap.add_argument("--workdir", default=None, help="output folder (default runs/detection-vs-cleanlab-s<seed>)")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--oof-only", action="store_true",
                    help="only compute (and cache in --workdir) the k-fold probabilities, e.g. while the runs train")
    args = ap.parse_args(argv)
    args.workdir = args.workdir or f"runs/detection-vs-cleanlab-s{args.seed}"
    cfg = dataclasses.replace(config_lib.PRESETS[args.preset], seed=args.seed).validate()
    arrays, _ = cifar.load_arrays(cfg, argparse.Namespace(data_dir=args.data_dir, no_download=True))
    wrong, given = arrays.labels.is_wrong, arrays.labels.noisy
    out = pathlib.Path(args.workdir)
    out.mkdir(parents=True, exist_ok=True)
    if args.oof_only:
        for k in args.folds:
            cached_oof(cfg, arrays, k, out / f"oof_probs_{k}fold.npz")
        return 0
    dirs = run_dirs(cfg, arrays, args)
    rows = {**sop_rows(dirs["sop"], given, wrong), **cleanlab_rows(cfg, arrays, args, out)}
    with np.load(dirs["ce"] / "noise_scores.npz") as z:
        ce = z["score"]
    ce_wall = json.loads((dirs["ce"] / "summary.json").read_text())["train_wall_s"]
    n = rows["SOP label_issues.csv (its score, its count)"]["flagged"]
    rows[f"CE 1 − p(given), top {n}"] = {"auroc": detection.auroc(ce, wrong), **flagged_stats(top_n(ce, n), wrong),
                                         "wall_s": ce_wall}
    text = table(rows)
    print(f"\n{args.preset}, seed {args.seed}: {len(given)} labels, {int(wrong.sum())} wrong\n\n" + text)
    (out / "detection.json").write_text(jsonio.dumps({"preset": args.preset, "seed": args.seed, "folds": args.folds,
                                                      "num_train": len(given), "wrong": int(wrong.sum()),
                                                      "from_compare": args.from_compare, "rows": rows,
                                                      "markdown": text}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
