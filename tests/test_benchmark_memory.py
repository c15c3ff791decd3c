"""The benchmarks' memory readers (benchmarks/_memory.py) report a process's own peak, not its parent's.

Linux keeps ``ru_maxrss`` across fork and exec: a child started by a process holding hundreds of MB used
to report the parent's peak as its own (embed_throughput's per-option rows, msclap's side process, the
long-file check). VmHWM does not carry over.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _memory_module():
    spec = importlib.util.spec_from_file_location("_memory", BENCHMARKS / "_memory.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CHILD = """
import sys, time, numpy as np
block = np.ones(int(sys.argv[1]) * 2**20 // 8)  # touched: resident
time.sleep(0.5)
"""


def test_child_peak_is_its_own_not_the_parents() -> None:
    memory = _memory_module()
    held = np.ones(600 * 2**20 // 8)  # this process now holds 600 MB more
    assert memory.peak_rss_mb() >= 600 and memory.rss_mb()[0] >= 600
    # one after the other: wait_peak_rss_mb samples only while it waits, so a child started beside another
    # could exit, unsampled, while the first is being watched (nan)
    small = subprocess.Popen([sys.executable, "-c", CHILD, "50"])
    small_peak = memory.wait_peak_rss_mb(small)
    large = subprocess.Popen([sys.executable, "-c", CHILD, "250"])
    large_peak = memory.wait_peak_rss_mb(large)
    assert small.returncode == 0 and large.returncode == 0
    # python + numpy is ~30 MB here: each child's peak is its block plus that, far from the parent's 600+
    assert 50 <= small_peak < 150, small_peak
    assert 250 <= large_peak < 350, large_peak
    del held


def test_worker_processes_count() -> None:
    """A job's peak includes its workers: a parent of 20 MB whose worker holds 200 MB reports >= 200."""
    memory = _memory_module()
    parent = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {CHILD!r}, '200'], check=True)"
    proc = subprocess.Popen([sys.executable, "-c", parent])
    peak = memory.wait_peak_rss_mb(proc)
    assert proc.returncode == 0 and 200 <= peak < 300, peak
