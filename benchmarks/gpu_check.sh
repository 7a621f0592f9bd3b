#!/usr/bin/env bash
# One command on a machine with an NVIDIA GPU: install streamer with its TensorRT extra (PyPI only), run
# every backend-equivalence test there (GPU-marked and slow ones included), and time eager / compile /
# tensorrt fp32 / tensorrt fp16 at batch 1..256.
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]      # default: $OUT if set, else ./gpu_check_out
#
# Environment: PYTHON (default python3, >= 3.11), VENV (default .venv-gpu in the repo), BATCHES,
# CHUNKS (timed steps per row, default 100), MODEL (a model folder; default: shipped en-es, else the
# default-size config with random weights). Writes to OUT_DIR: nvidia-smi.txt, versions.txt,
# pip-install.log, tests.log, tests.xml (JUnit), backends.json, backends.md. Exit status: non-zero
# when the install or a test fails (the timing still runs after failed tests).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT_DIR="${1:-${OUT:-$PWD/gpu_check_out}}"
mkdir -p "$OUT_DIR" && OUT_DIR="$(cd "$OUT_DIR" && pwd)"
PYTHON="${PYTHON:-python3}"
VENV="${VENV:-$ROOT/.venv-gpu}"
BATCHES="${BATCHES:-1,2,4,8,16,32,64,128,256}"
CHUNKS="${CHUNKS:-100}"
CACHE="${STREAMER_CACHE:-$HOME/.cache/streamer}"
status=0

log() { printf '[gpu_check] %s\n' "$*" | tee -a "$OUT_DIR/gpu_check.log"; }

if ! nvidia-smi > "$OUT_DIR/nvidia-smi.txt" 2>&1; then
    log "nvidia-smi failed: this script needs a machine with an NVIDIA GPU and its driver"
    exit 2
fi
log "GPU: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | head -1)"

log "creating $VENV and installing -e .[dev,tensorrt] from PyPI (log: pip-install.log)"
if ! { "$PYTHON" -m venv "$VENV" \
       && "$VENV/bin/python" -m pip install --upgrade pip \
       && "$VENV/bin/python" -m pip install --index-url https://pypi.org/simple -e "$ROOT[dev,tensorrt]"; } \
       > "$OUT_DIR/pip-install.log" 2>&1; then
    log "install failed; see $OUT_DIR/pip-install.log"
    tail -n 30 "$OUT_DIR/pip-install.log"
    exit 3
fi
PY="$VENV/bin/python"

"$PY" - > "$OUT_DIR/versions.txt" 2>&1 <<'EOF'
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
print("gpu", torch.cuda.get_device_name() if torch.cuda.is_available() else None)
for name in ("torch_tensorrt", "tensorrt", "onnxruntime", "onnx"):
    try:
        print(name, __import__(name).__version__)
    except Exception as exc:  # report, do not stop
        print(name, "unavailable:", exc)
from streamer.engine import available_backends
print("available_backends", available_backends())
EOF
log "$(tr '\n' ';' < "$OUT_DIR/versions.txt")"

log "backend-equivalence tests: pytest tests/engine -m 'not mic' (gpu and slow included; log: tests.log)"
(cd "$ROOT" && STREAMER_SLOW_TESTS=1 STREAMER_CACHE="$CACHE" "$PY" -m pytest tests/engine -m "not mic" -rs -v \
    --junitxml="$OUT_DIR/tests.xml" -p no:cacheprovider) > "$OUT_DIR/tests.log" 2>&1 || status=1
tail -n 5 "$OUT_DIR/tests.log" | tee -a "$OUT_DIR/gpu_check.log"
if grep -q "backend 'tensorrt' is not usable" "$OUT_DIR/tests.log"; then
    log "WARNING: TensorRT tests were skipped (see tests.log): the GPU check did not test TensorRT"
    status=1
fi

log "timing eager / compile / tensorrt / tensorrt-fp16 at batch $BATCHES on cuda"
MODEL_ARGS=()
if [ -n "${MODEL:-}" ]; then MODEL_ARGS=(--model "$MODEL"); fi
(cd "$ROOT" && "$PY" benchmarks/backends.py --device cuda --backends eager,compile,tensorrt,tensorrt-fp16 \
    --batches "$BATCHES" --chunks "$CHUNKS" --warmup 20 --threads 1 --cache-dir "$CACHE" --out "$OUT_DIR" \
    --no-progress ${MODEL_ARGS[@]+"${MODEL_ARGS[@]}"}) > "$OUT_DIR/bench.log" 2>&1 || status=1
tail -n 40 "$OUT_DIR/bench.log"

log "done (status $status); results in $OUT_DIR"
exit "$status"
