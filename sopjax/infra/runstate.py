"""A run directory checked as a whole before anything in it is written.

Its files must tell one story: ``config.json`` (what the run is), ``metrics.jsonl`` (one
line per finished epoch, 1 … n), ``checkpoints/<epoch>/`` (the newest at epoch c) and, once
the run has finished, ``summary.json``. The training loop writes an epoch's metric line
and then its checkpoint, and the summary last, so a kill at any moment leaves

- n = c or n = c + 1 (killed between the line and the checkpoint), the last line possibly
  cut short (killed while appending it);
- a summary only after all epochs' lines.

Anything else means a file was lost or replaced by hand, and training on would overwrite
or contradict what is left: :func:`inspect` refuses it with one line naming the file and
the fix. Files it does not know (plots, label-issue lists, notes) are ignored.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

from sopjax.infra.errors import RunDirError
from sopjax.infra.record import effective_config, read_json

FIX = "restore it from a backup, or use a new --workdir (or delete this one to start over)"


@dataclasses.dataclass(frozen=True)
class RunState:
    """What a run directory holds: the epochs of its metric lines, its checkpoint epochs,
    its summary (None until the run finished) and its recorded config (None when new)."""

    metric_epochs: tuple
    steps: tuple
    summary: dict | None
    record: dict | None

    @property
    def finished(self) -> bool:
        return self.summary is not None


def metric_epochs(path: pathlib.Path) -> tuple[int, ...]:
    """Epochs of the lines of ``metrics.jsonl`` (none if absent). A last line that does not
    parse is a line cut by a kill and is skipped; raises RunDirError for any other bad line."""
    if not path.exists():
        return ()
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    epochs = []
    for i, line in enumerate(lines):
        try:
            epochs.append(int(json.loads(line)["epoch"]))
        except (ValueError, KeyError, TypeError):
            if i + 1 < len(lines):
                raise RunDirError(f"{path} line {i + 1} is not a metrics record; {FIX}") from None
    return tuple(epochs)


def _present(path: pathlib.Path, epochs, steps) -> list[str]:
    found = [f"checkpoints/ (epochs {', '.join(map(str, steps))})"] if steps else []
    found += ["metrics.jsonl"] if epochs else []
    return found + (["summary.json"] if (path / "summary.json").exists() else [])


def _read_record(path: pathlib.Path, epochs, steps) -> dict | None:
    cfg = path / "config.json"
    if cfg.exists() and cfg.stat().st_size:
        return read_json(cfg)
    found = _present(path, epochs, steps)
    if found:
        raise RunDirError(f"{path} holds {', '.join(found)} but no config.json, so its config and data cannot be "
                          f"checked; {FIX.replace('it', 'config.json', 1)}")
    return None


def _check_summary(path: pathlib.Path, total: int, n: int) -> dict:
    summary = read_json(path / "summary.json")
    if not isinstance(summary, dict) or n != total or summary.get("epochs") != n:
        got = summary.get("epochs") if isinstance(summary, dict) else None
        raise RunDirError(f"{path / 'summary.json'} reports a finished run of {got} epochs, but config.json asks for "
                          f"{total} and metrics.jsonl holds {n}; restore metrics.jsonl (or summary.json) from a "
                          "backup, or use a new --workdir")
    return summary


def inspect(path: pathlib.Path, steps) -> RunState:
    """Read and cross-check the run files of ``path`` (``steps``: its checkpoint epochs,
    ascending). Returns the :class:`RunState`; raises RunDirError naming the file that
    disagrees and the fix. Writes nothing."""
    path, steps = pathlib.Path(path), tuple(steps)
    metrics = path / "metrics.jsonl"
    epochs = metric_epochs(metrics)
    record = _read_record(path, epochs, steps)
    n, c = len(epochs), (steps[-1] if steps else 0)
    if epochs != tuple(range(1, n + 1)):
        raise RunDirError(f"{metrics} holds epochs {list(epochs)[:8]}…, not 1, 2, …, {n} in order; {FIX}")
    if n < c:
        has = f"ends at epoch {n}" if n else "is missing or empty"
        raise RunDirError(f"{metrics} {has} but checkpoints/ reaches epoch {c}: the records of epochs {n + 1}–{c} "
                          "are lost; restore metrics.jsonl from a backup, or use a new --workdir")
    if (path / "summary.json").exists():
        total = int(effective_config(record)["epochs"])
        return RunState(epochs, steps, _check_summary(path, total, n), record)
    if n > c + 1:
        where = f"the newest checkpoint is after epoch {c}" if steps else "there is no checkpoint"
        raise RunDirError(f"{metrics} holds epochs 1–{n} but {where} in {path / 'checkpoints'}; training on would "
                          f"drop the records of epochs {c + 1}–{n}; restore checkpoints/ from a backup, or use a new "
                          "--workdir")
    return RunState(epochs, steps, None, record)
