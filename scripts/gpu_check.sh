#!/usr/bin/env bash
# The GPU checks, as one call on a lent GPU machine (its Python has torch; the project's other
# packages come as wheels in .whl/, which scripts/gpu_wheels.txt lists: `pip download --no-deps
# --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 -d .whl NAME==VERSION` for each).
set -uo pipefail
OUT=${OUT:-/tmp/gpu_out}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
mkdir -p /tmp/bin && printf '#!/bin/sh\nexec python3 -m stages.cli "$@"\n' > /tmp/bin/gan && chmod +x /tmp/bin/gan
export PYTHONPATH=/tmp/site:$PWD PATH=/tmp/bin:/tmp/site/bin:$PATH MLFLOW_DISABLE_TELEMETRY=true DVC_NO_ANALYTICS=1 PYTHONUNBUFFERED=1
git config --global user.email gpu@example.com; git config --global user.name gpu
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, mlflow, dvc, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'mlflow', mlflow.__version__, 'dvc', dvc.__version__, torch.cuda.get_device_name())" | tee -a "$OUT/gpu.txt"
start=$(date +%s)
timeout "${TEST_S:-240}" python3 -m pytest -m cuda -q -p no:cacheprovider -o addopts="-ra --durations=8" 2>&1 | tee "$OUT/cuda_tests.log" | tail -25
echo "cuda tests: $(( $(date +%s) - start )) s"
start=$(date +%s)
timeout "${BENCH_S:-300}" python3 -m stages.cli bench --device cuda ${BENCH_ARGS:-} 2>&1 | grep -v "^20[0-9][0-9]/" | tee "$OUT/bench.txt"
for arch in resize r3gan; do  # the modern nets beside the lecture's: where a step's time goes
  timeout "${PROFILE_S:-60}" python3 -m stages.cli bench --device cuda --profile --arch $arch 2>&1 | tee -a "$OUT/bench.txt"
done
echo "bench: $(( $(date +%s) - start )) s"
