"""A run's label-issue report: per training sample, how likely its given label is wrong, the
samples to re-check first, and the label the network suggests instead (docs/label_issues.md).

Score (higher = more suspect), for sample i with given label y_i:

    S_i = ( Σ_t a_i(t) + a_i(final) ) / ( n_i + 1 ) ∈ [0, 1],   a = ½·[U²_i + 1 − p_i(y_i)]

the mean, over the n_i training steps that saw sample i while u trained (after the warm-up)
and the final model, of the share of the given label that SOP attributes to noise: half from
the table (U² = clip(u², 0, 1) at the given label, paper eq. 5) and half from the network
(1 − p_y; in training mode at each step, in eval mode at the end). The network half makes the
score continuous, so it has no mass ties even where U² saturates at 1. Without tables (CE) or
before they train (every n_i = 0) the score is the final network's 1 − p_y.

Flag rule: the ``n`` highest scores are flagged, n = the confident-joint count of the run's
final eval-mode probabilities (Northcutt et al. 2021, "Confident Learning", §3.1; cleanlab's
``num_label_issues`` with ``estimation_method="off_diagonal"``), an estimate of how many
given labels are wrong that does not depend on a threshold or on the run's length.

Files (:func:`write`): ``label_issues.csv`` (one row per sample, most suspect first; column
names as cleanlab's ``Datalab.get_issues("label")`` where one exists) and
``label_issues.json`` (the same rows with the rule, the count and any warning).
"""

from __future__ import annotations

import csv
import io
import pathlib

import numpy as np

from sopjax.evaluators import detection, gallery
from sopjax.infra.errors import warn
from sopjax.infra.jsonio import atomic_write, dumps

SCORE_DOC = ("label_score = 1 - S, S = mean over the training steps after the table warm-up (and the final model) "
             "of 0.5*[U^2 + 1 - p(given label)]; lower = more likely a wrong label")
RULE_DOC = ("is_label_issue: the n lowest label_score, n = confident-joint count of the final network's "
            "probabilities (cleanlab num_label_issues, off_diagonal)")
NEVER_TRAINED = ("SOP's tables never trained in this run (it ended within the {warmup} warm-up epochs of u, v, or "
                 "lr_u is 0): the label-issue score is the final network's 1 - p alone; train longer than "
                 "--uv-warmup-epochs")


def issue_score(sample_stats: dict | None, u, probs: np.ndarray, given: np.ndarray) -> np.ndarray:
    """The score S (N,) float64 in [0, 1] (module docstring; higher = more suspect).

    sample_stats: the run's {"issue_sum", "issue_count"} (N,) (None or {} without tables);
    u: the final table (N, 1) (None without tables); probs: the final eval-mode
    probabilities (N, K); given: (N,) int labels.
    """
    given = np.asarray(given)
    p_y = np.asarray(probs, np.float64)[np.arange(len(given)), given]
    if not sample_stats or u is None:
        return 1.0 - p_y
    U2 = np.clip(np.square(np.asarray(u, np.float64).reshape(-1)), 0.0, 1.0)
    total = np.asarray(sample_stats["issue_sum"], np.float64) + 0.5 * (U2 + 1.0 - p_y)
    return total / (np.asarray(sample_stats["issue_count"], np.float64) + 1.0)


def tables_trained(sample_stats: dict | None) -> bool | None:
    """Whether any step ran with u training (None for a run without tables)."""
    if not sample_stats:
        return None
    return bool(np.asarray(sample_stats["issue_count"]).sum() > 0)


def confident_joint_count(given, probs) -> int:
    """How many given labels look wrong to the model (Confident Learning's off-diagonal count).

    Per class k, the threshold t_k is the mean of p_k over the samples labelled k (a class
    nobody carries gets 2, out of reach; t_k ≥ 2e-6). A sample's confident classes are the k
    with p_k ≥ t_k − 1e-6; its guessed class is that class when there is one, the argmax of p
    when there are several. It counts when it has a confident class, the guess differs from
    its given label, and the model's argmax differs too (cleanlab 2.x ``num_label_issues``,
    ``estimation_method="off_diagonal"``, which tests/evaluators/test_label_issues.py checks).

    given (N,) int, probs (N, K) float, rows summing to 1. Returns an int in [0, N].
    """
    given, probs = np.asarray(given), np.asarray(probs, np.float64)
    N, K = probs.shape
    carried = np.bincount(given, minlength=K) > 0
    sums = np.bincount(given, weights=probs[np.arange(N), given], minlength=K)
    t = np.where(carried, sums / np.maximum(np.bincount(given, minlength=K), 1), 2.0)
    confident = probs >= np.maximum(t, 2e-6) - 1e-6
    several = confident.sum(1) > 1
    guess = np.where(several, probs.argmax(1), confident.argmax(1))
    # The model's own prediction, ties resolved toward the given label.
    pred = (probs + 1e-6 * np.eye(K)[given]).argmax(1)
    return int(np.sum(confident.any(1) & (guess != given) & (pred != given)))


def _name(names, k) -> str:
    return "" if names is None else str(names[k])


def rows(score: np.ndarray, probs: np.ndarray, given: np.ndarray, num_flagged: int, paths=None,
         class_names=None, true=None) -> list[dict]:
    """One dict per sample, most suspect first (ties by index): rank (1 = most suspect), index
    (dataset position), path (when ``paths``), given_label, predicted_label (the final
    network's argmax), their class names (when ``class_names``), label_score = 1 − S,
    is_label_issue (the first ``num_flagged``), and true_label / true_class when ``true``."""
    order, pred = detection.ranking(score), np.asarray(probs).argmax(1)
    out = []
    for r, i in enumerate(order):
        row = {"rank": r + 1, "index": int(i)}
        if paths is not None:
            row["path"] = str(paths[i])
        row["given_label"] = int(given[i])
        if class_names is not None:
            row["given_class"] = _name(class_names, given[i])
        row["predicted_label"] = int(pred[i])
        if class_names is not None:
            row["predicted_class"] = _name(class_names, pred[i])
        row.update(label_score=round(1.0 - float(score[i]), 7), is_label_issue=r < num_flagged)
        if true is not None:
            row["true_label"] = int(true[i])
            if class_names is not None:
                row["true_class"] = _name(class_names, true[i])
        out.append(row)
    return out


def csv_text(table: list[dict]) -> str:
    """The rows as CSV text with a header line (booleans as true/false)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(table[0]), lineterminator="\n")
    w.writeheader()
    w.writerows({k: (str(v).lower() if isinstance(v, bool) else v) for k, v in r.items()} for r in table)
    return buf.getvalue()


def quality(score: np.ndarray, flagged: np.ndarray, wrong: np.ndarray) -> dict:
    """AUROC of the score and precision, recall, F1 of the flagged set against the known wrong labels."""
    tp = int(np.sum(flagged & wrong))
    p = tp / flagged.sum() if flagged.sum() else float("nan")
    r = tp / wrong.sum() if wrong.sum() else float("nan")
    return {"auroc": detection.auroc(score, wrong), "precision": p, "recall": r,
            "f1": 2 * p * r / (p + r) if p + r > 0 else float("nan")}


def report(score, probs, given, trained: bool | None, warmup_epochs: float = 0.0, paths=None, class_names=None,
           true=None) -> dict:
    """The whole report: {"summary": for summary.json, "rows": :func:`rows`}. The summary holds
    the count, the rule, whether the tables trained, the number of distinct scores, a warning
    (or None), and with ``true`` labels the :func:`quality` of score and flags."""
    score, given = np.asarray(score, np.float64), np.asarray(given)
    n = confident_joint_count(given, probs)
    table = rows(score, probs, given, n, paths, class_names, true)
    warning = NEVER_TRAINED.format(warmup=f"{warmup_epochs:g}") if trained is False else None
    summary = {"file": "label_issues.csv", "num_samples": int(len(given)), "num_label_issues": n,
               "flag_rule": RULE_DOC, "score": SCORE_DOC, "tables_trained": trained,
               "distinct_scores": int(len(np.unique(score.astype(np.float32)))), "warning": warning}
    if true is not None:
        flagged = np.zeros(len(given), bool)
        flagged[[r["index"] for r in table[:n]]] = True
        summary.update(quality(score, flagged, np.asarray(true) != given))
    return {"summary": summary, "rows": table}


def write(path, rep: dict) -> None:
    """``label_issues.csv`` and ``label_issues.json`` of ``rep`` (:func:`report`) into the
    folder ``path``, each written whole or not at all."""
    path = pathlib.Path(path)
    atomic_write(path / "label_issues.csv", csv_text(rep["rows"]))
    atomic_write(path / "label_issues.json", dumps({**rep["summary"], "rows": rep["rows"]}))


def flagged_indices(rows_: list[dict]) -> np.ndarray:
    """Dataset indices of the flagged rows, most suspect first (int64)."""
    return np.asarray([r["index"] for r in rows_ if r["is_label_issue"]], np.int64)


def publish(path, score, probs, given, trained: bool | None, warmup_epochs: float = 0.0, image_of=None, paths=None,
            class_names=None, true=None, title: str = "") -> dict:
    """Build the :func:`report`, warn (one stderr line) when the tables never trained, write the
    CSV and JSON and, with ``image_of(index) -> (H, W, 3) uint8``, the gallery
    (:mod:`sopjax.evaluators.gallery`) into ``path``. Returns the report's summary."""
    rep = report(score, probs, given, trained, warmup_epochs, paths, class_names, true)
    if rep["summary"]["warning"]:
        warn(rep["summary"]["warning"])
    write(path, rep)
    if image_of is not None:
        gallery.write(path, rep["rows"], image_of, title)
    return rep["summary"]
