#!/usr/bin/env bash
# A/B of the GEMV's weight-load instruction (REX_GEMV_LOAD in native/cuda/gemv.cu)
# on the device, in one call: builds cuda_gemv_test once, then relinks it with
# gemv.cu compiled for each variant and runs its timing case alone.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/rex-omni-device}
mkdir -p "$OUT"
cmake -S . -B build/native-ab -G Ninja -DREX_BUILD_ADDON=OFF -DCMAKE_BUILD_TYPE=Release > "$OUT/ab-cfg.log" 2>&1
cmake --build build/native-ab -j 16 --target cuda_gemv_test > "$OUT/ab-build.log" 2>&1 || { tail -30 "$OUT/ab-build.log"; exit 1; }
link=$(cd build/native-ab && ninja -t commands cuda_gemv_test | tail -1)
for v in 0 1 2 3; do
  nvcc -std=c++17 -O3 -gencode=arch=compute_90a,code=sm_90a --expt-relaxed-constexpr -Inative/include -Inative \
    -DREX_GEMV_LOAD=$v -c native/cuda/gemv.cu -o build/native-ab/gemv_v$v.o || exit 1
  (cd build/native-ab && eval "${link/ -o cuda_gemv_test / -o cuda_gemv_test_v$v gemv_v$v.o }") || exit 1
  echo "== REX_GEMV_LOAD=$v"
  (cd build/native-ab && REX_TEST_ONLY=zz_timing ./cuda_gemv_test_v$v) | grep -E "TIME|STEP|SPLIT (down|lm)"
done
