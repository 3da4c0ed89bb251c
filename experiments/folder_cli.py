"""The folder-dataset side of ``python -m experiments.cifar``: its flags, the data-parallel
layout line, and the streamed run (:mod:`sopjax.trainers.stream`)."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses

import jax

from sopjax.configs import Config
from sopjax.infra import extras, parallel
from sopjax.infra.preflight import check_writable


def fmt(v, spec=".4f") -> str:
    """``v`` formatted, or "n/a" for None."""
    return "n/a" if v is None else format(v, spec)


@contextlib.contextmanager
def layout(cfg: Config, num_train: int):
    """Data parallel over every device when there are several (:mod:`sopjax.infra.parallel`); says which."""
    if jax.device_count() < 2:
        print(f"layout: {parallel.describe(None, cfg.batch_size, num_train)}")
        yield
        return
    with parallel.data_parallel() as mesh:
        print(f"layout: {parallel.describe(mesh, cfg.batch_size, num_train)}")
        yield


def add_folder_flags(ap: argparse.ArgumentParser) -> None:
    """The streamed folder dataset (:mod:`sopjax.trainers.stream`) instead of CIFAR."""
    g = ap.add_argument_group("a folder of images, streamed: class subfolders (torchvision's ImageFolder), or a "
                              "'<path> <label>' list (Clothing1M, WebVision)")
    g.add_argument("--image-root", help="folder with one subfolder of images per class (u, v follow the sorted "
                                        "paths), or the folder that the paths of --label-file are relative to")
    g.add_argument(
        "--label-file", help="training list, one '<path> <label>' line per image; u, v follow its line order"
    )
    g.add_argument("--test-label-file", help="clean evaluation list under --image-root (per-epoch test accuracy)")
    g.add_argument("--test-folder", help="clean evaluation images in class subfolders named as --image-root's")
    g.add_argument(
        "--num-classes", type=int, help="number of classes of the lists' labels (Clothing1M 14, WebVision 50); "
                                        "read from the class subfolders without --label-file"
    )
    g.add_argument("--image-size", type=int, default=32, help="side in pixels that images are decoded and resized to")
    g.add_argument("--loader-workers", type=int, default=0,
                   help="host processes that decode and augment the images (0 = this process)")


def run_folder(args, cfg: Config, preset: str, why: str, changes: dict) -> int:
    """``--image-root DIR --label-file FILE``: SOP on a streamed folder (:mod:`sopjax.trainers.stream`)."""
    extras.require("grain", "a folder dataset (--image-root)")
    from sopjax.data import folder  # grain: streaming input only (the stream extra)
    from sopjax.trainers import stream

    if args.compare or args.seeds:
        raise ValueError("--compare and --seeds take CIFAR only; train a --label-file dataset one --method at a time")
    if args.loader_workers < 0:
        raise ValueError(f"--loader-workers must be 0 or more, got {args.loader_workers}")
    if changes.get("val_size") or changes.get("val_holdout"):
        raise ValueError("--val-size and --val-holdout split CIFAR's training images; with a folder pass an "
                         "evaluation list as --test-label-file (or --test-folder)")
    # The preset's CIFAR subset and validation split do not apply to a folder; only an explicit --subset does.
    cfg = dataclasses.replace(cfg, subset=changes.get("subset", 0), val_size=0)
    suffix = f"-n{cfg.subset}" if cfg.subset else ""
    workdir = args.workdir or f"runs/{preset}-{cfg.method}-folder-s{cfg.seed}{suffix}"
    check_writable(workdir)  # before the lists are read: fail in seconds
    data = folder.load_folder(args.image_root, args.label_file, args.num_classes, args.image_size,
                              args.test_label_file, cfg.subset, args.test_folder)
    n = len(data.train.paths)
    where = f"listed in {args.label_file} under" if args.label_file else "in the class subfolders of"
    print(f"data: {n} images {where} {args.image_root}, {data.num_classes} classes, "
          f"decoded at {data.image_size}x{data.image_size} by {args.loader_workers} worker process(es); labels as "
          f"given (--label-set, --noise-rate unused); inputs normalized with the {cfg.dataset} constants; test list: "
          f"{len(data.test.paths) if data.test else 'none'}"
          + (f"; classes {', '.join(data.sources['class_names'])}" if "class_names" in data.sources else ""))
    print(f"workdir {workdir}")
    with layout(cfg, n):
        s = stream.fit_stream(cfg, data, workdir, workers=args.loader_workers, progress=not args.no_progress,
                              log_epochs=True, allow_lr_change=args.allow_lr_change,
                              extra_config={"preset": preset, "preset_reason": why})
    print(f"\ntest acc last {fmt(s['test_acc_last'])}, train loss last {fmt(s['train_loss_last'])}, "
          f"{fmt(s['mean_images_per_s'], '.0f')} images/s\nrun directory: {workdir}")
    return 0
