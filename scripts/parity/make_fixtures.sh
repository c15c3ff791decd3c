#!/usr/bin/env bash
# Re-make the committed parity fixtures tests/data/parity/FAMILY.{json,npz} (read by tests/test_parity_fixtures.py)
# from the reference code itself (msclap 1.3.4, laion_clap 1.1.7) in the side venv:
#   SIDE_VENV=/path/to/sidevenv bash scripts/parity/make_fixtures.sh [FAMILY ...]
# Each family runs parity.sh (inputs from tests/data, the reference model from seeded random weights, the full
# openclap check against its checkpoint), then writes the fixture only if that check passed.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/../.." && pwd)"
export PARITY_FIXTURES="${PARITY_FIXTURES:-$REPO/tests/data/parity}"
exec bash "$REPO/scripts/parity/parity.sh" "$@"
