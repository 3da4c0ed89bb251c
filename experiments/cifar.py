"""Train SOP or cross-entropy on CIFAR with noisy labels.

    python -m experiments.cifar                              # CPU: CE vs SOP (`cpu-compare`); GPU/TPU: `paper-cifar10n`
    python -m experiments.cifar --preset quick --compare ce,sop   # both methods, one run directory
    python -m experiments.cifar --preset quick --method ce   # the CE baseline, same seed
    python -m experiments.cifar --preset paper-cifar10-sym --noise-rate 0.4
    python -m experiments.cifar --subset 512 --epochs 1      # a smoke run
    python -m experiments.cifar --method sop --coordinator-address host0:1234 --num-processes 2 --process-id 0
                                                             # one of several processes (README, "Scaling out")
    python -m experiments.cifar --method sop --image-root DIR --label-file DIR/train.txt --num-classes 14
                                                             # a folder of images and a '<path> <label>' list, streamed

A thin CLI over :mod:`sopjax.train`; see :mod:`sopjax.config` for the presets and
their sources. Re-running with the same ``--workdir`` resumes from its checkpoint.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys

import jax

from sopjax import compare, config as config_lib
from sopjax import data as data_lib
from sopjax import distributed, inputs, multirun, noise, parallel, rundir, stream_train, train

def _milestones(text: str) -> tuple:
    try:
        return tuple(int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated epochs such as 40,80, got {text!r}") from None


# Config field type (as written in the dataclass) -> argparse keyword arguments.
FLAG_KINDS = {"str": {"type": str}, "int": {"type": int}, "float": {"type": float},
              "tuple": {"type": _milestones}, "bool": {"action": argparse.BooleanOptionalAction}}


def add_config_flags(ap: argparse.ArgumentParser) -> None:
    """One flag per :class:`Config` field (``lr_u`` → ``--lr-u``), default None = the preset's value."""
    for f in dataclasses.fields(config_lib.Config):
        kind = FLAG_KINDS[f.type if isinstance(f.type, str) else f.type.__name__]
        ap.add_argument("--" + f.name.replace("_", "-"), dest=f.name, default=None,
                        help=f"{f.metadata.get('help', '')} (preset default if omitted)", **kind)


def choose_preset(requested: str | None) -> tuple[str, str]:
    if requested:
        return requested, "requested with --preset"
    backend = jax.default_backend()
    if backend in ("gpu", "tpu", "cuda", "rocm"):
        return "paper-cifar10n", f"default on an accelerator (JAX backend: {backend})"
    return "cpu-compare", f"default without an accelerator (JAX backend: {backend})"


class _Parser(argparse.ArgumentParser):
    """argparse whose error is one line (its usage of ~30 flags would bury the message)."""

    def error(self, message):
        print(f"error: {message} (see --help)", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=sorted(config_lib.PRESETS))
    add_config_flags(ap)
    ap.add_argument("--workdir", default=None, help="run directory (default runs/<preset>-<method>-<labels>-s<seed>)")
    ap.add_argument("--data-dir", default=None, help=f"folder with CIFAR (else ${data_lib.ENV_VAR}, then ./data, ../shared/data …)")
    ap.add_argument("--no-download", action="store_true", help="fail instead of downloading a missing dataset")
    ap.add_argument("--no-progress", action="store_true")
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
    add_folder_flags(ap)
    return ap


def add_folder_flags(ap: argparse.ArgumentParser) -> None:
    """The streamed folder dataset (:mod:`sopjax.stream_train`) instead of CIFAR."""
    g = ap.add_argument_group("a folder of images and a '<path> <label>' list (Clothing1M, WebVision), streamed")
    g.add_argument("--image-root", help="folder that the paths of --label-file are relative to")
    g.add_argument("--label-file", help="training list, one '<path> <label>' line per image; u, v follow its line order")
    g.add_argument("--test-label-file", help="clean evaluation list under --image-root (per-epoch test accuracy)")
    g.add_argument("--num-classes", type=int, help="number of classes of the lists' labels (Clothing1M 14, WebVision 50)")
    g.add_argument("--image-size", type=int, default=32, help="side in pixels that images are decoded and resized to")
    g.add_argument("--loader-workers", type=int, default=0,
                   help="host processes that decode and augment the images (0 = this process)")


def parse(argv=None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


# Errors of bad input or of the machine (disk, permissions): exit code 2 with one line.
EXPECTED_ERRORS = (ValueError, data_lib.DataError, train.TrainingDiverged, OSError)


def error_line(e: BaseException) -> str:
    """One line for ``e``: its message, or for an unexpected error where to get the traceback."""
    if isinstance(e, OSError) and e.strerror:
        where = f" ({e.filename})" if e.filename else ""
        msg = (f"{e.strerror}{where}; free disk space or fix permissions, then re-run the same command "
               "(it resumes from the last finished epoch)")
    elif isinstance(e, EXPECTED_ERRORS):
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "RESOURCE_EXHAUSTED" in msg or "No space left" in msg:  # orbax/TensorStore's disk-full error
            msg += "; free disk space, then re-run the same command (it resumes from the last finished epoch)"
    else:
        msg = f"internal error ({type(e).__name__}: {e}); re-run with --debug for the traceback and report it"
    return "error: " + " ".join(msg.split())[:1000]


@contextlib.contextmanager
def _quiet_background_errors(enabled: bool):
    """Orbax's writer threads log and print their own tracebacks when a save fails (~100
    lines for a full disk); the main thread reports the same error in one line. Restored after
    a success only: after an error those threads print while the process exits."""
    import logging
    import threading

    # TensorStore's C++ callbacks print "Event loop is closed" through sys.excepthook / unraisablehook.
    absl, hooks = logging.getLogger("absl"), (threading.excepthook, sys.excepthook, sys.unraisablehook)
    level = absl.level
    if enabled:
        absl.setLevel(logging.CRITICAL)
        threading.excepthook = sys.excepthook = sys.unraisablehook = lambda *a: None
    yield
    absl.setLevel(level)
    threading.excepthook, sys.excepthook, sys.unraisablehook = hooks


def main(argv=None) -> int:
    """The CLI: 0 on success, 2 with one line on bad input or a machine error, 1 on a bug
    (``--debug`` shows the traceback), 130 when interrupted."""
    try:
        args = parse(argv)
    except SystemExit as e:  # --help, or a bad flag (already reported in one line)
        return e.code if isinstance(e.code, int) else 2
    try:
        with _quiet_background_errors(not args.debug):
            return run(args)
    except KeyboardInterrupt:
        if args.debug:
            raise
        print("interrupted; re-run the same command to resume from the last finished epoch", file=sys.stderr)
        return 130
    except Exception as e:
        if args.debug:
            raise
        print(error_line(e), file=sys.stderr)
        return 2 if isinstance(e, EXPECTED_ERRORS) else 1


def build_config(args) -> tuple[config_lib.Config, str, str, dict]:
    """The preset (chosen or by backend) with the flags given applied; validated."""
    preset, why = choose_preset(args.preset)
    fields = [f.name for f in dataclasses.fields(config_lib.Config)]
    changes = {k: getattr(args, k) for k in fields if getattr(args, k) is not None}
    cfg = dataclasses.replace(config_lib.PRESETS[preset], **changes).validate()
    return cfg, preset, why, changes


def load_arrays(cfg: config_lib.Config, args) -> tuple[train.Arrays, str]:
    """The dataset and its label set, cut to ``cfg.subset``; returns (arrays, data source)."""
    ds = data_lib.load_cifar(cfg.dataset, args.data_dir, download_missing=not args.no_download)
    labels = noise.make_label_set(cfg.label_set, ds.y_train, ds.num_classes, cfg.noise_rate, cfg.seed, args.data_dir)
    x_train = ds.x_train
    inputs.check_subset(cfg.subset, len(x_train))
    if cfg.subset:
        x_train = x_train[: cfg.subset]
        labels = dataclasses.replace(labels, noisy=labels.noisy[: cfg.subset], clean=labels.clean[: cfg.subset])
    print(f"data: {ds.name} from {ds.source}; {len(x_train)} train / {len(ds.x_test)} test; label set "
          f"{labels.name!r}, realized noise rate {labels.realized_rate:.4f}")
    return train.Arrays(x_train, labels, ds.x_test, ds.y_test, ds.num_classes), ds.source


def _f(v, spec=".4f") -> str:
    return "n/a" if v is None else format(v, spec)


def summary_rows(s: dict) -> list[tuple[str, str]]:
    """The printed result table of one run, as (label, value) rows."""
    rows = [("method", s["method"]), ("label set (realized noise)", f"{s['label_set']} ({s['realized_noise_rate']:.2%})"),
            ("epochs", str(s["epochs"])),
            ("test acc best, selected on test (epoch)", f"{_f(s['test_acc_best'])} ({s['test_acc_best_epoch']})"),
            ("test acc at best noisy-val epoch (epoch)", f"{_f(s.get('test_acc_at_best_val'))} ({s.get('best_val_epoch')})"),
            ("test acc last", _f(s["test_acc_last"])), ("wrong labels memorized (last)", _f(s["memorized_wrong_last"])),
            ("fit vs clean labels (last)", _f(s["fit_clean_acc_last"]))]
    for name, d in s["detection"].items():
        rows.append((f"detection {name}: AUROC / P / R @{d['threshold']}",
                     f"{_f(d['auroc'])} / {_f(d['precision'], '.3f')} / {_f(d['recall'], '.3f')}"))
    return rows + [("images/s (train)", _f(s["mean_images_per_s"], ".0f")), ("wall time (s)", _f(s["train_wall_s"], ".0f"))]


def join_processes(args) -> None:
    """Join a multi-process job (:mod:`sopjax.distributed`) before any other JAX call."""
    distributed.initialize(distributed.settings(args), detect=args.distributed)
    if jax.process_count() > 1:
        print(f"process {jax.process_index()} of {jax.process_count()} ({jax.local_device_count()} of "
              f"{jax.device_count()} devices here); process 0 writes the run files")


def run(args) -> int:
    join_processes(args)
    cfg, preset, why, changes = build_config(args)
    print(f"preset {preset!r} ({why}); overrides: {changes or 'none'}")
    if args.label_file or args.image_root:
        return run_folder(args, cfg, preset, why, changes)
    workdir = args.workdir or f"runs/{preset}-{cfg.method}-{cfg.label_set}-s{cfg.seed}" + (f"-n{cfg.subset}" if cfg.subset else "")
    if args.compare and args.seeds:
        raise ValueError("--compare and --seeds cannot be combined; run each seed's comparison as its own command")
    # --seeds asks for single-method runs, so it overrides the cpu-compare preset's default comparison.
    default_compare = preset == "cpu-compare" and args.method is None and not args.seeds
    methods = args.compare or (compare.DEFAULT_METHODS if default_compare else None)
    if jax.process_count() > 1 and (methods or args.seeds):
        raise ValueError("--compare and --seeds (and the cpu-compare preset's default comparison) run in one process "
                         "only; pass --method sop (or ce, sop_plus) for a multi-process run")
    if methods:
        return run_compare(args, cfg, preset, why, methods)
    if args.seeds:
        return run_seeds(args, cfg, preset, why)
    rundir.check_writable(workdir)  # before the data are loaded: fail in seconds, not minutes
    arrays, source = load_arrays(cfg, args)
    print(f"workdir {workdir}")
    with layout(cfg, len(arrays.x_train)):
        s = train.fit(cfg, arrays, workdir, progress=not args.no_progress, log_epochs=True,
                      extra_config={"preset": preset, "preset_reason": why, "data_source": source},
                      allow_lr_change=args.allow_lr_change)
    rows = summary_rows(s)
    w = max(len(r[0]) for r in rows)
    print("\n" + "\n".join(f"{k.ljust(w)}  {v}" for k, v in rows))
    print(f"\nrun directory: {workdir}")
    return 0


def _seed_list(text: str) -> tuple:
    try:
        seeds = tuple(int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated seeds such as 0,1,2, got {text!r}") from None
    if len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"each seed once, got {text!r}")
    return seeds


@contextlib.contextmanager
def layout(cfg: config_lib.Config, num_train: int):
    """Data parallel over every device when there are several (:mod:`sopjax.parallel`); says which."""
    if jax.device_count() < 2:
        print(f"layout: {parallel.describe(None, cfg.batch_size, num_train)}")
        yield
        return
    with parallel.data_parallel() as mesh:
        print(f"layout: {parallel.describe(mesh, cfg.batch_size, num_train)}")
        yield


def run_seeds(args, cfg: config_lib.Config, preset: str, why: str) -> int:
    """``--seeds``: the runs side by side on one device (:mod:`sopjax.multirun`), one directory each."""
    cfgs = [dataclasses.replace(cfg, seed=s) for s in args.seeds]
    base = args.workdir or f"runs/{preset}-{cfg.method}-{cfg.label_set}" + (f"-n{cfg.subset}" if cfg.subset else "")
    workdirs = [f"{base}-s{s}" for s in args.seeds]
    loaded = [load_arrays(c, args) for c in cfgs]
    print(f"layout: {len(cfgs)} runs side by side (jax.vmap over the train step, one compile, one copy of the "
          f"images) on {jax.devices()[0].platform}; run directories {', '.join(workdirs)}")
    summaries = multirun.fit_many(cfgs, [a for a, _ in loaded], workdirs, extra_config={
        "preset": preset, "preset_reason": why, "data_source": loaded[0][1], "seeds_side_by_side": list(args.seeds)})
    for wd, s in zip(workdirs, summaries):
        print(f"{wd}: test acc last {_f(s['test_acc_last'])}, detection AUROC {_f(s['detection_auroc'])}")
    return 0


def _method_list(text: str) -> tuple:
    methods = tuple(m.strip() for m in text.split(","))
    if len(methods) < 2 or len(set(methods)) != len(methods) or not set(methods) <= {"ce", "sop", "sop_plus"}:
        raise argparse.ArgumentTypeError(f"expected two or more distinct methods among ce, sop, sop_plus, such as "
                                         f"ce,sop; got {text!r}")
    return methods


def run_compare(args, cfg: config_lib.Config, preset: str, why: str, methods: tuple) -> int:
    """``--compare``: each method with the same config, seed and data order (:mod:`sopjax.compare`)."""
    import time

    started = time.perf_counter()
    workdir = args.workdir or f"runs/{preset}-compare-{cfg.label_set}-s{cfg.seed}" + (f"-n{cfg.subset}" if cfg.subset else "")
    rundir.check_writable(workdir)  # before the data are loaded: fail in seconds, not minutes
    arrays, source = load_arrays(cfg, args)
    print(f"comparing {', '.join(methods)} in {workdir}")
    with layout(cfg, len(arrays.x_train)):
        rec = compare.run_comparison(cfg, arrays, workdir, methods, progress=not args.no_progress, started=started,
                                     extra_config={"preset": preset, "preset_reason": why, "data_source": source},
                                     allow_lr_change=args.allow_lr_change)
    print("\n" + rec["markdown"])
    print(f"run directory: {workdir} (comparison.md, comparison.json, fig1.png, neural_collapse.png; one folder per method)")
    return 0


def run_folder(args, cfg: config_lib.Config, preset: str, why: str, changes: dict) -> int:
    """``--image-root DIR --label-file FILE``: SOP on a streamed folder (:mod:`sopjax.stream_train`)."""
    if args.compare or args.seeds:
        raise ValueError("--compare and --seeds take CIFAR only; train a --label-file dataset one --method at a time")
    if args.loader_workers < 0:
        raise ValueError(f"--loader-workers must be 0 or more, got {args.loader_workers}")
    if changes.get("val_size"):
        raise ValueError("--val-size holds out CIFAR images; with --label-file pass an evaluation list as --test-label-file")
    # The preset's CIFAR subset and validation split do not apply to a folder; only an explicit --subset does.
    cfg = dataclasses.replace(cfg, subset=changes.get("subset", 0), val_size=0)
    workdir = args.workdir or f"runs/{preset}-{cfg.method}-folder-s{cfg.seed}" + (f"-n{cfg.subset}" if cfg.subset else "")
    rundir.check_writable(workdir)  # before the lists are read: fail in seconds
    data = stream_train.load_folder(args.image_root, args.label_file, args.num_classes, args.image_size,
                                    args.test_label_file, cfg.subset)
    n = len(data.train.paths)
    print(f"data: {n} images listed in {args.label_file} under {args.image_root}, {data.num_classes} classes, "
          f"decoded at {data.image_size}x{data.image_size} by {args.loader_workers} worker process(es); labels as given "
          f"(--label-set, --noise-rate unused); inputs normalized with the {cfg.dataset} constants; test list: "
          f"{len(data.test.paths) if data.test else 'none'}")
    print(f"workdir {workdir}")
    with layout(cfg, n):
        s = stream_train.fit_stream(cfg, data, workdir, workers=args.loader_workers, progress=not args.no_progress,
                                    log_epochs=True, allow_lr_change=args.allow_lr_change,
                                    extra_config={"preset": preset, "preset_reason": why})
    print(f"\ntest acc last {_f(s['test_acc_last'])}, train loss last {_f(s['train_loss_last'])}, "
          f"{_f(s['mean_images_per_s'], '.0f')} images/s\nrun directory: {workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
