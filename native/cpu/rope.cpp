// See rope.h. Angles are products in fp32 (as torch does), then cos/sin are
// taken in double and rounded, which is what torch's fp32 cos/sin return to
// within an ulp.
#include "cpu/rope.h"

#include <cmath>

namespace rex::cpu {

std::vector<float> rotary_inv_freq(float theta, int dim) {
  std::vector<float> f(size_t(dim / 2));
  for (int i = 0; i < dim / 2; ++i) {
    float exponent = float(2 * i) / float(dim);
    f[size_t(i)] = 1.0f / std::pow(theta, exponent);
  }
  return f;
}

static void fill_row(RotaryTable& t, int token, const float* angles) {
  int half = t.head_dim / 2;
  float* c = &t.cos[size_t(token) * t.head_dim];
  float* s = &t.sin[size_t(token) * t.head_dim];
  for (int j = 0; j < half; ++j) {
    float cj = float(std::cos(double(angles[j])));
    float sj = float(std::sin(double(angles[j])));
    c[j] = c[j + half] = cj;
    s[j] = s[j + half] = sj;
  }
}

RotaryTable vision_rotary_table(const std::vector<int32_t>& rows, const std::vector<int32_t>& cols,
                                int head_dim, float theta) {
  RotaryTable t;
  t.tokens = int(rows.size());
  t.head_dim = head_dim;
  t.cos.resize(size_t(t.tokens) * head_dim);
  t.sin.resize(size_t(t.tokens) * head_dim);
  const int quarter = head_dim / 4;
  std::vector<float> inv = rotary_inv_freq(theta, head_dim / 2);  // quarter frequencies
  std::vector<float> angles(size_t(head_dim / 2));
  for (int i = 0; i < t.tokens; ++i) {
    for (int j = 0; j < quarter; ++j) {
      angles[size_t(j)] = float(rows[size_t(i)]) * inv[size_t(j)];
      angles[size_t(quarter + j)] = float(cols[size_t(i)]) * inv[size_t(j)];
    }
    fill_row(t, i, angles.data());
  }
  return t;
}

RotaryTable mrope_table(const int32_t* positions, int n, int head_dim, float theta,
                        const std::array<int, 3>& section) {
  RotaryTable t;
  t.tokens = n;
  t.head_dim = head_dim;
  t.cos.resize(size_t(n) * head_dim);
  t.sin.resize(size_t(n) * head_dim);
  const int half = head_dim / 2;
  std::vector<float> inv = rotary_inv_freq(theta, head_dim);
  std::vector<int> axis_of(size_t(half), 2);
  for (int j = 0, a = 0, end = section[0]; j < half; ++j) {
    while (a < 2 && j >= end) end += section[size_t(++a)];
    axis_of[size_t(j)] = a;
  }
  std::vector<float> angles(static_cast<size_t>(half));
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < half; ++j)
      angles[size_t(j)] = float(positions[size_t(axis_of[size_t(j)]) * n + i]) * inv[size_t(j)];
    fill_row(t, i, angles.data());
  }
  return t;
}

void apply_rotary(ThreadPool& pool, float* x, int tokens, int heads, int stride_tokens,
                  const RotaryTable& table) {
  const int d = table.head_dim, half = d / 2;
  pool.parallel_for(0, tokens, [&](int64_t lo, int64_t hi) {
    std::vector<float> tmp(static_cast<size_t>(d));
    for (int64_t i = lo; i < hi; ++i) {
      const float* c = &table.cos[size_t(i) * d];
      const float* s = &table.sin[size_t(i) * d];
      for (int h = 0; h < heads; ++h) {
        float* v = x + i * stride_tokens + int64_t(h) * d;
        for (int j = 0; j < half; ++j) {
          tmp[size_t(j)] = v[j] * c[j] - v[j + half] * s[j];
          tmp[size_t(j + half)] = v[j + half] * c[j + half] + v[j] * s[j + half];
        }
        for (int j = 0; j < d; ++j) v[j] = tmp[size_t(j)];
      }
    }
  }, 8);
}

}  // namespace rex::cpu
