"""One line saying which machine a benchmark ran on: the numbers depend on it (a CPU with AMX runs
bfloat16 matrix products several times faster than float32; one without runs them far slower)."""

from __future__ import annotations

import os
import platform

import torch

from openclap.hardware import cpu_flags, cpu_model


def cpu_features() -> str:
    """The extensions that decide which precision is fast here: torch's dispatch level (DEFAULT, AVX2,
    AVX512) and whether the CPU reports AVX-512 VNNI/BF16 and AMX."""
    flags = set(cpu_flags())
    extras = [name for name in ("avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8") if name in flags]
    level = torch.backends.cpu.get_cpu_capability()
    return f"{level}" + (f" + {', '.join(extras)}" if extras else " (no AVX-512 VNNI/BF16, no AMX)")


def machine_line() -> str:
    """``machine: <arch> <cpu>, <features>, <cores> cores, <RAM> GiB, torch <version>, threads <n>,
    load average <x>``."""
    memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 1024**3
    return (
        f"machine: {platform.machine()} {cpu_model()}, {cpu_features()}, {os.cpu_count()} cores, "
        f"{memory:.0f} GiB, torch {torch.__version__}, threads {torch.get_num_threads()}, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
