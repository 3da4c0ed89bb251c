"""The reliability probe: every bad input and fault of the catalogue, tried as a user would,
each classified and counted.

Run (about 15–25 min on a loaded 2-core CPU; one command at a time):
    python -m benchmarks.reliability_probe                 # all cases
    python -m benchmarks.reliability_probe --only D1,S5    # some
    python -m benchmarks.reliability_probe --list          # the cases, without running them

Each case runs the real command lines (``python -m experiments.cifar``, ``theory.*``,
``experiments.image_restoration``) as subprocesses in a fresh temporary folder, on tiny data
in the official formats (tests/tiny_data.py; copies of cifar10-jpeg.npz where the case alters
that file), each with a time limit, and the memory cases under ``ulimit -v``
(RLIMIT_AS, 6 GiB), so nothing is ever allocated for real. The cases themselves are in
:mod:`benchmarks.reliability_cases`. Verdicts:

- ``clear``: exit code 2 and exactly one ``error:`` line, no traceback (what bad input must get);
- ``correct``: the command did the right thing (ran, resumed, or left a finished run alone),
  checked on its files; for a signal, the one line and exit code 130/143;
- ``unclear``: a traceback, several lines, another exit code, a hang past the limit, or a
  message that does not name what the case needs named;
- ``silent``: exit 0 with a wrong result;
- ``loss``: a file that existed was changed, truncated or removed;
- ``skipped``: the case needs a file this machine lacks (cifar10-jpeg.npz: set SOPJAX_DATA_DIR).
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import os
import pathlib
import resource
import signal
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
VERDICTS = ("clear", "correct", "unclear", "silent", "loss")
MEANING = {"clear": "clear error, exit 2", "correct": "handled correctly", "unclear": "traceback or unclear",
           "silent": "silent wrong result", "loss": "data loss"}
AS_LIMIT = 6 * 1024**3


@dataclasses.dataclass
class Result:
    """One command's outcome: exit code (None: killed at the time limit), output, wall seconds."""

    rc: int | None
    out: str
    err: str
    wall: float

    @property
    def one_error_line(self) -> bool:
        lines = [x for x in self.err.splitlines() if x.startswith("error:")]
        return self.rc == 2 and len(lines) == 1 and "Traceback" not in self.err


def env(tmp: pathlib.Path) -> dict:
    """The environment of every command: the repository importable, caches inside ``tmp``, CPU."""
    e = {k: v for k, v in os.environ.items() if k not in ("SOPJAX_DATA_DIR", "SOPJAX_CACHE_DIR")}
    return {**e, "PYTHONPATH": str(REPO), "SOPJAX_CACHE_DIR": str(tmp / "cache"), "XDG_CACHE_HOME": str(tmp / "xdg"),
            "JAX_PLATFORMS": "cpu", "PYTHONUNBUFFERED": "1"}


def _limit_memory():
    resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, AS_LIMIT))


def run(argv: list, tmp: pathlib.Path, timeout: float = 300, limit_memory: bool = False) -> Result:
    """``python argv…`` in ``tmp``; killed after ``timeout`` seconds (rc None)."""
    t = time.perf_counter()
    try:
        p = subprocess.run([sys.executable, *map(str, argv)], cwd=tmp, env=env(tmp), capture_output=True, text=True,
                           timeout=timeout, preexec_fn=_limit_memory if limit_memory else None)
        return Result(p.returncode, p.stdout, p.stderr, time.perf_counter() - t)
    except subprocess.TimeoutExpired as e:
        return Result(None, str(e.stdout or ""), str(e.stderr or ""), time.perf_counter() - t)


def run_signalled(argv: list, tmp: pathlib.Path, sig: int, when: str, delay: float = 0.0,
                  timeout: float = 300) -> Result:
    """Start ``python argv…``, send ``sig`` ``delay`` s after a stdout line containing ``when``
    appears, and wait for the end (killed after ``timeout`` s)."""
    t = time.perf_counter()
    p = subprocess.Popen([sys.executable, *map(str, argv)], cwd=tmp, env=env(tmp), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    out = []
    for line in p.stdout:
        out.append(line)
        if when in line:
            time.sleep(delay)
            p.send_signal(sig)
            break
    try:
        rest, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        rest, err = p.communicate()
        return Result(None, "".join(out) + rest, err, time.perf_counter() - t)
    return Result(p.returncode, "".join(out) + rest, err, time.perf_counter() - t)


def refusal(r: Result, names: str = "", kept: bool = True) -> tuple[str, str]:
    """The verdict of a case whose right outcome is a clear refusal naming ``names`` with
    nothing changed (``kept``)."""
    first = next((x for x in r.err.splitlines() if x.startswith("error:")), r.err.strip()[-160:])
    if not kept:
        return "loss", f"exit {r.rc}; files changed. {first}"
    if r.one_error_line and names in r.err:
        return "clear", first
    if r.rc == 0:
        return "silent", "exit 0"
    return "unclear", f"exit {r.rc}, {len(r.err.splitlines())} stderr lines: {first}"


def signal_verdict(r: Result, code: int, partial: list) -> tuple[str, str]:
    """A signal's right outcome: exit ``code``, one stderr line, no partial file left."""
    lines = r.err.strip().splitlines()
    if partial:
        return "loss", f"partial files left: {partial}"
    if r.rc == code and len(lines) == 1 and "Traceback" not in r.err:
        return "correct", lines[0]
    return "unclear", f"exit {r.rc}, {len(lines)} stderr lines: {(lines or [''])[-1][:160]}"


def main(argv=None) -> int:
    from benchmarks import reliability_cases, reliability_inputs

    CASES = reliability_cases.CASES + reliability_inputs.CASES
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="", help="comma-separated case ids")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    a = ap.parse_args(argv)
    cases = [c for c in CASES if not a.only or c.id in a.only.split(",")]
    if a.list:
        print("\n".join(f"{c.id:4s} {c.group:9s} {c.what}" for c in cases))
        return 0
    rows, t0 = [], time.perf_counter()
    for c in cases:
        with tempfile.TemporaryDirectory(prefix=f"probe-{c.id}-") as d:
            t = time.perf_counter()
            try:
                verdict, note = c.check(pathlib.Path(d))
            except Exception as e:  # the probe's own failure is reported, never hidden
                verdict, note = "unclear", f"probe error: {type(e).__name__}: {e}"
        rows.append((c, verdict, note))
        print(f"{c.id:4s} {verdict:8s} {time.perf_counter() - t:5.0f} s  {c.what} — {note[:200]}", flush=True)
    report(rows, time.perf_counter() - t0)
    return 0


def report(rows, wall: float) -> None:
    print("\n| id | group | case | verdict | what happened |\n|---|---|---|---|---|")
    for c, verdict, note in rows:
        print(f"| {c.id} | {c.group} | {c.what} | {verdict} | {note[:160].replace('|', '/')} |")
    counts = collections.Counter(v for _, v, _ in rows)
    skipped = f"; {counts['skipped']} skipped" if counts["skipped"] else ""
    print(f"\n{len(rows)} cases in {wall / 60:.1f} min: " + ", ".join(f"{counts[v]} {MEANING[v]}" for v in VERDICTS)
          + skipped)
    for group in dict.fromkeys(c.group for c, _, _ in rows):
        g = collections.Counter(v for c, v, _ in rows if c.group == group)
        print(f"  {group}: " + ", ".join(f"{g[v]} {v}" for v in VERDICTS if g[v]))


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.exit(main())
