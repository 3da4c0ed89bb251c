"""Train SOP or cross-entropy on CIFAR (or a folder of images) with noisy labels.

    python -m experiments.cifar                              # CPU: CE vs SOP (`cpu-compare`); GPU/TPU: `paper-cifar10n`
    python -m experiments.cifar --preset quick --compare ce,sop   # both methods, one run directory
    python -m experiments.cifar --preset quick --method ce   # the CE baseline, same seed
    python -m experiments.cifar --preset paper-cifar10-sym --noise-rate 0.4
    python -m experiments.cifar --subset 512 --epochs 1      # a smoke run
    python -m experiments.cifar --show-preset cpu-compare    # a preset's values
    python -m experiments.cifar --config runs/X/config.json --workdir runs/X2   # re-run run X
    python -m experiments.cifar --method sop --coordinator-address host0:1234 --num-processes 2 --process-id 0
                                                             # one of several processes (docs/scaling.md)
    python -m experiments.cifar --method sop --image-root DIR --label-file DIR/train.txt --num-classes 14
                                                             # a folder of images and a '<path> <label>' list, streamed
    python -m experiments.cifar --method sop --image-root DIR/train --test-folder DIR/test
                                                             # class subfolders (torchvision's ImageFolder), streamed

A thin CLI over :mod:`sopjax.trainers`; :mod:`sopjax.configs.presets` holds the presets and
their sources. Re-running with the same ``--workdir`` resumes from its checkpoint.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import jax

from experiments import folder_cli
from sopjax.configs import PRESETS, Config, flags
from sopjax.configs import files as config_files
from sopjax.core import methods as registry
from sopjax.data import arrays as arrays_lib
from sopjax.data import cifar, noise
from sopjax.evaluators import comparison
from sopjax.infra import cli, distributed
from sopjax.infra.preflight import check_writable
from sopjax.trainers import compare, multirun
from sopjax.trainers.fit import fit
from sopjax.trainers.state import check_installed

PROG = "python -m experiments.cifar"


def _preset_help() -> str:
    return "; ".join(f"{name}: {PRESETS[name].method}, {PRESETS[name].label_set}, {PRESETS[name].epochs} epochs"
                     for name in PRESETS)


def build_parser() -> argparse.ArgumentParser:
    ap = cli.OneLineParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=list(PRESETS), help=f"named settings ({_preset_help()})")
    ap.add_argument("--show-preset", choices=list(PRESETS), help="print a preset's values as JSON and exit")
    ap.add_argument("--config", metavar="FILE",
                    help="start from this config instead of a preset: a run's config.json (re-runs that run), a "
                         "JSON object of config fields, or a Python file whose get_config() returns a Config; "
                         "flags still override it")
    flags.add_config_flags(ap)
    ap.add_argument("--workdir", default=None, help="run directory (default runs/<preset>-<method>-<labels>-s<seed>)")
    ap.add_argument("--data-dir", default=None, help=f"folder with CIFAR (else ${cifar.ENV_VAR}, then ./data, "
                                                     "../shared/data …)")
    ap.add_argument("--no-download", action="store_true", help="fail instead of downloading a missing dataset")
    ap.add_argument("--no-progress", action="store_true", help="no progress bars (one line per epoch)")
    ap.add_argument("--compare", type=_method_list, default=None,
                    help="train these methods on the same labels, seed and data order into one run directory "
                         "with a side-by-side Fig. 1 and a comparison table, e.g. ce,sop (the default of the "
                         "cpu-compare preset, which is the default on a CPU; --method picks one instead)")
    ap.add_argument("--seeds", type=_seed_list, default=None,
                    help="run these seeds side by side in one vmapped program, e.g. 0,1,2 (one run directory each)")
    ap.add_argument("--allow-lr-change", action="store_true",
                    help="resume a run in --workdir with new --lr/--lr-u/--lr-v (recorded in config.json)")
    ap.add_argument("--debug", action="store_true", help="show the Python traceback of an error")
    distributed.add_flags(ap)
    folder_cli.add_folder_flags(ap)
    return ap


def _seed_list(text: str) -> tuple:
    try:
        seeds = tuple(int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated seeds such as 0,1,2, got {text!r}") from None
    if len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"each seed once, got {text!r}")
    return seeds


def _method_list(text: str) -> tuple:
    methods = tuple(m.strip() for m in text.split(","))
    known = registry.names()
    if len(methods) < 2 or len(set(methods)) != len(methods) or not set(methods) <= set(known):
        raise argparse.ArgumentTypeError(f"expected two or more distinct methods among {', '.join(known)}, such as "
                                         f"ce,sop; got {text!r}")
    return methods


def main(argv=None) -> int:
    """The CLI: 0 on success, 2 with one line on bad input or a machine error, 1 on a bug
    (``--debug`` shows the traceback), 130 on Ctrl-C, 143 on SIGTERM."""
    return cli.main(build_parser(), run, argv)


def choose_preset(requested: str | None) -> tuple[str, str]:
    """The preset's name and why it was chosen: the one requested, or one by JAX's backend."""
    if requested:
        return requested, "requested with --preset"
    backend = jax.default_backend()
    if backend in ("gpu", "tpu", "cuda", "rocm"):
        return "paper-cifar10n", f"default on an accelerator (JAX backend: {backend})"
    return "cpu-compare", f"default without an accelerator (JAX backend: {backend})"


def build_config(args) -> tuple[Config, str, str, dict]:
    """The preset (chosen or by backend), or the ``--config`` file, with the flags given applied;
    validated, and its optional packages installed (:func:`sopjax.trainers.state.check_installed`)."""
    changes = flags.overrides(args)
    if args.config:
        if args.preset:
            raise ValueError("--config and --preset both name a starting config; pass one of them")
        base, preset, why = config_files.load(args.config), "config", f"from --config {args.config}"
    else:
        preset, why = choose_preset(args.preset)
        base = PRESETS[preset]
    cfg = dataclasses.replace(base, **changes).validate()
    check_installed(cfg)
    return cfg, preset, why, changes


def load_arrays(cfg: Config, args, split: bool = True) -> tuple[arrays_lib.Arrays, str]:
    """The dataset and its label set, cut to ``cfg.subset``, with its validation split unless
    ``split`` is False; prints what trains and validates. Returns (arrays, data source)."""
    ds = cifar.load_cifar(cfg.dataset, args.data_dir, download_missing=not args.no_download)
    labels = noise.make_label_set(cfg.label_set, ds.y_train, ds.num_classes, cfg.noise_rate, cfg.seed, args.data_dir)
    x_train = ds.x_train
    arrays_lib.check_subset(cfg.subset, len(x_train))
    if cfg.subset:
        x_train = x_train[: cfg.subset]
        labels = dataclasses.replace(labels, noisy=labels.noisy[: cfg.subset], clean=labels.clean[: cfg.subset])
    print(f"data: {ds.name} from {ds.source}; {len(x_train)} train / {len(ds.x_test)} test; label set "
          f"{labels.name!r}, realized noise rate {labels.realized_rate:.4f}")
    if labels.name in ("asym", "asymclean") and ds.num_classes == 10:
        rates = noise.flip_rates(labels, noise.CIFAR10_ASYM)
        names = noise.CIFAR10_CLASSES
        print("realized flips: " + ", ".join(f"{names[s]}→{names[d]} {r:.3f}" for (s, d), r in rates.items()))
    arrays = arrays_lib.Arrays(x_train, labels, ds.x_test, ds.y_test, ds.num_classes)
    if split:
        arrays = arrays_lib.split_validation(arrays, cfg.val_size, cfg.seed, cfg.val_holdout)
    print(arrays_lib.describe_split(arrays, len(ds.x_train), cfg.batch_size, cfg.val_size, cfg.val_holdout))
    return arrays, ds.source


def _f(v, spec=".4f") -> str:
    return "n/a" if v is None else format(v, spec)


def summary_rows(s: dict) -> list[tuple[str, str]]:
    """The printed result table of one run, as (label, value) rows."""
    rows = [("method", s["method"]),
            ("label set (realized noise)", f"{s['label_set']} ({s['realized_noise_rate']:.2%})"),
            ("epochs", str(s["epochs"])),
            ("test acc best, selected on test (epoch)", f"{_f(s['test_acc_best'])} ({s['test_acc_best_epoch']})"),
            ("test acc at best val epoch (epoch)",
             f"{_f(s.get('test_acc_at_best_val'))} ({s.get('best_val_epoch')})"),
            ("test acc last", _f(s["test_acc_last"])), ("wrong labels memorized (last)", _f(s["memorized_wrong_last"])),
            ("fit vs clean labels (last)", _f(s["fit_clean_acc_last"]))]
    for name, d in s["detection"].items():
        rows.append((f"detection {name}: AUROC / P / R @{d['threshold']}",
                     f"{_f(d['auroc'])} / {_f(d['precision'], '.3f')} / {_f(d['recall'], '.3f')}"))
    return rows + [("images/s (train)", _f(s["mean_images_per_s"], ".0f")),
                   ("wall time (s)", _f(s["train_wall_s"], ".0f"))]


def join_processes(args) -> None:
    """Join a multi-process job (:mod:`sopjax.infra.distributed`) before any other JAX call."""
    distributed.initialize(distributed.settings(args), detect=args.distributed, timeout=args.coordinator_timeout)
    if jax.process_count() > 1:
        print(f"process {jax.process_index()} of {jax.process_count()} ({jax.local_device_count()} of "
              f"{jax.device_count()} devices here); process 0 writes the run files")


def _suffix(cfg: Config) -> str:
    return f"-n{cfg.subset}" if cfg.subset else ""


def run(args) -> int:
    if args.show_preset:
        print(json.dumps(dataclasses.asdict(PRESETS[args.show_preset]), indent=1))
        return 0
    join_processes(args)
    cfg, preset, why, changes = build_config(args)
    print(f"preset {preset!r} ({why}); overrides: {changes or 'none'}")
    if args.label_file or args.image_root:
        return folder_cli.run_folder(args, cfg, preset, why, changes)
    if args.compare and args.seeds:
        raise ValueError("--compare and --seeds cannot be combined; run each seed's comparison as its own command")
    # --seeds asks for single-method runs, so it overrides the cpu-compare preset's default comparison.
    default_compare = preset == "cpu-compare" and args.method is None and not args.seeds
    methods = args.compare or (comparison.DEFAULT_METHODS if default_compare else None)
    if jax.process_count() > 1 and (methods or args.seeds):
        raise ValueError("--compare and --seeds (and the cpu-compare preset's default comparison) run in one process "
                         "only; pass --method sop (or ce, sop_plus) for a multi-process run")
    if methods:
        return run_compare(args, cfg, preset, why, methods)
    if args.seeds:
        return run_seeds(args, cfg, preset, why)
    return run_one(args, cfg, preset, why)


def run_one(args, cfg: Config, preset: str, why: str) -> int:
    """One method on CIFAR (:func:`sopjax.trainers.fit.fit`)."""
    workdir = args.workdir or f"runs/{preset}-{cfg.method}-{cfg.label_set}-s{cfg.seed}{_suffix(cfg)}"
    check_writable(workdir)  # before the data are loaded: fail in seconds, not minutes
    arrays, source = load_arrays(cfg, args)
    print(f"workdir {workdir}")
    with folder_cli.layout(cfg, len(arrays.x_train)):
        s = fit(cfg, arrays, workdir, progress=not args.no_progress, log_epochs=True,
                extra_config={"preset": preset, "preset_reason": why, "data_source": source},
                allow_lr_change=args.allow_lr_change)
    rows = summary_rows(s)
    w = max(len(r[0]) for r in rows)
    print("\n" + "\n".join(f"{k.ljust(w)}  {v}" for k, v in rows))
    print(f"\nrun directory: {workdir}")
    return 0


def run_seeds(args, cfg: Config, preset: str, why: str) -> int:
    """``--seeds``: the runs side by side on one device (:mod:`sopjax.trainers.multirun`), one directory each."""
    cfgs = [flags.with_seed(cfg, s) for s in args.seeds]  # checked as --seed is (2**32 would wrap to 0)
    base = args.workdir or f"runs/{preset}-{cfg.method}-{cfg.label_set}{_suffix(cfg)}"
    workdirs = [str(check_writable(f"{base}-s{s}")) for s in args.seeds]  # before the data are loaded
    loaded = [load_arrays(c, args, split=False) for c in cfgs]  # runs side by side have no validation split
    print(f"layout: {len(cfgs)} runs side by side (jax.vmap over the train step, one compile, one copy of the "
          f"images) on {jax.devices()[0].platform}; run directories {', '.join(workdirs)}")
    summaries = multirun.fit_many(cfgs, [a for a, _ in loaded], workdirs, extra_config={
        "preset": preset, "preset_reason": why, "data_source": loaded[0][1], "seeds_side_by_side": list(args.seeds)})
    for wd, s in zip(workdirs, summaries):
        print(f"{wd}: test acc last {_f(s['test_acc_last'])}, detection AUROC {_f(s['detection_auroc'])}")
    return 0


def run_compare(args, cfg: Config, preset: str, why: str, methods: tuple) -> int:
    """``--compare``: each method with the same config, seed and data order (:mod:`sopjax.trainers.compare`)."""
    started = time.perf_counter()
    workdir = args.workdir or f"runs/{preset}-compare-{cfg.label_set}-s{cfg.seed}{_suffix(cfg)}"
    check_writable(workdir)  # before the data are loaded: fail in seconds, not minutes
    arrays, source = load_arrays(cfg, args)
    print(f"comparing {', '.join(methods)} in {workdir}")
    with folder_cli.layout(cfg, len(arrays.x_train)):
        rec = compare.run_comparison(cfg, arrays, workdir, methods, progress=not args.no_progress, started=started,
                                     extra_config={"preset": preset, "preset_reason": why, "data_source": source},
                                     allow_lr_change=args.allow_lr_change)
    print("\n" + rec["markdown"])
    print(f"run directory: {workdir} (comparison.md, comparison.json, fig1.png, neural_collapse.png; "
          "one folder per method)")
    return 0


if __name__ == "__main__":
    cli.exit(main())
