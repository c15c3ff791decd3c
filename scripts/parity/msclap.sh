#!/usr/bin/env bash
# msclap 2022/2023 parity (see parity.sh).
exec bash "$(dirname "$0")/parity.sh" msclap-2023 msclap-2022
