"""Small datasets in the official file formats, written into a test's temporary folder."""

import io
import pickle
import zipfile

import numpy as np


def write_pt(path, arrays: dict):
    buf = io.BytesIO()
    pickle.dump({k: np.asarray(v, np.int64) for k, v in arrays.items()}, buf, protocol=2)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("CIFAR-10_human/data.pkl", buf.getvalue())


def tiny_cifar(root, per_batch=16, seed=0, worst=None):
    """A CIFAR-10 release in the official format (5 × per_batch train, per_batch test) and a
    CIFAR-N file whose clean labels match; ``worst`` overrides its worst labels."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    ys = []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        y = rng.integers(0, 10, per_batch)
        ys.append(y) if name != "test_batch" else None
        batch = {b"labels": y.tolist(), b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    clean = np.concatenate(ys)
    flip = (clean + 1) % 10
    write_pt(root / "CIFAR-10_human.pt", {"clean_label": clean, "worse_label": flip if worst is None else worst,
                                           "aggre_label": clean})
    return root
