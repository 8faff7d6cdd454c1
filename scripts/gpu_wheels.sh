#!/usr/bin/env bash
# Download, here, the wheels the GPU machine lacks, for its Python (3.12, x86-64 manylinux), into
# .whl/ (git-ignored). The GPU image already holds torch, transformers, peft, accelerate, pytest,
# anyio, aiohttp and rich; what our core needs beyond them travels as wheels (no network there).
#
#   scripts/gpu_wheels.sh            # then: the device run carries .whl and calls scripts/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
PYVER=${PYVER:-3.12}   # the GPU image's Python
DEST=${DEST:-.whl}
mkdir -p "$DEST"
# name==version pairs, taken from this environment so the GPU run tests what CI tests
# (the openai / anthropic SDK backends are imported only when a config names them)
want=(pydantic pydantic_core annotated-types typing-inspection structlog pytest-asyncio)
pins=()
for name in "${want[@]}"; do
    version=$("$PY" -m pip show "$name" 2>/dev/null | awk '/^Version:/{print $2}')
    if [[ -z "$version" ]]; then
        echo "gpu_wheels: $name is not installed in $PY (run scripts/setup.sh --dev first)" >&2
        exit 2
    fi
    pins+=("$name==$version")
done
platforms=()
for tag in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 \
           manylinux2014_x86_64 manylinux1_x86_64; do
    platforms+=(--platform "$tag")
done
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" \
    --implementation cp "${platforms[@]}" -d "$DEST" "${pins[@]}" 2> >(grep -v "is ignored" >&2)
# the training bench's rows (the GPU machine has no ../shared); never committed: .whl is ignored
ALPACA=${ALPACA:-../shared/data/alpaca_data_subset5000_pr152.json}
if [[ -f $ALPACA ]]; then
    mkdir -p "$DEST/data"
    cp "$ALPACA" "$DEST/data/"
fi
ls -1R "$DEST"
du -sh "$DEST"
