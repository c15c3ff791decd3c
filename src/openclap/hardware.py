"""What this machine's CPU is and which vector/matrix extensions it reports (Linux ``/proc/cpuinfo``).

Compiled packages are keyed by the flags (``openclap.compiled``), and benchmarks print them: bfloat16 is
about twice as fast as float32 on a CPU with AMX and several times slower on one without native bf16.
"""

from __future__ import annotations

import platform

CPUINFO = "/proc/cpuinfo"


def _cpuinfo_field(name: str) -> str | None:
    """The value of the first ``name`` line of /proc/cpuinfo, or None where there is no such file/line."""
    try:
        with open(CPUINFO) as f:
            for line in f:
                if line.startswith(name):
                    return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def cpu_flags() -> list[str]:
    """The CPU's feature flags in /proc/cpuinfo's order (``avx2``, ``avx512_bf16``, ``amx_int8``, ...);
    empty where the system does not say (not Linux)."""
    return (_cpuinfo_field("flags") or "").split()


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), else what ``platform`` knows."""
    return _cpuinfo_field("model name") or platform.processor() or platform.machine()
