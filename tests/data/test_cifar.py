"""Data loading: official format, JPEG npz, download with checksum, directory resolution."""

import functools
import hashlib
import http.server
import io
import pickle
import tarfile
import threading

import numpy as np
import pytest

from sopjax.data import cifar as data


def _write_official(root, n_per_batch=4, seed=0):
    """A tiny CIFAR-10 python-version release written the way the official one is."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    xs, ys = {}, {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        x = rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8)
        y = rng.integers(0, 10, n_per_batch).tolist()
        with open(folder / name, "wb") as f:
            pickle.dump(
                {b"batch_label": b"x", b"labels": y, b"data": x, b"filenames": [b"a"] * n_per_batch}, f, protocol=2
            )
        xs[name], ys[name] = x.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), np.array(y)
    return folder, xs, ys


def test_official_folder_and_tarball(tmp_path):
    folder, xs, ys = _write_official(tmp_path / "d")
    ds = data.load_cifar("cifar10", tmp_path / "d", download_missing=False, cache_dir=tmp_path / "c")
    assert ds.x_train.shape == (20, 32, 32, 3) and ds.x_train.dtype == np.uint8
    np.testing.assert_array_equal(ds.x_train[:4], xs["data_batch_1"])
    np.testing.assert_array_equal(ds.x_train[16:], xs["data_batch_5"])
    np.testing.assert_array_equal(ds.y_test, ys["test_batch"])
    # cached: a second load reads the .npy cache and gives the same arrays
    again = data.load_cifar("cifar10", tmp_path / "d", download_missing=False, cache_dir=tmp_path / "c")
    np.testing.assert_array_equal(again.x_train, ds.x_train)
    # the tarball form
    tar_dir = tmp_path / "t"
    tar_dir.mkdir()
    with tarfile.open(tar_dir / "cifar-10-python.tar.gz", "w:gz") as t:
        t.add(folder, arcname="cifar-10-batches-py")
    ds2 = data.load_cifar("cifar10", tar_dir, download_missing=False, cache_dir=tmp_path / "c2")
    np.testing.assert_array_equal(ds2.x_train, ds.x_train)


def test_missing_dataset_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "candidate_dirs", lambda explicit=None: [tmp_path])
    with pytest.raises(data.DataError, match="--data-dir"):
        data.load_cifar("cifar10", download_missing=False)
    with pytest.raises(ValueError, match="unknown dataset"):
        data.load_cifar("mnist")


def test_explicit_data_dir_must_exist(tmp_path):
    with pytest.raises(data.DataError, match="does not exist"):
        data.candidate_dirs(tmp_path / "nope")


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a):
        pass


@pytest.fixture
def http_root(tmp_path):
    root = tmp_path / "srv"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_download_verifies_md5_and_leaves_nothing_on_mismatch(tmp_path, http_root):
    root, base = http_root
    folder, xs, _ = _write_official(tmp_path / "src")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        t.add(folder, arcname="cifar-10-batches-py")
    good = buf.getvalue()
    (root / "good.tar.gz").write_bytes(good)
    (root / "bad.tar.gz").write_bytes(good[:-10] + b"corrupted!")
    md5 = hashlib.md5(good).hexdigest()
    dest_dir = tmp_path / "dl"
    with pytest.raises(data.DataError, match="checksum mismatch for cifar-10-python.tar.gz") as e:
        data.download(f"{base}/bad.tar.gz", dest_dir / "cifar-10-python.tar.gz", md5)
    assert "Nothing was kept" in str(e.value)
    assert list(dest_dir.iterdir()) == []
    data.download(f"{base}/good.tar.gz", dest_dir / "cifar-10-python.tar.gz", md5)
    assert [p.name for p in dest_dir.iterdir()] == ["cifar-10-python.tar.gz"]
    # the whole path: nothing found locally, so load_cifar downloads, verifies and loads
    spec = dict(data.OFFICIAL["cifar10"], url=f"{base}/good.tar.gz", md5=md5)
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    import unittest.mock as um

    with um.patch.dict(data.OFFICIAL, {"cifar10": spec}):
        ds = data.load_cifar("cifar10", fresh, cache_dir=tmp_path / "c")
    np.testing.assert_array_equal(ds.x_train[:4], xs["data_batch_1"])


def test_corrupt_jpeg_npz_is_reported(tmp_path):
    (tmp_path / "cifar10-jpeg.npz").write_bytes(b"not a zip")
    with pytest.raises(data.DataError, match="corrupt"):
        data.load_cifar("cifar10", tmp_path, download_missing=False, cache_dir=tmp_path / "c")
