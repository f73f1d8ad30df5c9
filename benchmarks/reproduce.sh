#!/usr/bin/env bash
# Rerun the reproduction report (RESULTS.md): set-up, then every training run and evaluation that
# has no result yet, then the tables and the plot. Interrupt it at any time; rerunning continues.
# Arguments go to benchmarks/reproduce.py (e.g. --stage sts, --dry_run, --groups lr omega).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" TOKENIZERS_PARALLELISM=false
exec .venv/bin/python benchmarks/reproduce.py "$@"
