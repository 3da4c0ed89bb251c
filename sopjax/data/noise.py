"""Noisy training-label sets: synthetic (sym, symflip, asym) and human (CIFAR-N).

Every label set is a :class:`LabelSet`: the noisy labels, the clean labels kept
alongside for measurement only (None for real data, whose true labels are unknown), and
the realized noise rate. Synthetic sets are
a pure function of (clean labels, rate, seed).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from sopjax.core import rng as streams
from sopjax.data.cifar_n import CIFAR10N, CIFAR100N, read_labels

SYNTHETIC = ("clean", "sym", "symflip", "asym", "asymclean")
LABEL_SETS = SYNTHETIC + tuple(CIFAR10N) + tuple(CIFAR100N)
# Patrini et al. 2017, as in paper App. A.2: truck→automobile, bird→airplane, deer→horse, cat↔dog.
CIFAR10_ASYM = {9: 1, 2: 0, 4: 7, 3: 5, 5: 3}
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@dataclasses.dataclass(frozen=True)
class LabelSet:
    """The training labels of a run.

    name: what they are (e.g. "worst", "sym", or "given" for your own). noisy: (N,) int32,
    the labels training sees. clean: (N,) int32 true labels, used for measurement only, or
    None when they are unknown (real data): the metrics that need them are then skipped.
    seed: the seed that drew synthetic noise (0 otherwise). rate: the synthetic noise rate asked
    for (0 for clean, CIFAR-N and your own sets).
    """

    name: str
    noisy: np.ndarray
    clean: np.ndarray | None = None
    seed: int = 0
    rate: float = 0.0

    @classmethod
    def given(cls, labels, name: str = "given", true_labels=None) -> "LabelSet":
        """Your own labels: ``labels`` (N,) int as given; ``true_labels`` (N,) int if known."""
        clean = None if true_labels is None else np.asarray(true_labels, np.int32)
        return cls(name, np.asarray(labels, np.int32), clean, 0)

    @property
    def has_true_labels(self) -> bool:
        return self.clean is not None

    @property
    def is_wrong(self) -> np.ndarray | None:
        """(N,) bool, noisy ≠ clean; None without true labels."""
        return None if self.clean is None else self.noisy != self.clean

    @property
    def realized_rate(self) -> float | None:
        """The fraction of wrong labels; None without true labels."""
        return None if self.clean is None else float(np.mean(self.is_wrong))

    def take(self, rows) -> "LabelSet":
        """The labels of ``rows`` (an index array or slice), true labels alongside."""
        return dataclasses.replace(self, noisy=self.noisy[rows], clean=None if self.clean is None else self.clean[rows])


# The metrics that compare with the true labels: left out of a run without them.
NEEDS_TRUE_LABELS = ("realized_noise_rate", "memorized_wrong", "fit_clean_acc", "auroc_1mp", "auroc_uv",
                     "nc*_true", "detection AUROC / precision / recall")


def skipped_note() -> str:
    """The one line a run without true labels prints and records."""
    return f"no true labels given: skipped {', '.join(NEEDS_TRUE_LABELS)} (they compare with the true labels)"


def check_rate(rate: float) -> float:
    """The one check of a synthetic noise rate; raises ValueError unless it lies in [0, 1]."""
    if not (isinstance(rate, (int, float)) and 0.0 <= rate <= 1.0):
        raise ValueError(f"noise rate must lie in [0, 1], got {rate!r}; pass e.g. --noise-rate 0.4")
    return float(rate)


def symmetric(clean: np.ndarray, rate: float, num_classes: int, seed: int) -> np.ndarray:
    """The reference code's symmetric noise: ``round(rate·N)`` random samples each get a
    class drawn uniformly from all K classes, which may be the true one, so the
    realized flip rate is about ``rate·(K−1)/K``. Returns (N,) int32."""
    rng = np.random.default_rng(seed)
    noisy = clean.astype(np.int32).copy()
    idx = rng.choice(len(clean), size=int(round(rate * len(clean))), replace=False)
    noisy[idx] = rng.integers(0, num_classes, size=len(idx))
    return noisy


def symmetric_flip(clean: np.ndarray, rate: float, num_classes: int, seed: int) -> np.ndarray:
    """Table 1 caption's symmetric noise: ``round(rate·N)`` samples flipped uniformly to
    another class (never the true one); realized rate = rate. Returns (N,) int32."""
    rng = np.random.default_rng(seed)
    noisy = clean.astype(np.int32).copy()
    idx = rng.choice(len(clean), size=int(round(rate * len(clean))), replace=False)
    noisy[idx] = (clean[idx] + rng.integers(1, num_classes, size=len(idx))) % num_classes
    return noisy


def asymmetric_cifar10(clean: np.ndarray, rate: float, seed: int) -> np.ndarray:
    """CIFAR-10 asymmetric noise as the SOP authors draw it (``CIFAR10_train.asymmetric_noise`` in
    ``data_loader/cifar10.py`` of github.com/shengliu66/SOP): the classes are visited in index
    order 0..9, and for each source class of :data:`CIFAR10_ASYM` the first ``ceil(rate·n)`` of
    a random order of the samples *currently* labelled with it (n of them) are relabelled.
    Sequential, so dog (5) is visited after cat (3) has sent ``ceil(rate·n_cat)`` samples to it:
    at rate 0.4 on 5,000 per class, 2,800 of the 7,000 "dogs" go to cat, about 800 of them
    flipped cats that return to their true class. Realized: T[cat, dog] ≈ rate·(1 − rate) = 0.24,
    T[dog, cat] = 0.40, overall ≈ 18.4% (0.4 · 5 classes = 20% for :func:`asymmetric_cifar10_clean`).
    Seeded here (the authors draw from numpy's global state). clean (N,) int → (N,) int32."""
    rng = np.random.default_rng(seed)
    noisy = clean.astype(np.int32).copy()
    for src in sorted(CIFAR10_ASYM):
        members = rng.permutation(np.flatnonzero(noisy == src))
        # the authors' test ``j < rate·n`` over positions j = 0..n−1, i.e. ceil(rate·n) samples
        take = int(np.sum(np.arange(len(members)) < rate * len(members)))
        noisy[members[:take]] = CIFAR10_ASYM[src]
    return noisy


def asymmetric_cifar10_clean(clean: np.ndarray, rate: float, seed: int) -> np.ndarray:
    """CIFAR-10 asymmetric noise drawn on the clean labels (label set ``asymclean``): exactly
    ``round(rate·n_c)`` samples of each source class c ∈ {truck, bird, deer, cat, dog} flip by
    :data:`CIFAR10_ASYM`, so T[cat, dog] = T[dog, cat] = rate and the overall rate is 0.5·rate
    on balanced classes (App. A.2's rule read literally, not the authors' sequential draw)."""
    rng = np.random.default_rng(seed)
    noisy = clean.astype(np.int32).copy()
    for src, dst in CIFAR10_ASYM.items():
        members = np.flatnonzero(clean == src)
        pick = rng.choice(members, size=int(round(rate * len(members))), replace=False)
        noisy[pick] = dst
    return noisy


def flip_rates(labels: LabelSet, pairs: dict) -> dict[tuple[int, int], float]:
    """Realized transition rates {(src, dst): fraction of the samples of clean class src whose
    noisy label is dst} for the ``pairs`` {src: dst} (e.g. :data:`CIFAR10_ASYM`)."""
    out = {}
    for src, dst in pairs.items():
        members = labels.clean == src
        out[(src, dst)] = float(np.mean(labels.noisy[members] == dst)) if members.any() else float("nan")
    return out


def asymmetric_cifar100(clean: np.ndarray, rate: float, seed: int) -> np.ndarray:
    """CIFAR-100 asymmetric noise as the SOP authors define it (``CIFAR100_train.asymmetric_noise``
    and ``build_for_cifar100`` in ``data_loader/cifar100.py`` of github.com/shengliu66/SOP):
    inside each block of 5 consecutive class indices (20 blocks) two random classes a ≠ b are
    paired, and each sample of a (of b) flips to b (to a) with probability ``rate``,
    independently; the other three classes keep their labels. The realized rate is thus
    about 0.4·rate. Seeded here (the authors' class pairs are unseeded).
    clean (N,) int in 0..99 → (N,) int32."""
    rng = np.random.default_rng([seed, streams.CIFAR100_ASYM])
    noisy = clean.astype(np.int32).copy()
    for block in range(20):
        a, b = 5 * block + rng.choice(5, size=2, replace=False)
        for src, dst in ((a, b), (b, a)):
            members = np.flatnonzero(clean == src)
            noisy[members[rng.random(len(members)) < rate]] = dst
    return noisy


def make_label_set(name: str, clean: np.ndarray, num_classes: int, rate: float = 0.0, seed: int = 0,
                   data_dir=None) -> LabelSet:
    """Build label set ``name`` for the training labels ``clean`` (N,).

    Names: ``clean``; ``sym`` (reference code); ``symflip`` (Table 1 caption);
    ``asym`` (CIFAR-10: the authors' sequential pair flips; CIFAR-100: their in-block swaps);
    ``asymclean`` (CIFAR-10 pair flips drawn on the clean labels); CIFAR-10N ``aggre``,
    ``rand1``–``rand3``, ``worst``; CIFAR-100N ``noisy100``. ``rate`` is used by the synthetic sets only.

    Raises ValueError for an unknown name, a rate outside [0, 1], or a label set
    that does not fit the dataset; DataError if a CIFAR-N file is missing or its
    clean labels disagree with the images' labels (wrong order or wrong file).
    """
    clean = np.asarray(clean, dtype=np.int32)
    if name not in LABEL_SETS:
        raise ValueError(f"unknown label set {name!r}; choose one of {', '.join(LABEL_SETS)}")
    if name in SYNTHETIC[1:]:
        check_rate(rate)
    if name == "clean":
        return LabelSet(name, clean.copy(), clean, seed)
    if name in SYNTHETIC:
        return LabelSet(name, _synthetic(name, clean, num_classes, rate, seed), clean, seed, float(rate))
    return LabelSet(name, read_labels(name, clean, num_classes, data_dir), clean, seed)


def _synthetic(name: str, clean: np.ndarray, num_classes: int, rate: float, seed: int) -> np.ndarray:
    if name == "sym":
        return symmetric(clean, rate, num_classes, seed)
    if name == "symflip":
        return symmetric_flip(clean, rate, num_classes, seed)
    if name == "asym" and num_classes == 100:
        return asymmetric_cifar100(clean, rate, seed)
    if num_classes != 10:
        raise ValueError(f"{name} is defined for CIFAR-10{' and CIFAR-100' if name == 'asym' else ''} only, "
                         f"not {num_classes} classes")
    return (asymmetric_cifar10 if name == "asym" else asymmetric_cifar10_clean)(clean, rate, seed)
