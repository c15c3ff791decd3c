"""Helpers for the tests that start real gloo process groups: a free loopback port, two processes under torchrun."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (for a process group's rendezvous)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_env() -> dict[str, str]:
    """This environment without a surrounding launcher's WORLD_SIZE/RANK, unbuffered."""
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_two_processes(
    module: str, config: Path, run_dir: Path, timeout: float
) -> subprocess.CompletedProcess:
    """``torchrun --nproc_per_node 2 -m MODULE CONFIG --run-dir RUN_DIR`` on loopback; output captured."""
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
        "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
        "-m", module, str(config), "--run-dir", str(run_dir),
    ]  # fmt: skip
    return subprocess.run(
        cmd, env=torchrun_env(), check=False, capture_output=True, text=True, timeout=timeout
    )
