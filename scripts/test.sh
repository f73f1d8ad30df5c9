#!/usr/bin/env bash
# Set up the environment if needed, then run the whole test suite (unit tests on tiny random
# models plus a few end-to-end tests with the real offline models). Extra arguments go to pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# The tests cover the llama.cpp generation backend too, so its package is set up as well.
RANKCSE_SETUP_GENERATION=1 bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec .venv/bin/python -m pytest "$@"
