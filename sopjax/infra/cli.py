"""What every command-line entry point shares: one-line errors with exit code 2, a
traceback only with ``--debug``, exit code 130 on Ctrl-C and 143 on SIGTERM (one line each)."""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import os
import signal
import sys
import threading
import traceback
import warnings

from sopjax.infra.errors import DataError, TrainingDiverged

# Errors of bad input or of the machine (disk, permissions, memory): exit code 2 with one line.
EXPECTED_ERRORS = (ValueError, DataError, TrainingDiverged, OSError, MemoryError)
RESUMES = " (it resumes from the last finished epoch)"


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that the same clean-up runs as for Ctrl-C."""


class OneLineParser(argparse.ArgumentParser):
    """argparse whose error is one line (its usage of ~40 flags would bury the message)."""

    def error(self, message):
        print(f"error: {message} (see --help)", file=sys.stderr)
        raise SystemExit(2)


def _os_error(e: OSError, rerun: str) -> str:
    where = f" ({e.filename})" if e.filename else ""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"{e.strerror}{where}; free disk space, then re-run the same command{rerun}"
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"{e.strerror}{where}; fix the permissions, then re-run the same command{rerun}"
    return f"{e.strerror}{where}; check that path, then re-run the same command{rerun}"


def error_line(e: BaseException, rerun: str = RESUMES) -> str:
    """One line for ``e``: its message, or for an unexpected error where to get the traceback.
    ``rerun``: what re-running the command does, appended to the advice of a machine error."""
    if isinstance(e, OSError) and e.strerror:
        msg = _os_error(e, rerun)
    elif isinstance(e, MemoryError):
        msg = (f"out of memory ({type(e).__name__}: {e}); lower the size (--n, --size, --image-size, --batch-size) "
               "or free memory, then re-run")
    elif isinstance(e, EXPECTED_ERRORS):
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "RESOURCE_EXHAUSTED" in msg or "No space left" in msg:  # orbax/TensorStore's disk-full error
            msg += f"; free disk space, then re-run the same command{rerun}"
    else:
        msg = f"internal error ({type(e).__name__}: {e}); re-run with --debug for the traceback and report it"
    return "error: " + " ".join(msg.split())[:1000]


@contextlib.contextmanager
def signals_raise():
    """Inside, SIGTERM raises :class:`Terminated` and Ctrl-C KeyboardInterrupt in the main
    thread (Python's default for SIGTERM is to die at once, silently, skipping every clean-up).
    Code that catches everything can swallow either exception; then it is raised again when
    the block ends, so the command still stops with its one line. Elsewhere than the main
    thread: no change."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []

    def handler(signum, frame):
        received.append(signum)
        raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()
    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)
    if received:  # swallowed on the way (a bare ``except:`` in a library): stop all the same
        raise Terminated() if signal.SIGTERM in received else KeyboardInterrupt()


def interrupted_code(e: KeyboardInterrupt, line: str) -> int:
    """Print the one line of an interruption; 143 for SIGTERM, 130 for Ctrl-C."""
    term = isinstance(e, Terminated)
    print(f"{'terminated (SIGTERM)' if term else 'interrupted (Ctrl-C)'}; {line}", file=sys.stderr, flush=True)
    return 143 if term else 130


def exit(code: int) -> None:
    """End the process with ``code`` (a ``__main__``'s last call). After an interruption (130,
    143) skip the interpreter's teardown: with XLA or a solver stopped mid-call it can crash
    (SIGSEGV) after the one line was printed; every file is whole by then (written through a
    rename, temporary files removed as the interruption unwound)."""
    sys.stdout.flush()
    sys.stderr.flush()
    if code in (130, 143):
        os._exit(code)
    sys.exit(code)


@contextlib.contextmanager
def quiet_background_errors(enabled: bool):
    """Orbax's writer threads log and print their own tracebacks when a save fails (~100
    lines for a full disk), and an interrupted save warns about its coroutines; the main thread
    reports the same error in one line. Restored after a success only (the warning filter
    stays): after an error those threads print while the process exits."""
    # TensorStore's C++ callbacks print "Event loop is closed" through sys.excepthook / unraisablehook.
    absl, hooks = logging.getLogger("absl"), (threading.excepthook, sys.excepthook, sys.unraisablehook)
    level = absl.level
    if enabled:
        absl.setLevel(logging.CRITICAL)
        threading.excepthook = sys.excepthook = sys.unraisablehook = lambda *a: None
        # A Ctrl-C inside orbax's asyncio save leaves coroutines never awaited; Python warns
        # about each (~7 lines) under the one line that says what happened.
        warnings.filterwarnings("ignore", message="coroutine .* was never awaited", category=RuntimeWarning)
    yield
    absl.setLevel(level)
    threading.excepthook, sys.excepthook, sys.unraisablehook = hooks


def main(parser: argparse.ArgumentParser, run, argv=None,
         interrupted: str = "re-run the same command to resume from the last finished epoch") -> int:
    """Parse ``argv`` with ``parser`` and call ``run(args)``: its return code on success, 2 with
    one line on bad input or a machine error, 1 on a bug (``--debug`` shows the traceback),
    130 on Ctrl-C and 143 on SIGTERM (one line ending with ``interrupted``)."""
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, or a bad flag (already reported in one line)
        return e.code if isinstance(e.code, int) else 2
    try:
        with quiet_background_errors(not args.debug), signals_raise():
            return run(args)
    except KeyboardInterrupt as e:
        if args.debug:
            raise
        return interrupted_code(e, interrupted)
    except Exception as e:
        if args.debug:
            raise
        print(error_line(e), file=sys.stderr)
        return 2 if isinstance(e, EXPECTED_ERRORS) else 1


def guarded(run, args, errors=(ValueError, OSError),
            interrupted: str = "nothing was half-written; re-run the same command") -> int:
    """``run(args)``; an error of ``errors`` (bad input, an output folder that cannot be
    written) or MemoryError prints one ``error:`` line and returns 2, with the traceback only
    when ``args.debug`` is set; Ctrl-C returns 130 and SIGTERM 143, each with one line. Other
    exceptions propagate: they are bugs, not bad input."""
    debug = getattr(args, "debug", False)
    try:
        with signals_raise():
            return run(args)
    except KeyboardInterrupt as e:
        if debug:
            raise
        return interrupted_code(e, interrupted)
    except (*errors, MemoryError) as e:
        if debug:
            traceback.print_exc()
        print(error_line(e, rerun=""), file=sys.stderr)
        return 2
