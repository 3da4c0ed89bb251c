"""The label-issue report: its score, its flag count, its rows and files, and its gallery."""

import csv
import json

import numpy as np
import pytest

from sopjax.evaluators import gallery, label_issues


def random_probs(rng, n, k, sharp):
    logits = rng.standard_normal((n, k)) * sharp
    p = np.exp(logits - logits.max(1, keepdims=True))
    return p / p.sum(1, keepdims=True)


@pytest.mark.parametrize("seed", range(6))
def test_confident_joint_count_equals_cleanlabs_num_label_issues(seed):
    # Catches a threshold per column instead of per given class, a missing "confident in
    # several classes → argmax" rule, or issues the model already predicts correctly.
    count = pytest.importorskip("cleanlab.count")
    rng = np.random.default_rng(seed)
    n, k = 600, 5 + seed
    given = rng.integers(0, k, n)
    if seed % 2:
        given[given == k - 1] = 0  # a class nobody carries
    probs = random_probs(rng, n, k, sharp=1.0 + seed)
    probs[:40] = probs[40:80]  # repeated rows: exact ties against the thresholds
    if seed == 5:
        probs = np.full((n, k), 1.0 / k)  # every class ties
    assert label_issues.confident_joint_count(given, probs) == count.num_label_issues(given, probs)


def test_confident_joint_count_flags_what_the_model_confidently_relabels():
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9], [0.2, 0.8], [0.85, 0.15]])
    given = np.array([0, 0, 1, 1, 1])  # the last looks like class 0
    assert label_issues.confident_joint_count(given, probs) == 1


def test_issue_score_is_the_mean_of_the_terms_with_the_final_one():
    stats = {"issue_sum": np.array([1.5, 0.0, 0.2]), "issue_count": np.array([2.0, 0.0, 1.0])}
    u = np.array([[2.0], [0.1], [0.5]])  # U² = 1 (clamped), 0.01, 0.25
    probs = np.array([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    given = np.array([1, 1, 0])
    final = 0.5 * (np.array([1.0, 0.01, 0.25]) + 1 - np.array([0.2, 0.7, 0.6]))
    np.testing.assert_allclose(label_issues.issue_score(stats, u, probs, given),
                               (np.array([1.5, 0.0, 0.2]) + final) / np.array([3.0, 1.0, 2.0]))
    # without tables: the final network's 1 − p
    np.testing.assert_allclose(label_issues.issue_score(None, None, probs, given), [0.8, 0.3, 0.4])
    assert label_issues.tables_trained(stats) and label_issues.tables_trained(None) is None
    assert label_issues.tables_trained({"issue_sum": np.zeros(3), "issue_count": np.zeros(3)}) is False


def report(true=True, trained=True):
    score = np.array([0.2, 0.9, 0.9, 0.1, 0.7])
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.2, 0.8], [0.1, 0.9], [0.95, 0.05]])
    given = np.array([0, 1, 0, 1, 1])
    return label_issues.report(score, probs, given, trained, 5.0, paths=[f"a/{i}.png" for i in range(5)],
                               class_names=("cat", "dog"), true=np.array([0, 0, 1, 1, 1]) if true else None)


def test_rows_most_suspect_first_ties_by_index_flagged_by_the_count():
    rep = report()
    rows = rep["rows"]
    assert [r["index"] for r in rows] == [1, 2, 4, 0, 3]
    assert [r["rank"] for r in rows] == [1, 2, 3, 4, 5]
    n = rep["summary"]["num_label_issues"]
    assert n == 3  # samples 1, 2 (confidently the other class) and 4 (given 1, p(0) = 0.95)
    assert [r["is_label_issue"] for r in rows] == [True] * n + [False] * (5 - n)
    first = rows[0]
    assert (first["path"], first["given_label"], first["given_class"]) == ("a/1.png", 1, "dog")
    assert (first["predicted_label"], first["predicted_class"], first["true_label"]) == (0, "cat", 0)
    assert first["label_score"] == pytest.approx(0.1)
    # quality against the true labels: wrong = samples 1, 2; flagged = 1, 2, 4
    s = rep["summary"]
    assert s["precision"] == pytest.approx(2 / 3) and s["recall"] == 1.0 and s["f1"] == pytest.approx(0.8)
    assert s["distinct_scores"] == 4 and s["warning"] is None and s["tables_trained"] is True


def test_a_run_whose_tables_never_trained_says_so_and_has_no_true_label_columns():
    rep = report(true=False, trained=False)
    assert "never trained" in rep["summary"]["warning"] and "5 warm-up epochs" in rep["summary"]["warning"]
    assert "true_label" not in rep["rows"][0] and "precision" not in rep["summary"]


def test_csv_and_json_hold_the_same_rows(tmp_path):
    rep = report()
    label_issues.write(tmp_path, rep)
    with open(tmp_path / "label_issues.csv") as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == ["rank", "index", "path", "given_label", "given_class", "predicted_label",
                              "predicted_class", "label_score", "is_label_issue", "true_label", "true_class"]
    rec = json.loads((tmp_path / "label_issues.json").read_text())
    assert rec["num_label_issues"] == 3 and rec["rows"] == rep["rows"]
    assert [int(r["index"]) for r in table] == [r["index"] for r in rec["rows"]]
    assert [r["is_label_issue"] for r in table] == ["true"] * 3 + ["false"] * 2
    np.testing.assert_array_equal(label_issues.flagged_indices(rec["rows"]), [1, 2, 4])


def test_gallery_draws_the_most_and_the_least_suspect_and_the_page_embeds_them(tmp_path):
    rows = report()["rows"]
    seen = []

    def image_of(i):
        seen.append(i)
        return np.full((8, 8, 3), 40 * i, np.uint8)

    fig = gallery.figure(rows, image_of, top=3, bottom=2)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles[0].startswith("dog → cat\n#1") and len(titles) == 5
    assert seen == [1, 2, 4, 0, 3]
    wrong_frame = fig.axes[0].spines["left"].get_edgecolor()  # sample 1's given label is known to be wrong
    assert wrong_frame != fig.axes[2].spines["left"].get_edgecolor()  # sample 4's is right
    page = gallery.page(rows, image_of, top=3, bottom=2)
    assert page.count("data:image/png;base64,") == 5 and "a/1.png" in page
    gallery.write(tmp_path, rows, image_of)
    assert (tmp_path / "label_issues.png").stat().st_size > 1000 and (tmp_path / "label_issues.html").is_file()
