"""Streaming input (sopjax.stream) on a generated folder of small PNGs."""

import numpy as np
import pytest
from PIL import Image

from sopjax.data import folder as stream

N, K, B = 300, 10, 32


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """N 8×8 PNGs in two subfolders whose pixels encode their list position, and a list file."""
    root = tmp_path_factory.mktemp("imgs")
    lines = []
    for i in range(N):
        sub = root / f"class{i % 3}"
        sub.mkdir(exist_ok=True)
        px = np.zeros((8, 8, 3), np.uint8)
        px[..., 0], px[..., 1] = i % 256, i // 256
        px[0, 0, 2] = 255  # marks the left edge, so a flip is visible
        Image.fromarray(px).save(sub / f"img {i}.png")  # a space in the name
        lines.append(f"class{i % 3}/img {i}.png {i % K}")
    (root / "list.txt").write_text("\n".join(lines) + "\n")
    return root


def decoded_index(images):
    return images[:, 0, 1, 0].astype(int) + 256 * images[:, 0, 1, 1].astype(int)


def epoch(loader):
    return [(np.asarray(x), np.asarray(i)) for x, i in loader]


def test_an_epoch_visits_every_index_once_with_its_own_image(folder):
    images = stream.read_list(folder / "list.txt", folder, K)
    np.testing.assert_array_equal(images.labels, np.arange(N) % K)
    batches = epoch(stream.make_loader(images, B, seed=3, size=8))
    idx = np.concatenate([i for _, i in batches])
    assert sorted(idx.tolist()) == list(range(N))
    assert not np.array_equal(idx, np.arange(N))  # shuffled
    for x, i in batches:
        assert x.shape[1:] == (8, 8, 3) and x.dtype == np.uint8 and i.dtype == np.int32
        np.testing.assert_array_equal(decoded_index(x), i)  # the index is the image's list position


def test_same_seed_same_order_and_flips_other_seed_other_order(folder):
    images = stream.read_list(folder / "list.txt", folder, K)
    a = epoch(stream.make_loader(images, B, seed=3, size=8, flip=True))
    b = epoch(stream.make_loader(images, B, seed=3, size=8, flip=True))
    c = epoch(stream.make_loader(images, B, seed=4, size=8, flip=True))
    for (xa, ia), (xb, ib) in zip(a, b):
        np.testing.assert_array_equal(ia, ib)
        np.testing.assert_array_equal(xa, xb)
    assert not np.array_equal(a[0][1], c[0][1])
    flipped = np.concatenate([x[:, 0, 7, 2] == 255 for x, _ in a])
    assert 0.3 < flipped.mean() < 0.7


def test_resume_from_the_iterator_state_continues_where_it_stopped(folder):
    images = stream.read_list(folder / "list.txt", folder, K)
    make = lambda: stream.make_loader(images, B, seed=5, size=8, num_epochs=2, flip=True)
    it = iter(make())
    for _ in range(7):  # into the middle of the first epoch
        next(it)
    state = it.get_state()
    rest = [(np.asarray(x), np.asarray(i)) for x, i in it]
    it2 = iter(make())
    it2.set_state(state)
    resumed = [(np.asarray(x), np.asarray(i)) for x, i in it2]
    assert len(resumed) == len(rest) > 10
    for (x, i), (x2, i2) in zip(rest, resumed):
        np.testing.assert_array_equal(i, i2)
        np.testing.assert_array_equal(x, x2)


@pytest.mark.parametrize("bad, message", [
    ("class0/img 0.png 10", r"list.txt line 4: label 10 is outside \[0, 10\)"),
    ("class0/missing.png 1", "list.txt line 4: image 'class0/missing.png' not found"),
    ("class0/img 0.png", "list.txt line 4: label '0.png' is not an integer"),
    ("justonefield", "list.txt line 4: expected '<path> <label>'"),
])
def test_bad_lines_name_the_line(folder, tmp_path, bad, message):
    lines = (folder / "list.txt").read_text().splitlines()[:3] + [bad] + ["class1/img 1.png 1"]
    (tmp_path / "list.txt").write_text("\n".join(lines))
    with pytest.raises(ValueError, match=message):
        stream.read_list(tmp_path / "list.txt", folder, K)


def test_class_names_come_from_classes_txt_next_to_the_list_first(tmp_path):
    root, lists = tmp_path / "images", tmp_path / "lists"
    root.mkdir()
    lists.mkdir()
    assert stream.read_class_names(lists / "train.txt", root, 2) is None
    (root / "classes.txt").write_text("cat\ndog\n")
    assert stream.read_class_names(lists / "train.txt", root, 2) == ("cat", "dog")
    (lists / "classes.txt").write_text("  tabby cat \r\nhound\n\n")
    assert stream.read_class_names(lists / "train.txt", root, 2) == ("tabby cat", "hound")
    with pytest.raises(ValueError, match="must hold 3 non-empty class names"):
        stream.read_class_names(lists / "train.txt", root, 3)
    (lists / "classes.txt").write_text("cat\n\ndog\n")
    with pytest.raises(ValueError, match="must hold 3 non-empty"):
        stream.read_class_names(lists / "train.txt", root, 3)
