"""``python -m sopjax.find_label_issues`` on a generated folder with labels flipped on purpose,
its bad-input errors, and ``sopjax.find_label_issues`` in Python."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from sopjax import find_label_issues as fli
from sopjax.evaluators import detection

N, K, S = 200, 4, 16
COLOURS = np.array([[220, 40, 40], [40, 200, 40], [40, 60, 220], [230, 220, 40]])


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """N noisy solid-colour S×S images of K classes (every 10th a JPEG, in per-class subfolders)
    listed with 20% of their labels flipped to another class, and a classes.txt."""
    root = tmp_path_factory.mktemp("colours")
    rng = np.random.default_rng(0)
    y = rng.integers(0, K, N)
    flipped = np.zeros(N, bool)
    flipped[rng.choice(N, N // 5, replace=False)] = True
    given = np.where(flipped, (y + rng.integers(1, K, N)) % K, y)
    lines = []
    for i in range(N):
        (root / f"c{y[i]}").mkdir(exist_ok=True)
        name = f"c{y[i]}/img {i}.{'jpg' if i % 10 == 0 else 'png'}"  # a space in the name
        Image.fromarray(np.clip(COLOURS[y[i]] + rng.normal(0, 30, (S, S, 3)), 0, 255).astype(np.uint8)).save(
            root / name)
        lines.append(f"{name} {given[i]}")
    (root / "labels.txt").write_text("\n".join(lines) + "\n")
    (root / "classes.txt").write_text("red\ngreen\nblue\nyellow\n")
    return {"root": root, "lines": lines, "flipped": flipped}


def cli(folder, workdir, *extra, label_file="labels.txt"):
    return fli.main(["--image-root", str(folder["root"]), "--label-file", str(folder["root"] / label_file),
                     "--workdir", str(workdir), "--image-size", str(S), "--no-progress", *extra])


@pytest.fixture(scope="module")
def run(folder, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("run") / "report"
    assert cli(folder, workdir, "--epochs", "5") == 0
    return workdir


def test_report_lists_every_image_by_its_path_and_the_flipped_rank_first(folder, run, capsys):
    # Catches paths that are not the label file's, rows out of order, or a score that does not
    # find the flipped labels (PNG and JPEG alike).
    with open(run / "label_issues.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == N
    by_index = {int(r["index"]): r for r in rows}
    assert [by_index[i]["path"] + " " + by_index[i]["given_label"] for i in range(N)] == folder["lines"]
    assert {r["given_class"] for r in rows} <= {"red", "green", "blue", "yellow"}
    rank = np.array([int(by_index[i]["rank"]) for i in range(N)])
    flipped = folder["flipped"]
    assert rank[flipped].mean() < 0.5 * rank[~flipped].mean()
    assert detection.auroc(-rank, flipped) > 0.9
    flagged = np.array([by_index[i]["is_label_issue"] == "true" for i in range(N)])
    assert 0.5 * flipped.sum() <= flagged.sum() <= 2 * flipped.sum()
    for name in ("label_issues.png", "label_issues.html", "label_issues.json", "summary.json"):
        assert (run / name).stat().st_size > 0
    assert json.loads((run / "summary.json").read_text())["label_issues"]["tables_trained"] is True


def test_python_call_returns_the_flagged_indices_most_suspect_first(run):
    rec = json.loads((run / "label_issues.json").read_text())
    expected = [r["index"] for r in rec["rows"] if r["is_label_issue"]]
    idx, rep = fli.find_label_issues(run, return_report=True)
    assert idx.tolist() == expected and rep["summary"]["num_label_issues"] == len(expected)


@pytest.mark.parametrize("code", [
    "import sopjax; print(sopjax.find_label_issues(sys.argv[1]).tolist())",
    "import sopjax.find_label_issues; import sopjax; print(sopjax.find_label_issues(sys.argv[1]).tolist())",
])
def test_sopjax_find_label_issues_is_callable_whatever_was_imported_first(run, code):
    # Catches the package attribute rebound to a plain (uncallable) module by the submodule's import.
    out = subprocess.run([sys.executable, "-c", "import sys; " + code, str(run)], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout) == fli.find_label_issues(run).tolist()


def test_command_line_entry_point_runs_without_a_double_import_warning():
    out = subprocess.run([sys.executable, "-m", "sopjax.find_label_issues", "--help"], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0 and "--label-file" in out.stdout and "Warning" not in out.stderr


def test_a_run_too_short_to_train_the_tables_warns(folder, tmp_path, capsys):
    (folder["root"] / "short.txt").write_text("\n".join(folder["lines"][:64]) + "\n")
    assert cli(folder, tmp_path / "short", "--epochs", "1", "--uv-warmup-epochs", "1", label_file="short.txt") == 0
    err = capsys.readouterr().err
    assert "never trained" in err
    summary = json.loads((tmp_path / "short" / "summary.json").read_text())["label_issues"]
    assert summary["tables_trained"] is False and "never trained" in summary["warning"]


@pytest.mark.parametrize("case, message", [
    ("missing image", "not found"),
    ("label >= K", "outside [0, 4)"),
    ("empty label file", "lists no images"),
    ("no such directory", "does not exist"),
])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(folder, tmp_path, capsys, case, message):
    bad = tmp_path / "bad.txt"
    root = folder["root"]
    bad.write_text({"missing image": "c0/none.png 0\n", "label >= K": f"{folder['lines'][0].rsplit(' ', 1)[0]} 4\n",
                    "empty label file": "\n", "no such directory": "x.png 0\n"}[case])
    if case == "no such directory":
        root = tmp_path / "nowhere"
    workdir = tmp_path / "out"
    code = fli.main(["--image-root", str(root), "--label-file", str(bad), "--num-classes", str(K),
                     "--workdir", str(workdir)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error:") and message in err[0]
    assert not workdir.exists()


def test_python_call_on_a_trained_state_flags_the_flipped_labels():
    # Catches a state report that pairs the probabilities or the sums with other rows than the labels.
    import jax.numpy as jnp

    from tests.trainers.test_step import build, small_cfg, synthetic

    x, y, _, _ = synthetic(N=512)
    rng = np.random.default_rng(0)
    flipped = rng.random(512) < 0.3
    given = np.where(flipped, (y + 1 + rng.integers(0, 9, 512)) % 10, y).astype(np.int32)
    cfg = small_cfg(uv_warmup_epochs=1.0, init_std=1e-3, lr_u=30.0, lr_v=30.0)
    state, step, data = build(cfg, x, given)
    for e in range(4):
        for b in rng.permutation(512).reshape(-1, 32):
            state, _ = step(state, jnp.asarray(b, jnp.int32), data)
        idx, rep = fli.find_label_issues(state, labels=given, images=x, return_report=True)
        # after the 1-epoch warm-up the network's 1 − p alone, then with the tables' sums
        assert rep["summary"]["tables_trained"] is (e > 0) and len(idx) == rep["summary"]["num_label_issues"]
        assert flipped[idx].mean() > 0.8 and flipped[idx].sum() > 0.6 * flipped.sum(), e
    assert float(state.sample_stats["issue_count"].min()) >= 1  # every row counted after the warm-up
    with pytest.raises(ValueError, match="labels= and images="):
        fli.find_label_issues(state)
