#!/usr/bin/env bash
# A/B of compile-time variants of the decode GEMV (native/cuda/gemv.cu) on the
# device, in one call: builds cuda_gemv_test once, then relinks it with
# gemv.cu compiled for each variant and runs its timing case alone.
# Usage: bash scripts/gemv-ab.sh NAME=FLAGS ...
#   e.g. bash scripts/gemv-ab.sh default= bps1=-DREX_GEMV_BLOCKS_PER_SM=1 "s4=-DREX_GEMV_MAX_STAGES=4"
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/rex-omni-device}
mkdir -p "$OUT"
dir=build/native-ab
cmake -S . -B $dir -G Ninja -DREX_BUILD_ADDON=OFF -DCMAKE_BUILD_TYPE=Release > "$OUT/ab-cfg.log" 2>&1
cmake --build $dir -j 16 --target cuda_gemv_test > "$OUT/ab-build.log" 2>&1 || { tail -30 "$OUT/ab-build.log"; exit 1; }
link=$(cd $dir && ninja -t commands cuda_gemv_test | tail -1)
for variant in "$@"; do
  name=${variant%%=*} flags=${variant#*=}
  (nvcc -std=c++17 -O3 -gencode=arch=compute_90a,code=sm_90a --expt-relaxed-constexpr -Inative/include -Inative \
    $flags -c native/cuda/gemv.cu -o $dir/gemv_$name.o &&
   cd $dir && eval "${link/ -o cuda_gemv_test / -o cuda_gemv_test_$name gemv_$name.o }") > "$OUT/ab-$name-build.log" 2>&1 &
done
wait
for variant in "$@"; do
  name=${variant%%=*}
  echo "== $variant"
  [ -x $dir/cuda_gemv_test_$name ] || { tail -20 "$OUT/ab-$name-build.log"; continue; }
  (cd $dir && REX_TEST_ONLY=zz_timing ./cuda_gemv_test_$name) > "$OUT/ab-$name.log" 2>&1
  grep -E "TIME|STEP|CHAIN|FAIL" "$OUT/ab-$name.log"
done
