"""Shared pytest fixtures (generic ones only; append yours below)."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real-audio corpus at ``../shared/data`` (esc10/, fsdd/, instruments/); skips if missing."""
    if not (SHARED_DATA / "esc10" / "audio").is_dir():
        pytest.skip(f"real-audio data not found at {SHARED_DATA}")
    return SHARED_DATA
