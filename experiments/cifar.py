"""Train SOP or cross-entropy on CIFAR with noisy labels.

    python -m experiments.cifar                              # `quick` on CPU, `paper-cifar10n` on GPU/TPU
    python -m experiments.cifar --preset quick --method ce   # the CE baseline, same seed
    python -m experiments.cifar --preset paper-cifar10-sym --noise-rate 0.4
    python -m experiments.cifar --subset 512 --epochs 1      # a smoke run

A thin CLI over :mod:`sopjax.train`; see :mod:`sopjax.config` for the presets and
their sources. Re-running with the same ``--workdir`` resumes from its checkpoint.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

import jax

from sopjax import config as config_lib
from sopjax import data as data_lib
from sopjax import noise, train

OVERRIDES = {  # flag -> (Config field, type)
    "dataset": str, "label_set": str, "noise_rate": float, "method": str, "sop_variant": str, "arch": str,
    "width": float, "epochs": int, "batch_size": int, "lr": float, "lr_u": float, "lr_v": float,
    "weight_decay": float, "schedule": str, "seed": int, "subset": int, "eval_subset": int,
}


def choose_preset(requested: str | None) -> tuple[str, str]:
    if requested:
        return requested, "requested with --preset"
    backend = jax.default_backend()
    if backend in ("gpu", "tpu", "cuda", "rocm"):
        return "paper-cifar10n", f"default on an accelerator (JAX backend: {backend})"
    return "quick", f"default without an accelerator (JAX backend: {backend})"


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=sorted(config_lib.PRESETS))
    for name, typ in OVERRIDES.items():
        ap.add_argument("--" + name.replace("_", "-"), type=typ, default=None)
    ap.add_argument("--milestones", type=lambda s: tuple(int(x) for x in s.split(",")), default=None,
                    help="comma-separated epochs for --schedule multistep")
    ap.add_argument("--workdir", default=None, help="run directory (default runs/<preset>-<method>-<labels>-s<seed>)")
    ap.add_argument("--data-dir", default=None, help=f"folder with CIFAR (else ${data_lib.ENV_VAR}, then ./data, ../shared/data …)")
    ap.add_argument("--no-download", action="store_true", help="fail instead of downloading a missing dataset")
    ap.add_argument("--no-progress", action="store_true")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    try:
        return run(parse(argv))
    except (ValueError, data_lib.DataError, train.TrainingDiverged) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def run(args) -> int:
    preset, why = choose_preset(args.preset)
    cfg = config_lib.PRESETS[preset]
    changes = {k: getattr(args, k) for k in OVERRIDES if getattr(args, k) is not None}
    if args.milestones is not None:
        changes["milestones"] = args.milestones
    cfg = dataclasses.replace(cfg, **changes).validate()
    print(f"preset {preset!r} ({why}); overrides: {changes or 'none'}")
    workdir = args.workdir or f"runs/{preset}-{cfg.method}-{cfg.label_set}-s{cfg.seed}" + (f"-n{cfg.subset}" if cfg.subset else "")

    ds = data_lib.load_cifar(cfg.dataset, args.data_dir, download_missing=not args.no_download)
    labels = noise.make_label_set(cfg.label_set, ds.y_train, ds.num_classes, cfg.noise_rate, cfg.seed, args.data_dir)
    x_train = ds.x_train
    if cfg.subset:
        x_train = x_train[: cfg.subset]
        labels = dataclasses.replace(labels, noisy=labels.noisy[: cfg.subset], clean=labels.clean[: cfg.subset])
    print(f"data: {ds.name} from {ds.source}; {len(x_train)} train / {len(ds.x_test)} test; label set "
          f"{labels.name!r}, realized noise rate {labels.realized_rate:.4f}; workdir {workdir}")
    arrays = train.Arrays(x_train, labels, ds.x_test, ds.y_test, ds.num_classes)
    s = train.fit(cfg, arrays, workdir, progress=not args.no_progress, log_epochs=True,
                  extra_config={"preset": preset, "preset_reason": why, "data_source": ds.source})
    det = s["detection"]
    rows = [("method", s["method"]), ("label set (realized noise)", f"{s['label_set']} ({s['realized_noise_rate']:.2%})"),
            ("epochs", s["epochs"]), ("test acc best (epoch)", f"{s['test_acc_best']:.4f} ({s['test_acc_best_epoch']})"),
            ("test acc last", f"{s['test_acc_last']:.4f}"), ("wrong labels memorized (last)", f"{s['memorized_wrong_last']:.4f}"),
            ("fit vs clean labels (last)", f"{s['fit_clean_acc_last']:.4f}")]
    for name, d in det.items():
        rows.append((f"detection {name}: AUROC / P / R @{d['threshold']}", f"{d['auroc']:.4f} / {d['precision']:.3f} / {d['recall']:.3f}"))
    rows += [("images/s (train)", f"{s['mean_images_per_s']:.0f}"), ("wall time (s)", f"{s['train_wall_s']:.0f}")]
    w = max(len(r[0]) for r in rows)
    print("\n" + "\n".join(f"{k.ljust(w)}  {v}" for k, v in rows))
    print(f"\nrun directory: {workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
