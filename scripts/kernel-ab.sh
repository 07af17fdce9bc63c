#!/usr/bin/env bash
# A/B of compile-time variants of one kernel source on the device, in one
# call: builds TARGET once, then relinks it with SOURCE compiled for each
# variant (the variant's object comes before librex_cuda.a, so it replaces
# that source's member) and runs each binary with RUN (BIN stands for it).
# Usage: bash scripts/kernel-ab.sh TARGET SOURCE 'RUN' NAME=FLAGS ...
#   bash scripts/kernel-ab.sh decode_step_bench native/cuda/gemv.cu 'BIN /tmp/rex-omni-3b' \
#     default= bps2=-DREX_GEMV_BLOCKS_PER_SM=2
#   (scripts/gemv-ab.sh: the GEMV's own timing test)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/rex-omni-device}
mkdir -p "$OUT"
target=$1 source=$2 run=$3
shift 3
dir=build/native-ab
cmake -S . -B $dir -G Ninja -DREX_BUILD_ADDON=OFF -DCMAKE_BUILD_TYPE=Release > "$OUT/ab-cfg.log" 2>&1
cmake --build $dir -j 16 --target "$target" > "$OUT/ab-build.log" 2>&1 || { tail -30 "$OUT/ab-build.log"; exit 1; }
link=$(cd $dir && ninja -t commands "$target" | tail -1)
stem=$(basename "$source" | sed 's/\.[^.]*$//')
for variant in "$@"; do
  name=${variant%%=*} flags=${variant#*=}
  (nvcc -std=c++17 -O3 -gencode=arch=compute_90a,code=sm_90a --expt-relaxed-constexpr -Inative/include -Inative \
    $flags -c "$source" -o "$dir/${stem}_$name.o" &&
   cd $dir && eval "${link/ -o $target / -o ${target}_$name ${stem}_$name.o }") > "$OUT/ab-$name-build.log" 2>&1 &
done
wait
for variant in "$@"; do
  name=${variant%%=*}
  echo "== $variant"
  [ -x "$dir/${target}_$name" ] || { tail -20 "$OUT/ab-$name-build.log"; continue; }
  (eval "${run//BIN/$dir/${target}_$name}") > "$OUT/ab-$name.log" 2>&1
  grep -E "TIME|STEP|CHAIN|FAIL|rror" "$OUT/ab-$name.log"
done
