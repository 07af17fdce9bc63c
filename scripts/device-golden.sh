#!/usr/bin/env bash
# Runs on the GPU machine (see README "Development"): builds the addon with
# CUDA, runs the GPU tests, regenerates the tiny checkpoint with the same
# generator the tests use, and writes the transformers golden files to
# $OUT/golden (fetch them back into test/fixtures/golden).
#   carry: .devicebundle dist
set -uo pipefail
source .devicebundle/activate
export REX_OMNI_BUILD_JOBS=16
out="${OUT:-/tmp/out}"; mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
python3 -c 'import torch, transformers, PIL; print("torch", torch.__version__, "transformers", transformers.__version__, "Pillow", PIL.__version__)' | tee -a "$out/gpu.txt"

node dist/test/fixtures/tiny-checkpoint-cli.js /tmp/tiny | tee -a "$out/gpu.txt"
mkdir -p test/fixtures/golden
PYTHONUNBUFFERED=1 python3 test/golden/make_golden.py --checkpoint /tmp/tiny --images test/fixtures/images \
  --fixtures test/fixtures/images --out test/fixtures/golden 2>&1 | tee "$out/golden.log" | tail -40
tar -czf "$out/golden.tgz" test/fixtures/golden test/fixtures/images 2>/dev/null

# dist/ (compiled TypeScript) is carried: typescript is left out of the bundle.
node scripts/build-native.mjs --force > "$out/build.log" 2>&1; echo "native build exit $?" | tee -a "$out/gpu.txt"
tail -3 "$out/build.log"

npm run test:gpu 2>&1 | tail -15 | tee -a "$out/gpu.txt"
