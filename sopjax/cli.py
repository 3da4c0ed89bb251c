"""The one way a command-line entry point turns an expected error into exit code 2."""

from __future__ import annotations

import sys
import traceback


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
