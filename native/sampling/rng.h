// PCG32 (M. O'Neill, "PCG: A Family of Simple Fast Space-Efficient
// Statistically Good Algorithms for Random Number Generation", 2014): 64-bit
// LCG state, XSH-RR output, the reference pcg32_srandom seeding. Chosen
// because it is tiny, fully specified, and the same on every platform and on
// a GPU, so a seeded request samples the same tokens on every backend.
#pragma once

#include <cstdint>

namespace rex {

class Pcg32 {
 public:
  explicit Pcg32(uint64_t seed = 0, uint64_t stream = 0xda3e39cb94b95bdbULL) { reseed(seed, stream); }

  void reseed(uint64_t seed, uint64_t stream = 0xda3e39cb94b95bdbULL) {
    state_ = 0;
    inc_ = (stream << 1u) | 1u;
    next_u32();
    state_ += seed;
    next_u32();
  }

  uint32_t next_u32() {
    uint64_t old = state_;
    state_ = old * 6364136223846793005ULL + inc_;
    uint32_t xorshifted = uint32_t(((old >> 18u) ^ old) >> 27u);
    uint32_t rot = uint32_t(old >> 59u);
    return (xorshifted >> rot) | (xorshifted << ((32u - rot) & 31u));
  }

  // Uniform in [0, 1) with 53 random bits (two draws: 27 high + 26 low bits).
  double next_double() {
    uint64_t a = next_u32() >> 5, b = next_u32() >> 6;
    return double(a * 67108864ULL + b) / 9007199254740992.0;
  }

 private:
  uint64_t state_ = 0, inc_ = 1;
};

}  // namespace rex
