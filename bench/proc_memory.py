"""Resident memory of a process, read from /proc (shared by the benchmarks)."""

from __future__ import annotations


def memory_mib(field: str, pid: int | str = "self") -> float:
    """``VmRSS`` (resident now) or ``VmHWM`` (peak resident) of a process, in MiB; NaN if the
    process is gone.

    ``VmHWM`` starts afresh at exec; ``getrusage().ru_maxrss`` would carry over the parent's
    resident size at fork time into a spawned child.
    """
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")
