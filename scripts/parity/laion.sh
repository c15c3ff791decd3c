#!/usr/bin/env bash
# LAION-CLAP HTSAT-tiny + RoBERTa parity, fusion off and on (see parity.sh).
exec bash "$(dirname "$0")/parity.sh" laion laion-fusion
