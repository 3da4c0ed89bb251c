"""End-of-run detection scores and summary."""

import numpy as np

from sopjax import configs as config_lib
from sopjax.data import noise
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
