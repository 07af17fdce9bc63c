// Rotary position embeddings on the GPU, rotate_half convention (as
// transformers for Qwen2.5-VL): out = x*cos + rotate_half(x)*sin. Angles are
// fp32 products pos * inv_freq (inv_freq computed on the host by the CPU
// twin's rotary_inv_freq, so both backends use identical frequencies);
// cos/sin and the rotation in fp32, rounded once to bf16.
//  - vision: 2D rotary on q and k inside the packed qkv rows, in place;
//  - text: M-RoPE on q (in place) and k, fused with writing k and v into the
//    paged KV cache.
// CPU twin: native/cpu/rope.h.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/bf16.cuh"
#include "rex/status.h"

namespace rex::cuda {

// qkv: [tokens, 3*heads*head_dim] bf16 (q | k | v per row). Rotates q and k
// of every head. Angles for token t: [row[t]*f_0..f_{q-1}, col[t]*f_0..f_{q-1}]
// with q = head_dim/4 frequencies inv_freq (device, head_dim/4 floats),
// duplicated over both halves of the head.
Status vision_rope_bf16(bf16* qkv, int tokens, int heads, int head_dim, const int32_t* pos_rows,
                        const int32_t* pos_cols, const float* inv_freq, cudaStream_t stream);

// Where the new keys and values go: layer `layer`'s K/V planes of the paged
// cache. Element (physical token p, kv head h, dim j) of K sits at
// k[(size_t)p * kv_heads * head_dim + h * head_dim + j]; V alike.
struct KvPlane {
  bf16* k = nullptr;
  bf16* v = nullptr;
};

// qkv: [rows, (q_heads + 2*kv_heads)*head_dim] bf16 from the fused QKV GEMM
// (bias added). positions: axis-major [t(rows), h(rows), w(rows)] M-RoPE ids;
// frequency j (of head_dim/2, inv_freq on the device) takes its position from
// axis 0, 1 or 2 according to section (e.g. 16, 24, 24).
// Rotates q in place; writes rotated k and plain v of row r to cache row
// dest_rows[r] (physical token index).
struct MropeSection {
  int t = 0, h = 0, w = 0;
};
Status mrope_qkv_to_cache_bf16(bf16* qkv, int rows, int q_heads, int kv_heads, int head_dim,
                               const int32_t* positions, const float* inv_freq, MropeSection section,
                               const int32_t* dest_rows, KvPlane cache, cudaStream_t stream);

}  // namespace rex::cuda
