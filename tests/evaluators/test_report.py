"""End-of-run detection scores and summary."""

import numpy as np

from sopjax import configs as config_lib
from sopjax.data import cifar, noise
from sopjax.evaluators import report


def test_detection_scores_are_one_minus_p_given_and_the_uv_norm():
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.3, 0.3, 0.4]], np.float32)
    given = np.array([0, 0, 2])
    u = np.array([[0.5], [1.0], [0.0]], np.float32)
    v = np.array([[0.0, 0.3, 0.0], [0.0, 0.2, 2.0], [0.0, 0.0, 0.0]], np.float32)
    sc = report.detection_scores(probs, given, {"u": u, "v": v})
    np.testing.assert_allclose(sc["model_1mp"], [0.3, 0.9, 0.6], rtol=1e-6)
    # ‖s‖₁ = clip(u², 0, 1) at the given class + Σ_{k≠y} clip(v², 0, 1)
    np.testing.assert_allclose(sc["sop_uv"], [0.25 + 0.09, 1.0 + 0.04 + 1.0, 0.0], rtol=1e-6)
    assert set(report.detection_scores(probs, given, {"net": {}})) == {"model_1mp"}


def test_summary_prefers_sop_score_and_labels_test_selection():
    labels = noise.LabelSet("sym", np.array([0, 1, 1, 0]), np.array([0, 1, 0, 0]), 0)
    scores = {"model_1mp": np.array([0.1, 0.2, 0.9, 0.3]), "sop_uv": np.array([0.5, 0.6, 0.1, 0.7])}
    det = report.detection_table(scores, labels.is_wrong, threshold=0.5)
    assert det["model_1mp"]["auroc"] == 1.0 and det["sop_uv"]["auroc"] == 0.0
    assert det["model_1mp"]["precision"] == 1.0 and det["sop_uv"]["recall"] == 0.0
    hist = [{"test_acc": 0.5, "epoch_total_s": 1.0, "images_per_s": 10.0},
            {"test_acc": 0.7, "epoch_total_s": 1.0, "images_per_s": 30.0},
            {"test_acc": 0.6, "epoch_total_s": 2.0, "images_per_s": 20.0, "memorized_wrong": None}]
    s = report.summarize(config_lib.Config(), labels, hist, det)
    assert s["detection_primary"] == "sop_uv" and s["detection_auroc"] == 0.0
    assert (s["test_acc_best"], s["test_acc_best_epoch"], s["test_acc_last"]) == (0.7, 2, 0.6)
    assert "test" in s["test_acc_best_selected_on"] and s["train_wall_s"] == 4.0 and s["mean_images_per_s"] == 20.0


def test_finalize_writes_the_label_issue_report_and_makes_its_score_primary(tmp_path):
    # Catches a report that is not written, not ranked by the label-issue score, or that
    # loses the class names, the true labels or the gallery of a run on images.
    from sopjax.data.arrays import Arrays

    rng = np.random.default_rng(0)
    N, K = 40, 10
    clean = rng.integers(0, K, N)
    noisy = clean.copy()
    noisy[:8] = (clean[:8] + 1) % K
    probs = np.full((N, K), 0.02)
    probs[np.arange(N), clean] = 0.82
    stats = {"issue_sum": np.where(np.arange(N) < 8, 1.8, 0.1), "issue_count": np.full(N, 2.0)}
    params = {"u": np.where(np.arange(N) < 8, 1.0, 0.01)[:, None], "v": np.zeros((N, K))}
    x = rng.integers(0, 256, (N, 32, 32, 3), dtype=np.uint8)
    arrays = Arrays(x, noise.LabelSet("worst", noisy, clean, 0.2), x[:4], clean[:4], K)
    hist = [{"epoch": 1, "test_acc": 0.5, "epoch_total_s": 1.0, "images_per_s": 10.0}]
    s = report.finalize(config_lib.Config(method="sop"), params, probs, arrays, hist, tmp_path, stats)
    assert s["detection_primary"] == "sop_issue" and s["detection"]["sop_issue"]["auroc"] == 1.0
    li = s["label_issues"]
    assert li["num_label_issues"] == 8 and li["precision"] == 1.0 and li["recall"] == 1.0
    rows = (tmp_path / "label_issues.csv").read_text().splitlines()
    assert rows[0].startswith("rank,index,given_label,given_class") and "true_class" in rows[0]
    first = rows[1].split(",")
    assert {int(r.split(",")[1]) for r in rows[1:9]} == set(range(8))
    assert first[3] == cifar.CLASS_NAMES["cifar10"][int(first[2])]  # given_class
    with np.load(tmp_path / "noise_scores.npz") as z:
        assert str(z["score_name"]) == "sop_issue" and z["pred_probs"].shape == (N, K)
    assert (tmp_path / "label_issues.png").stat().st_size > 0 and (tmp_path / "label_issues.html").is_file()
