#!/usr/bin/env bash
# A/B of compile-time variants of the decode GEMV (native/cuda/gemv.cu) on the
# device: cuda_gemv_test's timing cases (cold launches, and the projections
# chained as in a graphed step) once per variant (scripts/kernel-ab.sh).
# Usage: bash scripts/gemv-ab.sh NAME=FLAGS ...
#   e.g. bash scripts/gemv-ab.sh default= bps1=-DREX_GEMV_BLOCKS_PER_SM=1 "s4=-DREX_GEMV_MAX_STAGES=4"
# The whole decode step per variant: scripts/kernel-ab.sh decode_step_bench native/cuda/gemv.cu 'BIN DIR' ...
exec bash "$(dirname "$0")/kernel-ab.sh" cuda_gemv_test native/cuda/gemv.cu 'REX_TEST_ONLY=zz_timing BIN' "$@"
