"""How much memory a job may still take, and the check that refuses a size that will not fit.

A grid or image size that does not fit used to grow until the kernel killed the process
(no message) or Python raised MemoryError deep in a solver. The CLIs estimate what a size
needs before any work and refuse, with both numbers, what the machine cannot give.
"""

from __future__ import annotations

import os
import pathlib
import resource

from sopjax.infra.errors import RunDirError

GIB = 1024**3


class TooLarge(RunDirError):
    """A size whose memory estimate exceeds what is available (a ValueError: exit code 2)."""


def _meminfo_available() -> int | None:
    """MemAvailable of /proc/meminfo in bytes (Linux), else physical pages × page size."""
    try:
        for line in pathlib.Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None


def _cgroup_headroom() -> int | None:
    """memory.max − memory.current of this process's cgroup (v2), when it has a limit."""
    try:
        rel = pathlib.Path("/proc/self/cgroup").read_text().strip().splitlines()[0].split(":", 2)[2]
        d = pathlib.Path("/sys/fs/cgroup") / rel.lstrip("/")
        limit = (d / "memory.max").read_text().strip()
        if limit == "max":
            return None
        return int(limit) - int((d / "memory.current").read_text())
    except (OSError, ValueError, IndexError):
        return None


def _address_space_headroom() -> int | None:
    """The soft RLIMIT_AS (``ulimit -v``) minus this process's current virtual size."""
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        used = int(pathlib.Path("/proc/self/statm").read_text().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        used = 0
    return soft - used


def available() -> tuple[int | None, str]:
    """(bytes this process may still allocate, where the figure comes from): the least of
    the available RAM, the cgroup's headroom and the ``ulimit -v`` headroom; None if unknown."""
    found = [(v, name) for v, name in ((_meminfo_available(), "available RAM (/proc/meminfo MemAvailable)"),
                                       (_cgroup_headroom(), "the cgroup's memory.max headroom"),
                                       (_address_space_headroom(), "the ulimit -v headroom"))
             if v is not None]
    return min(found) if found else (None, "unknown")


def fmt(n: float) -> str:
    """Bytes as GiB (or MiB below 1 GiB), e.g. '22.1 GiB'."""
    return f"{n / GIB:.1f} GiB" if n >= GIB else f"{n / 1024**2:.0f} MiB"


def device_available() -> tuple[int | None, str]:
    """(bytes free on the first accelerator, its name) from JAX's memory statistics; None on
    a CPU (its memory is :func:`available`) or when the backend reports none."""
    import jax  # only here: the theory CLIs import this module for host memory alone

    dev = jax.local_devices()[0]
    stats = dev.memory_stats() if dev.platform != "cpu" else None
    if not stats or "bytes_limit" not in stats:
        return None, "unknown"
    return stats["bytes_limit"] - stats.get("bytes_in_use", 0), f"free memory of {dev.device_kind}"


def check_fits(need: float, what: str, fix: str, device: bool = False) -> None:
    """Raise :class:`TooLarge` naming ``what``, the estimate ``need`` (bytes), the memory
    available and ``fix`` when ``need`` exceeds it; ``device``: compare with the
    accelerator's free memory (the host's on a CPU). Does nothing when the available memory
    cannot be read."""
    have, where = device_available() if device else (None, "")
    if have is None:
        have, where = available()
    if have is not None and need > have:
        raise TooLarge(f"{what} needs about {fmt(need)} of memory, but only {fmt(max(have, 0))} is available "
                       f"({where}); {fix}")
