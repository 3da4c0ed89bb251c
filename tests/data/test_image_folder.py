"""The class-subfolder layout (torchvision's ImageFolder), read directly and trained through the CLI."""

import json

import numpy as np
import pytest
from PIL import Image

from experiments import cifar
from sopjax.data.image_folder import read_image_folder

NAMES = ("cat", "dog", "frog")
S = 8


def _write(root, counts, seed):
    rng = np.random.default_rng(seed)
    for name, n in zip(NAMES, counts):
        (root / name / "sub").mkdir(parents=True)
        for i in range(n):
            where = root / name / ("sub" if i % 2 else "") / f"{i:02d}.png"
            Image.fromarray(rng.integers(0, 256, (S, S, 3), dtype=np.uint8)).save(where)
    (root / "dog" / "notes.txt").write_text("not an image")
    return root


def test_classes_are_the_sorted_subfolders_and_images_their_sorted_files(tmp_path):
    root = _write(tmp_path / "train", (3, 2, 4), 0)
    paths, labels, names = read_image_folder(root)
    assert names == NAMES and list(labels) == [0] * 3 + [1] * 2 + [2] * 4
    assert paths[:3] == tuple(str((root / "cat" / p).resolve()) for p in ("00.png", "02.png", "sub/01.png"))
    # a test folder missing a class keeps the training classes' numbering
    (tmp_path / "test" / "frog").mkdir(parents=True)
    Image.fromarray(np.zeros((S, S, 3), np.uint8)).save(tmp_path / "test" / "frog" / "a.png")
    assert list(read_image_folder(tmp_path / "test", names)[1]) == [2]


@pytest.mark.parametrize("make, message", [
    (lambda r: r.mkdir(), "has no class subfolders"),
    (lambda r: (r / "cat").mkdir(parents=True), "holds no image"),
    (lambda r: None, "is not a folder"),
])
def test_a_bad_folder_is_one_line_naming_it(tmp_path, make, message):
    make(tmp_path / "r")
    with pytest.raises(ValueError, match=message):
        read_image_folder(tmp_path / "r")


def test_cli_trains_class_subfolders_and_writes_the_class_names(tmp_path, capsys):
    train, test = _write(tmp_path / "train", (24, 20, 20), 0), _write(tmp_path / "test", (4, 4, 4), 1)
    w = tmp_path / "w"
    rc = cifar.main(["--preset", "quick", "--method", "sop", "--arch", "mlp", "--width", "0.0625", "--epochs", "1",
                     "--batch-size", "16", "--image-size", str(S), "--no-progress", "--image-root", str(train),
                     "--test-folder", str(test), "--workdir", str(w)])
    assert rc == 0, capsys.readouterr().err
    assert "64 images in the class subfolders of" in capsys.readouterr().out
    rec = json.loads((w / "config.json").read_text())
    assert rec["class_names"] == list(NAMES) and rec["layout"] == "class subfolders"
    assert json.loads((w / "summary.json").read_text())["class_names"] == list(NAMES)
    assert list(np.load(w / "noise_scores.npz")["class_names"]) == list(NAMES)
    assert json.loads((w / "metrics.jsonl").read_text().splitlines()[0])["test_size"] == 12
