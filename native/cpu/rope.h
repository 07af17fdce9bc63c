// Rotary position embeddings, rotate_half convention (the one transformers
// uses for Qwen2.5-VL): out = x*cos + rotate_half(x)*sin, where
// rotate_half(x) = [-x2, x1] over the two halves of a head, and cos/sin are
// duplicated over both halves. Tables are built per token ([tokens, head_dim])
// and then applied to every head, so vision (2D) and text (M-RoPE) share the
// apply step and differ only in how angles are made.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "cpu/thread_pool.h"

namespace rex::cpu {

struct RotaryTable {
  int tokens = 0;
  int head_dim = 0;
  std::vector<float> cos;  // tokens * head_dim
  std::vector<float> sin;
};

// inv_freq[i] = 1 / theta^(2i/dim), i < dim/2, in fp32 as transformers computes it.
std::vector<float> rotary_inv_freq(float theta, int dim);

// Vision 2D rotary: head_dim/4 frequencies (theta) per axis; each token's
// angles are [row * f..., col * f...] (head_dim/2), duplicated to head_dim.
RotaryTable vision_rotary_table(const std::vector<int32_t>& rows, const std::vector<int32_t>& cols,
                                int head_dim, float theta = 10000.0f);

// Text M-RoPE: head_dim/2 frequencies; frequency j takes its position from
// axis t, h or w according to `section` (e.g. 16,24,24 for 64 frequencies).
// positions is axis-major: [t(0..n-1), h(0..n-1), w(0..n-1)].
RotaryTable mrope_table(const int32_t* positions, int n, int head_dim, float theta,
                        const std::array<int, 3>& section);

// Rotates x[tokens, heads, head_dim] in place with the table's row per token.
void apply_rotary(ThreadPool& pool, float* x, int tokens, int heads, int stride_tokens,
                  const RotaryTable& table);

}  // namespace rex::cpu
