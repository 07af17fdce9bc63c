// The one routine every CPU attention variant reduces to: one query row
// against a contiguous run of key/value rows, softmax in fp32 with max
// subtraction. Shared by attention_vision (varlen), attention_prefill (causal
// GQA) and attention_decode (a batch of single queries).
#pragma once

#include <vector>

namespace rex::cpu {

// out[0..d) = softmax_j(q . k_j * scale) v_j over j in [k0, k1), with key/value
// row j at k + j*kv_stride / v + j*kv_stride. scores is scratch (resized).
void attend_row(const float* q, const float* k, const float* v, int kv_stride, int k0, int k1, int d,
                float scale, std::vector<float>& scores, float* out);

}  // namespace rex::cpu
