"""Parity with the reference implementations (msclap 1.3.4, laion_clap 1.1.7) on identical random weights.

Slow and opt-in (`pytest -m slow tests/test_convert_parity.py`): runs scripts/parity/parity.sh, which needs
the side venv built by scripts/parity/setup_sidevenv.sh (skipped when it is missing). Each family builds a
full-size random model with the reference classes, saves it in the official checkpoint format, and checks
openclap's embeddings of real clips (tests/data) and texts from that file: min cosine >= 0.99999, max abs
diff <= 1e-4. The default suite compares against fixtures this code wrote (tests/test_parity_fixtures.py).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SIDE_VENV = Path(os.environ.get("SIDE_VENV", REPO / ".sidevenv"))


@pytest.mark.slow
@pytest.mark.parametrize("family", ["msclap-2023", "msclap-2022", "laion", "laion-fusion"])
def test_reference_parity(family: str, tmp_path: Path) -> None:
    if not (SIDE_VENV / "bin" / "python").is_file():
        pytest.skip(f"side venv {SIDE_VENV} missing: run scripts/parity/setup_sidevenv.sh")
    env = {**os.environ, "PARITY_WORK": str(tmp_path), "SIDE_VENV": str(SIDE_VENV)}
    proc = subprocess.run(
        ["bash", str(REPO / "scripts" / "parity" / "parity.sh"), family],
        env=env, capture_output=True,
        check=False, text=True, timeout=3000,
    )  # fmt: skip
    print(proc.stdout[-3000:])
    result_file = tmp_path / family / "result.json"
    assert result_file.is_file(), proc.stderr[-3000:]
    result = json.loads(result_file.read_text())
    assert result["token_ids_equal"]
    assert result["audio_min_cosine"] >= 0.99999 and result["text_min_cosine"] >= 0.99999
    assert result["audio_max_abs_diff"] <= 1e-4 and result["text_max_abs_diff"] <= 1e-4
    assert proc.returncode == 0
