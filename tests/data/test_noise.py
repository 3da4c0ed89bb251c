"""Label sets: synthetic generators and the CIFAR-N reader."""

import pathlib
import pickle
import zipfile

import numpy as np
import pytest

from sopjax.data import cifar_n, noise, safe_pickle
from sopjax.data.cifar import candidate_dirs


def _clean(n=50_000, K=10):
    return np.random.default_rng(0).integers(0, K, n).astype(np.int32)


@pytest.mark.parametrize("rate", [0.2, 0.4, 0.8])
def test_synthetic_rates(rate):
    y = _clean()
    sym = noise.make_label_set("sym", y, 10, rate, seed=1)
    assert abs(sym.realized_rate - rate * 9 / 10) < 0.01  # uniform over all K, may keep the true class
    flip = noise.make_label_set("symflip", y, 10, rate, seed=1)
    assert abs(flip.realized_rate - rate) < 1e-4
    # same seed, same labels; another seed, other labels
    np.testing.assert_array_equal(sym.noisy, noise.make_label_set("sym", y, 10, rate, seed=1).noisy)
    assert not np.array_equal(sym.noisy, noise.make_label_set("sym", y, 10, rate, seed=2).noisy)


def test_asymclean_flips_exactly_rate_of_each_source_class_on_the_clean_labels():
    y = _clean()
    ls = noise.make_label_set("asymclean", y, 10, 0.4, seed=3)
    for src in range(10):
        moved = ls.noisy[(y == src)]
        if src in noise.CIFAR10_ASYM:
            wrong = moved != src
            assert set(moved[wrong]) == {noise.CIFAR10_ASYM[src]}
            assert wrong.sum() == round(0.4 * (y == src).sum())
        else:
            assert np.all(moved == src)
    # App. A.2 by class names (CIFAR-10's documented class order), not by restating the indices.
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    assert list(noise.CIFAR10_CLASSES) == names
    by_name = {names[s]: names[d] for s, d in noise.CIFAR10_ASYM.items()}
    assert by_name == {"truck": "automobile", "bird": "airplane", "deer": "horse", "cat": "dog", "dog": "cat"}


def test_bad_names_and_rates_are_rejected():
    y = _clean(100)
    with pytest.raises(ValueError, match="unknown label set"):
        noise.make_label_set("sym40", y, 10, 0.4)
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            noise.make_label_set("sym", y, 10, bad)
    with pytest.raises(ValueError, match="CIFAR-10 and CIFAR-100 only"):
        noise.make_label_set("asym", y, 20, 0.4)


def test_cifar10_asym_flips_sequentially_as_the_authors_at_18_4_percent():
    # The authors visit the classes in order on the *current* labels: 40% of the cats go to dog,
    # then 40% of the enlarged dog class (flipped cats included) go to cat.
    y = np.repeat(np.arange(10, dtype=np.int32), 5000)   # CIFAR-10's 5,000 per class
    cat, dog = noise.CIFAR10_CLASSES.index("cat"), noise.CIFAR10_CLASSES.index("dog")
    for seed in range(5):
        ls = noise.make_label_set("asym", y, 10, 0.4, seed=seed)
        rates = noise.flip_rates(ls, noise.CIFAR10_ASYM)
        assert 0.180 <= ls.realized_rate <= 0.188, (seed, ls.realized_rate)
        assert 0.22 <= rates[(cat, dog)] <= 0.26, (seed, rates)
        assert abs(rates[(dog, cat)] - 0.4) < 0.01 and rates[(9, 1)] == rates[(2, 0)] == rates[(4, 7)] == 0.4
    clean = noise.make_label_set("asymclean", y, 10, 0.4, seed=0)
    assert clean.realized_rate == 0.2 and noise.flip_rates(clean, noise.CIFAR10_ASYM)[(cat, dog)] == 0.4


def _cifar_n_file():
    for d in candidate_dirs():
        for p in (d / "cifar-n" / "CIFAR-10_human.pt", d / "CIFAR-10_human.pt"):
            if p.is_file():
                return p
    return None


@pytest.mark.skipif(_cifar_n_file() is None, reason="CIFAR-10N label file not found in any data directory")
def test_cifar_n_reader_gives_published_noise_rates():
    arrays = cifar_n.read_cifar_n(_cifar_n_file())
    clean = arrays["clean_label"]
    published = {"aggre": 0.0901, "rand1": 0.1723, "rand2": 0.1812, "rand3": 0.1764, "worst": 0.4021}
    for name, rate in published.items():
        ls = noise.make_label_set(name, clean, 10)
        assert abs(ls.realized_rate - rate) < 5e-5, name
    c100 = _cifar_n_file().with_name("CIFAR-100_human.pt")
    if c100.is_file():
        a = cifar_n.read_cifar_n(c100)
        assert abs(np.mean(a["noisy_label"] != a["clean_label"]) - 0.402) < 0.01


class _Evil:
    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.target),))


def test_restricted_unpickler_refuses_code(tmp_path):
    target = tmp_path / "pwned"
    evil = _Evil()
    evil.target = str(target)
    payload = pickle.dumps({"clean_label": evil}, protocol=2)
    with pytest.raises(safe_pickle.UnsafePickleError, match="only numpy arrays"):
        safe_pickle.loads(payload)
    pt = tmp_path / "evil.pt"
    with zipfile.ZipFile(pt, "w") as z:
        z.writestr("archive/data.pkl", payload)
    with pytest.raises(safe_pickle.UnsafePickleError):
        cifar_n.read_cifar_n(pt)
    assert not target.exists()
    # while plain numpy arrays load fine
    ok = safe_pickle.loads(pickle.dumps({"a": np.arange(5, dtype=np.int64)}, protocol=2))
    np.testing.assert_array_equal(ok["a"], np.arange(5))
