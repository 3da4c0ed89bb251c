import numpy as np

from sopjax.evaluators import detection


def test_auroc_against_brute_force_pairs():
    rng = np.random.default_rng(0)
    s = rng.integers(0, 5, 300).astype(float)  # many ties
    pos = rng.random(300) < 0.3
    pairs = (s[pos][:, None] > s[~pos][None]).mean() + 0.5 * (s[pos][:, None] == s[~pos][None]).mean()
    assert abs(detection.auroc(s, pos) - pairs) < 1e-12
    assert detection.auroc(pos.astype(float), pos) == 1.0
    assert np.isnan(detection.auroc(s, np.zeros(300, bool)))
    p, r = detection.precision_recall(np.array([0.9, 0.8, 0.1, 0.7]), np.array([1, 0, 0, 1], bool), 0.5)
    assert (p, r) == (2 / 3, 1.0)


def test_ranking_puts_highest_scores_first():
    np.testing.assert_array_equal(detection.ranking(np.array([0.1, 0.9, 0.5, 0.9])), [1, 3, 2, 0])
