#!/usr/bin/env bash
# The GPU half of issue 6, in one command, on a machine with a CUDA GPU and PyTorch (the device
# tool's machine: carry .whl, made here by scripts/gpu_wheels.sh):
#
#   scripts/gpu_check.sh      # writes gpu.txt, gpu_tests.log, train_tests.log, train_bench.log to $OUT
#
# 1. installs the carried wheels (our core's pure-Python needs) into a private target dir;
# 2. the `gpu`-marked tests (bf16 training, LoRA over a bf16 base), then all of tests/train on this
#    machine's torch / transformers / peft;
# 3. bench/train_throughput.py on CUDA over the carried Alpaca rows (.whl/data): the tiny model,
#    a ~71M-parameter one (default settings, with cuDNN attention allowed, packed with and without
#    pack isolation) and a ~0.7B one (tokens/s, peak memory) for docs/benchmarks.md.
# Exits non-zero when a test step failed or ran no test.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-check-out}
PY=${PY:-python3}
mkdir -p "$OUT"
WHEELS=${WHEELS:-.whl}
if compgen -G "$WHEELS/*.whl" > /dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/evolagents-site "$WHEELS"/*.whl || exit 1
    export PYTHONPATH=/tmp/evolagents-site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
{
    command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    "$PY" -c "import sys, torch, transformers, peft; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'transformers', transformers.__version__, 'peft', peft.__version__, 'cuda available', torch.cuda.is_available(), 'bf16', torch.cuda.is_available() and torch.cuda.is_bf16_supported())"
} 2>&1 | tee "$OUT/gpu.txt"

status=0
run_tests() {  # LOG ARGS...: pytest, exit 5 (no test ran) counts as a failure
    local log=$1; shift
    "$PY" -m pytest -p no:cacheprovider "$@" 2>&1 | tee "$OUT/$log"
    local code=${PIPESTATUS[0]}
    if [[ $code -ne 0 ]]; then
        echo "gpu_check: pytest $* exited $code" >&2
        status=1
    fi
}
devices=cpu
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" && devices=cpu,cuda

run_tests gpu_tests.log -m gpu -rA tests/train
if [[ $devices == *cuda* ]] && grep -q "^SKIPPED" "$OUT/gpu_tests.log"; then
    echo "gpu_check: a gpu test was skipped on a machine with CUDA" >&2
    status=1
fi
run_tests train_tests.log -q tests/train
data=()
for f in "$WHEELS"/data/*.json; do [[ -f $f ]] && data=(--data "$f"); done
bench() { "$PY" bench/train_throughput.py "${data[@]}" "$@" || failed=1; }
{  # a subshell (the pipeline): its exit status carries the failures out
    failed=0
    bench --devices "$devices"
    if [[ $devices == *cuda* ]]; then
        mid=(--devices cuda --hidden-size 768 --layers 12 --max-length 1024 --batch-size 8 --steps 30)
        bench "${mid[@]}"
        bench "${mid[@]}" --cudnn-attention
        bench "${mid[@]}" --batching packed                  # isolated packs (the default)
        bench "${mid[@]}" --batching packed --shared-packs   # what the mask costs
        bench --devices cuda --hidden-size 2048 --layers 16 --max-length 2048 --batch-size 16 \
            --steps 20
    fi
    exit $failed
} 2>&1 | tee "$OUT/train_bench.log"
[[ ${PIPESTATUS[0]} -eq 0 ]] || status=1
exit $status
