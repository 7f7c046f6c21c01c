#!/usr/bin/env bash
# The one command for a lent GPU:  bash bench/device/run.sh [extra device_bench.py flags]
# Writes device_bench.json, device_bench.png and device_bench.log under $OUT (./out-device when OUT is unset).
# The device image's own python3 is used (PyTorch, cuda-bindings); the repo is not installed there, so the script
# maps the ghostrt namespace onto the working tree itself. A hard timeout backs up the script's own budget.
set -uo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT_DIR="${OUT:-$PWD/out-device}"
BUDGET_S="${DEVICE_BENCH_BUDGET_S:-300}"        # sections stop starting/repeating after this
LIMIT_S="${DEVICE_BENCH_LIMIT_S:-360}"          # hard kill; keep under the device call's timeout_s
PYTHON="${DEVICE_BENCH_PYTHON:-python3}"        # not $PYTHON: make exports that one
mkdir -p "$OUT_DIR"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
echo "device_bench: out=$OUT_DIR budget=${BUDGET_S}s limit=${LIMIT_S}s python=$(command -v "$PYTHON")"
timeout -k 10 "$LIMIT_S" "$PYTHON" "$REPO/bench/device/device_bench.py" --out "$OUT_DIR" --budget-s "$BUDGET_S" "$@" \
    2>&1 | tee "$OUT_DIR/device_bench.log"
rc=${PIPESTATUS[0]}
if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    echo "device_bench: killed at ${LIMIT_S}s; device_bench.json holds the sections that finished"
fi
exit "$rc"
