"""Memory of a process as Linux counts it for its address space: VmRSS (now) and VmHWM (peak).

Not ``resource.getrusage(...).ru_maxrss``: Linux keeps that peak across fork and exec, so a child started
by a process holding 5 GB reports at least 5 GB however little it uses itself (and ``RUSAGE_CHILDREN``
reports that too). VmHWM belongs to the address space, which exec replaces. Standard library only: the
msclap side venv imports this as well. Linux only (``/proc``); elsewhere the readers raise.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path


def rss_mb(pid: int | str = "self") -> tuple[float, float]:
    """(VmRSS, VmHWM) of process ``pid`` (default: this one) in MB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def peak_rss_mb(pid: int | str = "self") -> float:
    """Peak resident memory (VmHWM) of process ``pid`` so far, MB."""
    return rss_mb(pid)[1]


def reset_peak(pid: int | str = "self") -> None:
    """Reset VmHWM to the current RSS (Linux: write 5 to clear_refs)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def _descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (Linux: /proc/PID/task/*/children)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                todo.extend(int(child) for child in task.read_text().split())
            except OSError:  # the task ended meanwhile
                pass
    return found


def wait_peak_rss_mb(proc: subprocess.Popen, interval: float = 0.05) -> float:
    """Wait for ``proc`` to exit; the largest VmHWM of it and its worker processes, read every ``interval``
    seconds while they run (a peak reached in a process's last ``interval`` can be missed), MB."""
    peaks: dict[int, float] = {}
    while proc.poll() is None:
        try:
            pids = _descendants(proc.pid)
        except OSError:  # exiting
            pids = []
        for pid in pids:
            try:
                peaks[pid] = peak_rss_mb(pid)
            except (OSError, KeyError, IndexError):  # exiting: its address space (and VmHWM) is gone
                pass
        time.sleep(interval)
    return max(peaks.values(), default=float("nan"))
