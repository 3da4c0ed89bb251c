"""What every command-line entry point shares: one-line errors with exit code 2, a
traceback only with ``--debug``, exit code 130 on Ctrl-C."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import threading
import traceback

from sopjax.infra.errors import DataError, TrainingDiverged

# Errors of bad input or of the machine (disk, permissions): exit code 2 with one line.
EXPECTED_ERRORS = (ValueError, DataError, TrainingDiverged, OSError)


class OneLineParser(argparse.ArgumentParser):
    """argparse whose error is one line (its usage of ~40 flags would bury the message)."""

    def error(self, message):
        print(f"error: {message} (see --help)", file=sys.stderr)
        raise SystemExit(2)


def error_line(e: BaseException) -> str:
    """One line for ``e``: its message, or for an unexpected error where to get the traceback."""
    if isinstance(e, OSError) and e.strerror:
        where = f" ({e.filename})" if e.filename else ""
        msg = (f"{e.strerror}{where}; free disk space or fix permissions, then re-run the same command "
               "(it resumes from the last finished epoch)")
    elif isinstance(e, EXPECTED_ERRORS):
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "RESOURCE_EXHAUSTED" in msg or "No space left" in msg:  # orbax/TensorStore's disk-full error
            msg += "; free disk space, then re-run the same command (it resumes from the last finished epoch)"
    else:
        msg = f"internal error ({type(e).__name__}: {e}); re-run with --debug for the traceback and report it"
    return "error: " + " ".join(msg.split())[:1000]


@contextlib.contextmanager
def quiet_background_errors(enabled: bool):
    """Orbax's writer threads log and print their own tracebacks when a save fails (~100
    lines for a full disk); the main thread reports the same error in one line. Restored after
    a success only: after an error those threads print while the process exits."""
    # TensorStore's C++ callbacks print "Event loop is closed" through sys.excepthook / unraisablehook.
    absl, hooks = logging.getLogger("absl"), (threading.excepthook, sys.excepthook, sys.unraisablehook)
    level = absl.level
    if enabled:
        absl.setLevel(logging.CRITICAL)
        threading.excepthook = sys.excepthook = sys.unraisablehook = lambda *a: None
    yield
    absl.setLevel(level)
    threading.excepthook, sys.excepthook, sys.unraisablehook = hooks


def main(parser: argparse.ArgumentParser, run, argv=None, interrupted: str = "interrupted") -> int:
    """Parse ``argv`` with ``parser`` and call ``run(args)``: its return code on success, 2 with
    one line on bad input or a machine error, 1 on a bug (``--debug`` shows the traceback),
    130 when interrupted (``interrupted`` is the line printed then)."""
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, or a bad flag (already reported in one line)
        return e.code if isinstance(e.code, int) else 2
    try:
        with quiet_background_errors(not args.debug):
            return run(args)
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(interrupted, file=sys.stderr)
        return 130
    except Exception as e:
        if args.debug:
            raise
        print(error_line(e), file=sys.stderr)
        return 2 if isinstance(e, EXPECTED_ERRORS) else 1


def guarded(run, args, errors=(ValueError, OSError)) -> int:
    """``run(args)``; an error of ``errors`` (bad input, an output folder that cannot be
    written) prints one ``error:`` line and returns 2, with the traceback only when
    ``args.debug`` is set. Other exceptions propagate: they are bugs, not bad input."""
    try:
        return run(args)
    except errors as e:
        if getattr(args, "debug", False):
            traceback.print_exc()
        print(f"error: {e}", file=sys.stderr)
        return 2
