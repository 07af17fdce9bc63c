// Non-causal variable-length attention for the vision tower: each token
// attends to the tokens of its own segment (the windows, or the whole image
// in the full-attention blocks); q, k, v come packed in one
// [tokens, 3*hidden] qkv row as nn.Linear wrote it. Softmax in fp32 with max
// subtraction; one (token, head) per work item.
// CUDA twin: native/cuda/attention_vision.cuh.
#pragma once

#include <vector>

#include "cpu/thread_pool.h"

namespace rex::cpu {

// q/k/v: element (token i, head h, dim j) at ptr[i*stride + h*head_dim + j].
// out: [tokens, heads*head_dim]. cu_seqlens: 0 = c0 < c1 < ... = tokens.
void attention_varlen(ThreadPool& pool, const float* q, const float* k, const float* v, int stride,
                      int heads, int head_dim, const std::vector<int>& cu_seqlens, float* out);

}  // namespace rex::cpu
