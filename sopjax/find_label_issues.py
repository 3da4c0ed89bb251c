"""Find the wrong labels of a folder of images: train SOP on it and write a label-issue report.

    python -m sopjax.find_label_issues --image-root DIR --label-file DIR/labels.txt
    python -m sopjax.find_label_issues --image-root DIR --label-file FILE --num-classes 14 --workdir runs/mine

The label file holds one '<path> <label>' line per image (paths relative to --image-root,
labels 0 … K−1; JPEG, PNG or anything Pillow reads). Class names come from a classes.txt
(one name per line, the first for class 0) next to the label file or in --image-root.
The run directory receives label_issues.csv (one row per image, most suspect first, with
its path, given and suggested label, label_score and is_label_issue), label_issues.json,
label_issues.png and label_issues.html (the most and the least suspect images), and the
usual run files (docs/label_issues.md). Re-running the same command resumes.

Defaults for a CPU (N images; docs/label_issues.md says why): a PreActResNet18 at 1/8 width
on 32×32 inputs without augmentation (--augment adds crop and flip); batch B = 128 when
N ≥ 2,048, else the power of two at or below N/16 (at least 16); epochs = 60,000 / N
rounded, clipped to [8, 60]; SGD lr 0.1·B/128, momentum 0.9, weight decay 5e-4, cosine;
u, v from N(0, 1e-3²) at lr_u = lr_v = 300·B/128 after a warm-up of 1/6 of the epochs.

In Python, ``sopjax.find_label_issues(run_dir)`` returns the flagged indices, most suspect first.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys
import types

import jax.numpy as jnp
import numpy as np

from sopjax.configs import Config
from sopjax.data import folder
from sopjax.evaluators import label_issues, predict
from sopjax.infra import cli, parallel
from sopjax.infra.errors import warn
from sopjax.infra.preflight import check_writable

PROG = "python -m sopjax.find_label_issues"


def find_label_issues(run, labels=None, images=None, return_report: bool = False):
    """The indices of the training samples whose given label looks wrong, most suspect first
    (as ``cleanlab.filter.find_label_issues(..., return_indices_ranked_by=...)`` returns them).

    Args:
      run: a finished SOP run directory (str or path; one holding ``label_issues.json``, or
        a comparison directory with a ``sop/`` run), or a trained :class:`~sopjax.core.state.TrainState`.
      labels: (N,) int given labels the state was trained on (with a state only).
      images: (N, H, W, C) uint8 images (or (N, …) float features) in the same order (with a state only).
      return_report: also return the whole report: {"summary": …, "rows": one dict per sample,
        most suspect first} (:func:`sopjax.evaluators.label_issues.report`).

    Returns:
      (n,) int64 dataset indices of the flagged samples, or (indices, report).

    Raises:
      ValueError: a directory without a report, or a state without ``labels`` and ``images``.
    """
    if isinstance(run, (str, pathlib.Path)):
        rep = read_report(run)
    else:
        rep = state_report(run, labels, images)
    idx = label_issues.flagged_indices(rep["rows"])
    return (idx, rep) if return_report else idx


def read_report(run_dir) -> dict:
    """The report ({"summary", "rows"}) of ``run_dir``'s ``label_issues.json`` (or of its ``sop/`` run)."""
    d = pathlib.Path(run_dir)
    f = next((p for p in (d / "label_issues.json", d / "sop" / "label_issues.json") if p.is_file()), None)
    if f is None:
        raise ValueError(f"{d} holds no label_issues.json; pass a finished SOP run directory")
    rec = json.loads(f.read_text())
    return {"summary": {k: v for k, v in rec.items() if k != "rows"}, "rows": rec["rows"]}


def state_report(state, labels, images) -> dict:
    """The report of a trained state on the ``images`` and given ``labels`` it was trained on."""
    if labels is None or images is None:
        raise ValueError("with a TrainState pass labels= and images=, the data it was trained on")
    labels = np.asarray(labels)
    probs = predict.evaluate(state, jnp.asarray(images), np.arange(len(labels)))
    stats = parallel.to_host(state.sample_stats)
    u = parallel.to_host(state.params["u"]) if "u" in state.params else None
    score = label_issues.issue_score(stats, u, probs, labels)
    return label_issues.report(score, probs, labels, label_issues.tables_trained(stats))


def folder_config(num_images: int, epochs: int | None = None, batch_size: int | None = None, seed: int = 0,
                  uv_warmup_epochs: float | None = None, augment: bool = False) -> Config:
    """The command's defaults for ``num_images`` images (module docstring); None = the default."""
    if batch_size is None:
        batch_size = 128 if num_images >= 2048 else max(16, 2 ** int(math.log2(max(num_images / 16, 1))))
        batch_size = min(batch_size, num_images)
    if epochs is None:
        epochs = int(np.clip(round(60_000 / num_images), 8, 60))
    scale = batch_size / 128  # the per-sample step of a batch-mean loss shrinks as 1/B
    return Config(method="sop", label_set="clean", arch="preact_resnet18", width=0.125, epochs=epochs,
                  batch_size=batch_size, lr=0.1 * scale, weight_decay=5e-4, schedule="cosine", augment=augment,
                  lr_u=300.0 * scale, lr_v=300.0 * scale, init_std=1e-3, seed=seed, eval_subset=0,
                  uv_warmup_epochs=epochs / 6 if uv_warmup_epochs is None else uv_warmup_epochs).validate()


def build_parser() -> argparse.ArgumentParser:
    ap = cli.OneLineParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image-root", required=True, help="folder that the paths of --label-file are relative to")
    ap.add_argument("--label-file", required=True, help="one '<path> <label>' line per image")
    ap.add_argument("--num-classes", type=int, default=None,
                    help="K (default: the names in classes.txt, else 1 + the largest label)")
    ap.add_argument("--workdir", default=None, help="run directory (default runs/label-issues-<label file>-s<seed>)")
    ap.add_argument("--epochs", type=int, default=None, help="passes over the images (default 60,000 / N in [8, 60])")
    ap.add_argument("--batch-size", type=int, default=None, help="images per step (default 128, fewer below 2,048)")
    ap.add_argument("--uv-warmup-epochs", type=float, default=None,
                    help="epochs before u, v train (default 1/6 of --epochs)")
    ap.add_argument("--image-size", type=int, default=32, help="side in pixels images are resized to (default 32)")
    ap.add_argument("--augment", action="store_true",
                    help="random crop and flip while training (default off: the short CPU schedule fits more clean "
                         "patterns without; docs/label_issues.md)")
    ap.add_argument("--seed", type=int, default=0, help="fixes the init, the data order and the augmentation")
    ap.add_argument("--loader-workers", type=int, default=0, help="host processes decoding the images (0 = this one)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bars (one line per epoch)")
    ap.add_argument("--debug", action="store_true", help="show the Python traceback of an error")
    return ap


def num_classes(args) -> int:
    """--num-classes, else the number of names in classes.txt, else 1 + the largest label of
    the file's well-formed lines (at least 2; :func:`sopjax.data.folder.read_list` reports the rest)."""
    if args.num_classes is not None:
        return args.num_classes
    names = folder.read_class_names(args.label_file, args.image_root)
    if names is not None:
        return len(names)
    labels = [int(w[-1]) for w in (line.rsplit(None, 1) for line in _lines(args.label_file))
              if len(w) == 2 and w[1].lstrip("-").isdigit()]
    return max(2, max(labels, default=0) + 1)


def _lines(path) -> list[str]:
    p = pathlib.Path(path)
    return p.read_text().splitlines() if p.is_file() else []


def run(args) -> int:
    from sopjax.trainers import stream  # the training stack, after the flags are checked

    seed, stem = args.seed, pathlib.Path(args.label_file).stem
    workdir = args.workdir or f"runs/label-issues-{stem}-s{seed}"
    check_writable(workdir)
    if args.loader_workers < 0:
        raise ValueError(f"--loader-workers must be 0 or more, got {args.loader_workers}")
    data = folder.load_folder(args.image_root, args.label_file, num_classes(args), args.image_size)
    n = len(data.train.paths)
    cfg = folder_config(n, args.epochs, args.batch_size, seed, args.uv_warmup_epochs, args.augment)
    print(f"data: {n} images listed in {args.label_file}, {data.num_classes} classes, resized to "
          f"{args.image_size}x{args.image_size}\nSOP: {cfg.epochs} epochs of {n // cfg.batch_size} steps (batch "
          f"{cfg.batch_size}), u, v train after {cfg.uv_warmup_epochs:g} epochs; workdir {workdir}", flush=True)
    if cfg.uv_warmup_epochs >= cfg.epochs:
        warn(label_issues.NEVER_TRAINED.format(warmup=f"{cfg.uv_warmup_epochs:g}"))
    s = stream.fit_stream(cfg, data, workdir, workers=args.loader_workers, progress=not args.no_progress,
                          log_epochs=True, extra_config={"command": PROG})
    print_report(s["label_issues"], pathlib.Path(workdir))
    return 0


def print_report(summary: dict, workdir: pathlib.Path, top: int = 10) -> None:
    """The count, the first ``top`` rows and where the files are."""
    rows = read_report(workdir)["rows"]
    print(f"\n{summary['num_label_issues']} of {summary['num_samples']} labels flagged as likely wrong "
          f"(confident-joint count); most suspect first:")
    for r in rows[:top]:
        given, pred = r.get("given_class") or r["given_label"], r.get("predicted_class") or r["predicted_label"]
        print(f"  {r['rank']:>4}  {r.get('path', r['index'])}  given {given} -> suggested {pred}  "
              f"label_score {r['label_score']:.3f}")
    if summary.get("warning"):
        print(f"warning: {summary['warning']}")
    print(f"report: {workdir / 'label_issues.csv'} (also .json, .png, .html)\nrun directory: {workdir}")


def main(argv=None) -> int:
    """The CLI: 0 on success, 2 with one line on bad input, 1 on a bug, 130 on Ctrl-C, 143 on
    SIGTERM (each one line saying that re-running the same command resumes)."""
    return cli.main(build_parser(), run, argv)


class _CallableModule(types.ModuleType):
    """``sopjax.find_label_issues`` is this module once imported (Python binds a submodule to
    its package's attribute); calling it calls :func:`find_label_issues`."""

    def __call__(self, *args, **kwargs):
        return find_label_issues(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

if __name__ == "__main__":
    cli.exit(main())
