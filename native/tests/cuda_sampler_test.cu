// rex::cuda::sample_rows and mark_seen (native/cuda/sampler.cuh) against the
// CPU twin rex::sample_token (native/sampling/sampling.h), row by row, on
// fresh random rows:
//  - vocabularies 37, 1000 and the model's 151936;
//  - layouts: full (one segment [0, vocab)), full with a grammar mask (the
//    mask's allowed ids as segments: ranges, single ids, ranges split by
//    denied ids; logits indexed by id), restricted (the same segments, their
//    logits packed, the buffer holding nothing else);
//  - logits flat, peaked (a few tokens far above the rest), tied (13
//    distinct values) and with -inf entries; random seen sets (the peaked
//    tokens often among them, so the penalty moves the argmax);
//  - greedy (temperature 0, top_k 1) and sampled rows: temperature
//    0.7/1.0/1.3 x top_k 0/1/5/50/vocab x top_p 1/0.9/0.5/0.05 x
//    repetition penalty 1/1.05/1.3, each row its own Pcg32 seed.
// The CPU twin gets the dense row (for the restricted layout: the packed
// logits scattered to their ids, every other id holding +50 for the mask to
// remove), the TokenMask, the seen ids as a TokenHistory, and a Pcg32 of the
// row's seed; the GPU row gets uniform = Pcg32(seed).next_double(), the draw
// sample_token makes. Checks: ids equal (0 mismatches), logprob within 1e-4,
// model_logprob within 1e-4 on full rows and NaN on restricted ones. A
// sampled row whose top-p cut or draw lies within n * 2^-45 of the mass of a
// boundary (the GPU's fixed-point masses differ from the CPU's double sums
// by at most n * 2^-47; sampler.cu) is ambiguous: counted, printed, not
// compared. Then: bit-identical results on a second run, alone and in a
// reversed batch, and from a CUDA graph; ties; rows with no candidate, only
// -inf candidates, or more candidates than the workspace holds; greedy rows'
// chunks (the first pass split over many blocks: equal maxima on chunk
// edges, -inf outside one chunk, fewer candidates than chunks, 1024 and 1500
// segments, vocab 37 and 300000, greedy beside sampled rows at
// max_candidates 37); mark_seen against a CPU bitmask; bad arguments;
// timings at the decode shapes.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "cuda/cuda_check.h"
#include "cuda/sampler.cuh"
#include "cuda_test_util.h"
#include "cuda_timing.h"
#include "sampling/rng.h"
#include "sampling/sampling.h"
#include "sampling/token_mask.h"

namespace {

using namespace rex_test;
using rex::cuda::SamplerResult;
using rex::cuda::SamplerRow;
using rex::cuda::SamplerSegment;

uint64_t g_seed = 0x53414d50ull;  // advanced per draw: every check sees fresh inputs

constexpr int kVocab = 151936;
constexpr double kLogprobTolerance = 1e-4;
constexpr float kPoisonLogit = 1000.0f;  // around every row's buffer: a stray read wins the argmax

enum class Layout { kFull, kFullMasked, kRestricted };
enum class Dist { kFlat, kPeaked, kTies, kWithInf };

const char* layout_name(Layout l) {
  return l == Layout::kFull ? "full" : l == Layout::kFullMasked ? "full+mask" : "restricted";
}
const char* dist_name(Dist d) {
  return d == Dist::kFlat ? "flat" : d == Dist::kPeaked ? "peaked" : d == Dist::kTies ? "ties" : "with -inf";
}

int rnd(rex::Pcg32& rng, int bound) { return bound > 0 ? int(rng.next_u32() % uint32_t(bound)) : 0; }
float uniform(rex::Pcg32& rng, float lo, float hi) { return lo + (hi - lo) * float(rng.next_double()); }

struct RowCase {
  int vocab = 0;
  Layout layout = Layout::kFull;
  Dist dist = Dist::kFlat;
  rex::SamplingParams params;
  uint64_t draw_seed = 0;
  std::vector<float> dense;          // the raw row over the vocabulary: the CPU twin's input
  std::vector<int32_t> seen;         // distinct seen ids
  bool seen_null = false;            // no bitmask on the device (and an empty history on the CPU)
  rex::TokenMask mask;               // unused by kFull
  std::vector<SamplerSegment> segs;  // the allowed ids as runs; offsets by layout
  int candidates = 0;
};

// The allowed ids of a mask as sorted runs; offsets: the id (full) or packed.
std::vector<SamplerSegment> segments_of(const rex::TokenMask& m, int vocab, bool packed, int* candidates) {
  const std::vector<uint32_t> bits = m.to_bitmask(vocab);
  std::vector<SamplerSegment> out;
  int n = 0;
  for (int id = 0; id < vocab; ++id) {
    if (!((bits[size_t(id) / 32] >> (id % 32)) & 1u)) continue;
    if (!out.empty() && out.back().id_end == id) {
      ++out.back().id_end;
    } else {
      SamplerSegment s;
      s.id_begin = id;
      s.id_end = id + 1;
      s.logit_offset = packed ? n : id;
      out.push_back(s);
    }
    ++n;
  }
  *candidates = n;
  return out;
}

// A grammar-like mask: the complement of a banned range (free text), one
// range (a coordinate bin range) or single ids only (trie children), plus
// single ids, minus a few denied ids.
rex::TokenMask random_mask(int vocab, rex::Pcg32& rng) {
  rex::TokenMask m;
  const int kind = rnd(rng, 3);
  if (kind == 0) {
    const int a = rnd(rng, vocab), b = std::min(vocab, a + 1 + rnd(rng, std::max(1, vocab / 8)));
    m.allow_ranges = {{0, a}, {b, vocab}};
  } else if (kind == 1) {
    const int len = 1 + rnd(rng, std::max(1, vocab / 4)), a = rnd(rng, vocab - len + 1);
    m.allow_ranges = {{a, a + len}};
  }
  const int singles = kind == 2 ? 1 + rnd(rng, 12) : rnd(rng, 6);
  for (int i = 0; i < singles; ++i) m.allow_ids.push_back(rnd(rng, vocab));
  const int denies = rnd(rng, 5);
  for (int i = 0; i < denies; ++i) {
    // Mostly inside an allowed range, so that it splits one.
    const bool inside = !m.allow_ranges.empty() && rnd(rng, 4) != 0;
    const rex::IdRange r = inside ? m.allow_ranges[size_t(rnd(rng, int(m.allow_ranges.size())))] : rex::IdRange{0, vocab};
    if (r.end > r.begin) m.deny_ids.push_back(r.begin + rnd(rng, r.end - r.begin));
  }
  if (m.first_allowed(vocab) < 0) {
    m.deny_ids.clear();
    m.allow_ids.push_back(rnd(rng, vocab));
  }
  return m;
}

RowCase make_case(int vocab, Layout layout, Dist dist, const rex::SamplingParams& params) {
  rex::Pcg32 rng(++g_seed);
  RowCase c;
  c.vocab = vocab;
  c.layout = layout;
  c.dist = dist;
  c.params = params;
  c.draw_seed = ++g_seed;
  if (layout == Layout::kFull) {
    c.segs = {SamplerSegment{0, vocab, 0}};
    c.candidates = vocab;
  } else {
    c.mask = random_mask(vocab, rng);
    c.segs = segments_of(c.mask, vocab, layout == Layout::kRestricted, &c.candidates);
  }
  std::vector<int32_t> cand;
  for (const SamplerSegment& s : c.segs)
    for (int id = s.id_begin; id < s.id_end; ++id) cand.push_back(id);

  c.dense.resize(size_t(vocab));
  for (float& x : c.dense) {
    switch (dist) {
      case Dist::kTies: x = std::round(uniform(rng, -3.0f, 3.0f) * 2.0f) / 2.0f; break;
      case Dist::kPeaked: x = uniform(rng, -4.0f, 4.0f); break;
      default: x = uniform(rng, -6.0f, 6.0f); break;
    }
    if (dist == Dist::kWithInf && rnd(rng, 50) == 0) x = -INFINITY;
  }
  std::vector<int32_t> boosted;
  if (dist == Dist::kPeaked) {
    const int k = 1 + rnd(rng, 8);
    for (int i = 0; i < k; ++i) {
      const int id = (rnd(rng, 4) != 0 && !cand.empty()) ? cand[size_t(rnd(rng, int(cand.size())))] : rnd(rng, vocab);
      c.dense[size_t(id)] = uniform(rng, 6.0f, 14.0f);
      boosted.push_back(id);
    }
  }
  // Seen ids: some random, the boosted ones often.
  std::vector<uint8_t> is_seen(size_t(vocab), 0);
  const int nseen = rnd(rng, std::min(vocab, 400) + 1);
  for (int i = 0; i < nseen; ++i) is_seen[size_t(rnd(rng, vocab))] = 1;
  for (int32_t id : boosted)
    if (rnd(rng, 2)) is_seen[size_t(id)] = 1;
  for (int id = 0; id < vocab; ++id)
    if (is_seen[size_t(id)]) c.seen.push_back(id);
  c.seen_null = rnd(rng, 8) == 0;  // no bitmask: no penalty even when penalty != 1
  if (layout == Layout::kRestricted) {
    // Ids outside the candidates hold +50 for the CPU's mask to remove.
    std::vector<uint8_t> allowed(size_t(vocab), 0);
    for (int32_t id : cand) allowed[size_t(id)] = 1;
    for (int id = 0; id < vocab; ++id)
      if (!allowed[size_t(id)]) c.dense[size_t(id)] = 50.0f;
  }
  return c;
}

rex::SamplingParams params_of(float temperature, int top_k, float top_p, float penalty) {
  rex::SamplingParams p;
  p.temperature = temperature;
  p.top_k = top_k;
  p.top_p = top_p;
  p.repetition_penalty = penalty;
  return p;
}

double draw_uniform(uint64_t seed) {
  rex::Pcg32 a(seed);
  return a.next_double();
}

// ------------------------------------------------------------ the CPU twin

struct Reference {
  rex::SampledToken token;
  double margin = INFINITY;  // the closest decision boundary (top-p cut, draw) as a fraction of the mass
};

Reference reference(const RowCase& c) {
  const int V = c.vocab;
  rex::TokenHistory history(V);
  if (!c.seen_null) history.add(c.seen);
  const rex::TokenMask* mask = c.layout == Layout::kFull ? nullptr : &c.mask;
  Reference r;
  std::vector<float> row = c.dense;
  rex::Pcg32 rng(c.draw_seed);
  r.token = rex::sample_token(row.data(), V, c.params, history, rng, mask);
  if (rex::is_greedy(c.params)) return r;
  // sample_token's steps again, measuring how close each decision was.
  std::vector<float> x = c.dense;
  rex::apply_repetition_penalty(x.data(), V, history.distinct_ids(), c.params.repetition_penalty);
  if (mask) rex::apply_token_mask(x.data(), V, *mask);
  rex::apply_temperature(x.data(), V, c.params.temperature);
  rex::apply_top_k(x.data(), V, c.params.top_k);
  if (c.params.top_p < 1.0f) {
    std::vector<int32_t> order(static_cast<size_t>(V));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
      return x[size_t(a)] < x[size_t(b)] || (x[size_t(a)] == x[size_t(b)] && a > b);
    });
    const double mx = x[size_t(order.back())];
    double total = 0;
    for (int32_t id : order) total += std::exp(double(x[size_t(id)]) - mx);
    double cum = 0;
    for (int i = 0; i < V - 1; ++i) {
      cum += std::exp(double(x[size_t(order[size_t(i)])]) - mx) / total;
      r.margin = std::min(r.margin, std::fabs(cum - (1.0 - double(c.params.top_p))));
    }
  }
  rex::apply_top_p(x.data(), V, c.params.top_p);
  float mx = -INFINITY;
  for (float v : x) mx = std::max(mx, v);
  if (mx == -INFINITY) return r;
  double total = 0;
  for (float v : x)
    if (v != -INFINITY) total += std::exp(double(v) - mx);
  const double u = draw_uniform(c.draw_seed) * total;
  double cum = 0;
  for (float v : x) {
    if (v == -INFINITY) continue;
    cum += std::exp(double(v) - mx);
    r.margin = std::min(r.margin, std::fabs(cum - u) / total);
  }
  return r;
}

// ------------------------------------------------------------ device batches

// A batch of rows on the device: one logits buffer (each row's logits with a
// poisoned gap before it, at an odd offset), one seen bitmask per row, the
// segment table, the rows and the results.
struct DeviceBatch {
  std::unique_ptr<DeviceArray<float>> logits;
  std::unique_ptr<DeviceArray<uint32_t>> seen;
  std::unique_ptr<DeviceArray<SamplerSegment>> segs;
  std::unique_ptr<DeviceArray<SamplerRow>> rows;
  std::unique_ptr<DeviceArray<SamplerResult>> results;
  std::unique_ptr<DeviceArray<unsigned char>> workspace;
  std::vector<SamplerRow> host_rows;
  int max_candidates = 1;

  explicit DeviceBatch(const std::vector<RowCase>& cases, int max_cand = 0) {
    std::vector<float> buf;
    std::vector<uint32_t> masks;
    std::vector<SamplerSegment> table;
    std::vector<size_t> logit_at, seen_at;
    for (const RowCase& c : cases) {
      buf.insert(buf.end(), 3 + buf.size() % 2, kPoisonLogit);
      logit_at.push_back(buf.size());
      if (c.layout == Layout::kRestricted) {
        for (const SamplerSegment& s : c.segs)
          for (int id = s.id_begin; id < s.id_end; ++id) buf.push_back(c.dense[size_t(id)]);
      } else {
        buf.insert(buf.end(), c.dense.begin(), c.dense.end());
      }
      seen_at.push_back(masks.size());
      std::vector<uint32_t> m(size_t((c.vocab + 31) / 32), 0u);
      for (int32_t id : c.seen) m[size_t(id) / 32] |= 1u << (id % 32);
      masks.insert(masks.end(), m.begin(), m.end());
      max_candidates = std::max(max_candidates, c.candidates);
    }
    buf.insert(buf.end(), 4, kPoisonLogit);
    if (max_cand > 0) max_candidates = max_cand;
    logits = std::make_unique<DeviceArray<float>>(buf);
    seen = std::make_unique<DeviceArray<uint32_t>>(masks);
    for (size_t i = 0; i < cases.size(); ++i) {
      const RowCase& c = cases[i];
      SamplerRow r;
      r.logits = logits->ptr + logit_at[i];
      r.seen = c.seen_null ? nullptr : seen->ptr + seen_at[i];
      r.first_segment = int(table.size());
      if (c.segs.empty()) {
        table.push_back(SamplerSegment{5 % c.vocab, 5 % c.vocab, 0});  // one empty segment: no candidate
      } else {
        table.insert(table.end(), c.segs.begin(), c.segs.end());
      }
      r.segments = int(table.size()) - r.first_segment;
      r.vocab = c.vocab;
      r.full_row = c.layout == Layout::kRestricted ? 0 : 1;
      r.temperature = c.params.temperature;
      r.top_k = c.params.top_k;
      r.top_p = c.params.top_p;
      r.repetition_penalty = c.params.repetition_penalty;
      r.uniform = draw_uniform(c.draw_seed);
      host_rows.push_back(r);
    }
    segs = std::make_unique<DeviceArray<SamplerSegment>>(table);
    rows = std::make_unique<DeviceArray<SamplerRow>>(host_rows);
    results = std::make_unique<DeviceArray<SamplerResult>>(cases.size());
    workspace = std::make_unique<DeviceArray<unsigned char>>(
        std::max<size_t>(rex::cuda::sampler_workspace_bytes(int(cases.size()), max_candidates), 16));
  }

  int count() const { return int(host_rows.size()); }

  // Rows [first, first + n) of the table (n = -1: all), results at the same place.
  rex::Status launch(cudaStream_t stream, int first = 0, int n = -1) const {
    if (n < 0) n = count();
    return rex::cuda::sample_rows(rows->ptr + first, n, segs->ptr, max_candidates, workspace->ptr,
                                  results->ptr + first, stream);
  }

  // Poisoned results (an unwritten row reads id 0x7f7f7f7f), one launch, the results.
  std::vector<SamplerResult> run(int first = 0, int n = -1) const {
    cudaMemset(results->ptr, 0x7f, results->count * sizeof(SamplerResult));
    CHECK_OK(launch(nullptr, first, n));
    CHECK_CUDA_SYNC();
    return results->download();
  }
};

bool same_bits(const SamplerResult& a, const SamplerResult& b) { return std::memcmp(&a, &b, sizeof a) == 0; }

// Equal within tol, or both NaN, or the same infinity.
bool close(double a, double b, double tol) {
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
  if (std::isinf(a) || std::isinf(b)) return a == b;
  return std::fabs(a - b) <= tol;
}

struct CompareStats {
  int rows = 0, greedy = 0, mismatches = 0, ambiguous = 0;
  double max_logprob = 0, max_model = 0;
};

// Every row against the CPU twin; prints one line per batch, and each ambiguous or failing row.
CompareStats compare_with_cpu(const std::vector<RowCase>& cases, const std::vector<SamplerResult>& got,
                              const std::string& what) {
  CompareStats st;
  for (size_t i = 0; i < cases.size(); ++i) {
    const RowCase& c = cases[i];
    const Reference ref = reference(c);
    const SamplerResult& g = got[i];
    const rex::SamplingParams& p = c.params;
    ++st.rows;
    st.greedy += rex::is_greedy(p);
    char row[200];
    std::snprintf(row, sizeof row, "%s row %zu (%s, %s, T %.2f k %d p %.2f pen %.2f, %d candidates)", what.c_str(), i,
                  layout_name(c.layout), dist_name(c.dist), double(p.temperature), p.top_k, double(p.top_p),
                  double(p.repetition_penalty), c.candidates);
    const double tol = double(c.candidates) * std::ldexp(1.0, -45) + 1e-12;
    if (ref.margin < tol) {
      ++st.ambiguous;
      std::printf("    ambiguous (boundary %.2e of the mass, tol %.2e): %s: cpu id %d, gpu id %d\n", ref.margin, tol, row,
                  ref.token.id, g.id);
      continue;
    }
    bool ok = g.id == ref.token.id;
    if (!ok) ++st.mismatches;
    if (ok && !std::isnan(ref.token.logprob) && !std::isnan(g.logprob))
      st.max_logprob = std::max(st.max_logprob, std::fabs(double(g.logprob) - ref.token.logprob));
    ok = ok && close(g.logprob, ref.token.logprob, kLogprobTolerance);
    if (c.layout == Layout::kRestricted) {
      ok = ok && std::isnan(g.model_logprob);
    } else {
      if (g.id == ref.token.id && std::isfinite(ref.token.model_logprob) && std::isfinite(g.model_logprob))
        st.max_model = std::max(st.max_model, std::fabs(double(g.model_logprob) - ref.token.model_logprob));
      ok = ok && close(g.model_logprob, ref.token.model_logprob, kLogprobTolerance);
    }
    if (!ok)
      fail(__FILE__, __LINE__,
           std::string(row) + ": gpu id " + std::to_string(g.id) + " logprob " + std::to_string(g.logprob) +
               " model " + std::to_string(g.model_logprob) + " vs cpu id " + std::to_string(ref.token.id) +
               " logprob " + std::to_string(ref.token.logprob) + " model " + std::to_string(ref.token.model_logprob));
  }
  std::printf("  %-40s %4d rows (%d greedy): id mismatches %d, ambiguous skipped %d, max |dlogprob| %.2e, "
              "max |dmodel_logprob| %.2e\n",
              what.c_str(), st.rows, st.greedy, st.mismatches, st.ambiguous, st.max_logprob, st.max_model);
  return st;
}

// The parameter grid of the brief, greedy rows first.
std::vector<rex::SamplingParams> parameter_grid() {
  std::vector<rex::SamplingParams> grid;
  for (float pen : {1.0f, 1.05f, 1.3f}) {
    grid.push_back(params_of(0.0f, 0, 1.0f, pen));
    grid.push_back(params_of(0.7f, 1, 0.9f, pen));  // greedy by top_k 1
  }
  for (float t : {0.7f, 1.0f, 1.3f})
    for (int k : {0, 1, 5, 50, -1})  // -1: the vocabulary
      for (float p : {1.0f, 0.9f, 0.5f, 0.05f})
        for (float pen : {1.0f, 1.05f, 1.3f}) grid.push_back(params_of(t, k, p, pen));
  return grid;
}

rex::SamplingParams with_vocab(rex::SamplingParams p, int vocab) {
  if (p.top_k < 0) p.top_k = vocab;
  return p;
}

// ------------------------------------------------------------ parity

REX_TEST(sample_rows_matches_cpu_small_vocabs) {
  if (skip_without_gpu()) return;
  const std::vector<rex::SamplingParams> grid = parameter_grid();
  for (int vocab : {37, 1000}) {
    for (Layout layout : {Layout::kFull, Layout::kFullMasked, Layout::kRestricted}) {
      std::vector<RowCase> cases;
      for (size_t i = 0; i < grid.size(); ++i)
        cases.push_back(make_case(vocab, layout, Dist(i % 4), with_vocab(grid[i], vocab)));
      const DeviceBatch batch(cases);
      const CompareStats st = compare_with_cpu(cases, batch.run(), "vocab " + std::to_string(vocab) + " " + layout_name(layout));
      CHECK_EQ(st.mismatches, 0);
    }
  }
}

REX_TEST(sample_rows_matches_cpu_full_vocab) {
  if (skip_without_gpu()) return;
  const std::vector<rex::SamplingParams> grid = parameter_grid();
  rex::Pcg32 pick(++g_seed);
  for (Layout layout : {Layout::kFull, Layout::kFullMasked, Layout::kRestricted}) {
    std::vector<RowCase> cases;
    for (int i = 0; i < 24; ++i) {
      // Two greedy rows, then random picks from the sampled part of the grid.
      const size_t g = i < 2 ? size_t(i * 3) : 6 + size_t(rnd(pick, int(grid.size()) - 6));
      cases.push_back(make_case(kVocab, layout, Dist(i % 4), with_vocab(grid[g], kVocab)));
    }
    const DeviceBatch batch(cases);
    const CompareStats st = compare_with_cpu(cases, batch.run(), std::string("vocab 151936 ") + layout_name(layout));
    CHECK_EQ(st.mismatches, 0);
  }
}

// Many exactly equal logits: greedy picks the lowest candidate id, top-k
// keeps every tie, top-p splits the ties by id (lower ids first).
REX_TEST(sample_rows_ties) {
  if (skip_without_gpu()) return;
  std::vector<RowCase> cases;
  const rex::SamplingParams ps[] = {params_of(0.0f, 0, 1.0f, 1.0f), params_of(1.0f, 5, 1.0f, 1.0f),
                                    params_of(1.0f, 0, 0.5f, 1.0f), params_of(0.7f, 50, 0.9f, 1.3f),
                                    params_of(1.3f, 0, 0.05f, 1.05f), params_of(0.0f, 0, 1.0f, 1.3f)};
  // Odd sizes: with n equal tokens, a top-p cut at a multiple of 1/n would be
  // a genuine tie of the CPU's rounding (and skipped as ambiguous).
  for (int vocab : {1001, kVocab - 5})
    for (Layout layout : {Layout::kFull, Layout::kFullMasked, Layout::kRestricted})
      for (const rex::SamplingParams& p : ps) {
        RowCase c = make_case(vocab, layout, Dist::kTies, p);
        for (const SamplerSegment& s : c.segs)
          for (int id = s.id_begin; id < s.id_end; ++id) c.dense[size_t(id)] = 1.0f;  // every candidate equal
        c.seen_null = true;
        cases.push_back(std::move(c));
      }
  const DeviceBatch batch(cases);
  const std::vector<SamplerResult> got = batch.run();
  const CompareStats st = compare_with_cpu(cases, got, "all candidates equal");
  CHECK_EQ(st.mismatches, 0);
  for (size_t i = 0; i < cases.size(); ++i)
    if (rex::is_greedy(cases[i].params)) CHECK_EQ(got[i].id, cases[i].segs.front().id_begin);
}

// No candidate (the CPU's fallback: id 0), only -inf candidates (the lowest
// candidate id), more candidates than the workspace holds (id -1).
REX_TEST(sample_rows_edge_rows) {
  if (skip_without_gpu()) return;
  std::vector<RowCase> cases;
  for (const rex::SamplingParams& p : {params_of(0.0f, 0, 1.0f, 1.05f), params_of(1.0f, 5, 0.9f, 1.05f)}) {
    for (Layout layout : {Layout::kFullMasked, Layout::kRestricted}) {
      RowCase none = make_case(1000, layout, Dist::kFlat, p);
      none.mask.allow_ranges.clear();
      none.mask.allow_ids.clear();
      none.mask.deny_ids.clear();
      none.segs.clear();
      none.candidates = 0;
      cases.push_back(none);
      RowCase inf = make_case(1000, layout, Dist::kFlat, p);
      for (const SamplerSegment& s : inf.segs)
        for (int id = s.id_begin; id < s.id_end; ++id) inf.dense[size_t(id)] = -INFINITY;
      cases.push_back(inf);
    }
  }
  const DeviceBatch batch(cases);
  const std::vector<SamplerResult> got = batch.run();
  const CompareStats st = compare_with_cpu(cases, got, "no candidate / only -inf");
  CHECK_EQ(st.mismatches, 0);
  for (size_t i = 0; i < cases.size(); ++i) CHECK(std::isnan(got[i].logprob));

  // Over capacity: a full row of 1000 candidates with max_candidates 999 (greedy and sampled).
  std::vector<RowCase> big = {make_case(1000, Layout::kFull, Dist::kFlat, params_of(0.0f, 0, 1.0f, 1.0f)),
                              make_case(1000, Layout::kFull, Dist::kFlat, params_of(1.0f, 0, 0.9f, 1.0f)),
                              make_case(999, Layout::kFull, Dist::kFlat, params_of(1.0f, 0, 0.9f, 1.0f))};
  const DeviceBatch over(big, 999);
  const std::vector<SamplerResult> r = over.run();
  CHECK_EQ(r[0].id, -1);
  CHECK_EQ(r[1].id, -1);
  CHECK(std::isnan(r[0].logprob) && std::isnan(r[0].model_logprob));
  const Reference ok = reference(big[2]);  // the row that fits is sampled as usual
  CHECK_EQ(r[2].id, ok.token.id);
  std::printf("  over capacity: ids %d %d (expect -1 -1), the row that fits %d (cpu %d)\n", r[0].id, r[1].id, r[2].id,
              ok.token.id);
}

// ------------------------------------------------------------ greedy chunks

// A case with the mask given (layouts as make_case; kFull ignores the mask).
RowCase make_masked(int vocab, Layout layout, Dist dist, const rex::SamplingParams& p, const rex::TokenMask& m) {
  RowCase c = make_case(vocab, Layout::kFull, dist, p);
  if (layout == Layout::kFull) return c;
  c.layout = layout;
  c.mask = m;
  c.segs = segments_of(m, vocab, layout == Layout::kRestricted, &c.candidates);
  if (layout == Layout::kRestricted) {
    const std::vector<uint32_t> bits = m.to_bitmask(vocab);
    for (int id = 0; id < vocab; ++id)
      if (!((bits[size_t(id) / 32] >> (id % 32)) & 1u)) c.dense[size_t(id)] = 50.0f;
  }
  return c;
}

// Ids on the boundaries of chunkings of the candidates a greedy row may be
// split by (2048-element chunks, ceil(n / 2048) equal ones, 4096): the
// candidate indices (0 .. n-1) just below and at each boundary, n/3, n/2, n-1.
std::vector<int> boundary_indices(int n) {
  std::vector<int> out;
  auto add = [&](int64_t i) {
    if (i >= 0 && i < n) out.push_back(int(i));
  };
  const int eq = std::max(1, (n + 2047) / 2048);
  for (int j = 1; j < 160; ++j) {
    add(int64_t(n) * j / eq - 1), add(int64_t(n) * j / eq);
    add(int64_t(j) * 2048 - 1), add(int64_t(j) * 2048);
    add(int64_t(j) * 4096 - 1), add(int64_t(j) * 4096);
  }
  add(n / 3), add(n / 2), add(n - 1);
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

std::vector<int32_t> candidate_ids(const RowCase& c) {
  std::vector<int32_t> ids;
  for (const SamplerSegment& s : c.segs)
    for (int id = s.id_begin; id < s.id_end; ++id) ids.push_back(id);
  return ids;
}

// Greedy rows are split over many blocks (sampler.cu): the chunks' edges,
// ties between chunks, chunks holding nothing finite, fewer candidates than
// chunks, many segments, a vocabulary past 128 x 2048 ids, and greedy rows
// beside sampled ones at a small max_candidates (the chunk partials sit
// after every row's arrays).
REX_TEST(sample_rows_greedy_chunks) {
  if (skip_without_gpu()) return;
  const rex::SamplingParams greedy = params_of(0.0f, 0, 1.0f, 1.0f), greedy_pen = params_of(0.0f, 0, 1.0f, 1.3f);
  rex::TokenMask free_text;  // a banned range: two segments over the vocabulary
  free_text.allow_ranges = {{0, kVocab - 1100}, {kVocab - 100, kVocab}};
  rex::TokenMask coords;  // 1000 coordinate-like ids
  coords.allow_ranges = {{kVocab - 1100, kVocab - 100}};
  std::vector<RowCase> cases;
  std::vector<int> want_id;  // -2: no own expectation (the CPU comparison only)
  for (Layout layout : {Layout::kFull, Layout::kFullMasked, Layout::kRestricted}) {
    const rex::TokenMask& m = layout == Layout::kRestricted ? coords : free_text;
    // Equal maxima on chunk edges, and the highest id: the lowest id wins.
    for (int variant = 0; variant < 2; ++variant) {
      RowCase c = make_masked(kVocab, layout, Dist::kFlat, variant ? greedy_pen : greedy, m);
      const std::vector<int32_t> ids = candidate_ids(c);
      std::vector<int> at = boundary_indices(int(ids.size()));
      if (variant == 1) at.erase(at.begin(), at.begin() + int(at.size()) / 2);  // the later half of the edges only
      for (int i : at) c.dense[size_t(ids[size_t(i)])] = 20.0f;
      c.seen_null = variant == 0;
      if (variant == 1) {  // the penalty moves the tie off its lowest id: the next lowest wins
        c.seen_null = false;
        c.seen = {ids[size_t(at.front())]};
      }
      cases.push_back(c);
      want_id.push_back(ids[size_t(variant == 1 ? at[1] : at.front())]);
    }
    // -inf everywhere but a window (one chunk or two), and -inf everywhere.
    for (int window : {300, 2500, 0}) {
      RowCase c = make_masked(kVocab, layout, Dist::kPeaked, greedy_pen, m);
      const std::vector<int32_t> ids = candidate_ids(c);
      const int lo = int(ids.size()) / 3;
      for (size_t i = 0; i < ids.size(); ++i)
        if (int(i) < lo || int(i) >= lo + window) c.dense[size_t(ids[i])] = -INFINITY;
      if (layout != Layout::kRestricted)
        for (int id = 0; id < kVocab; ++id)
          if (window == 0 || id % 7 == 0) c.dense[size_t(id)] = -INFINITY;  // the raw row too, in part
      cases.push_back(c);
      want_id.push_back(window == 0 ? ids.front() : -2);
    }
  }
  // Fewer candidates than chunks: 5 single ids over the vocabulary, 3 packed.
  {
    rex::TokenMask few;
    few.allow_ids = {3, 40000, 40001, 99999, kVocab - 1};
    for (Layout layout : {Layout::kFullMasked, Layout::kRestricted}) {
      cases.push_back(make_masked(kVocab, layout, Dist::kPeaked, greedy_pen, few));
      want_id.push_back(-2);
    }
    rex::TokenMask three;
    three.allow_ids = {17, 18, 151000};
    cases.push_back(make_masked(kVocab, Layout::kRestricted, Dist::kTies, greedy, three));
    want_id.push_back(-2);
  }
  // Many segments: 1024 (staged by the chunks) and 1500 (the one-block path), single ids and runs.
  for (int segs : {1024, 1500}) {
    rex::TokenMask many;
    for (int i = 0; i < segs; ++i) {
      const int a = i * 100;
      if (i % 3 == 0) many.allow_ranges.push_back({a, a + 1 + i % 40});
      else many.allow_ids.push_back(a);
    }
    for (Layout layout : {Layout::kFullMasked, Layout::kRestricted}) {
      cases.push_back(make_masked(kVocab, layout, Dist::kPeaked, greedy_pen, many));
      want_id.push_back(-2);
    }
  }
  // Vocab 37 (one chunk) in every layout, ties included.
  for (Layout layout : {Layout::kFull, Layout::kFullMasked, Layout::kRestricted})
    for (Dist d : {Dist::kFlat, Dist::kTies, Dist::kWithInf}) {
      cases.push_back(make_case(37, layout, d, greedy_pen));
      want_id.push_back(-2);
    }
  {
    int n = 0;
    for (const RowCase& c : cases) n = std::max(n, c.candidates);
    const DeviceBatch batch(cases);
    const std::vector<SamplerResult> got = batch.run();
    CHECK_EQ(compare_with_cpu(cases, got, "greedy chunk edges").mismatches, 0);
    int wrong = 0;
    for (size_t i = 0; i < cases.size(); ++i)
      if (want_id[i] != -2 && got[i].id != want_id[i]) {
        ++wrong;
        std::printf("    row %zu: id %d, expected %d\n", i, got[i].id, want_id[i]);
      }
    int alone_moved = 0;
    for (int i = 0; i < batch.count(); ++i) alone_moved += !same_bits(batch.run(i, 1)[size_t(i)], got[size_t(i)]);
    std::printf("  %zu greedy rows (max %d candidates): expected ids missed %d, changed alone %d (expect 0 0)\n",
                cases.size(), n, wrong, alone_moved);
    CHECK_EQ(wrong, 0);
    CHECK_EQ(alone_moved, 0);
  }
  // A vocabulary past 128 x 2048 ids (the raw normaliser's slices loop), 200000 candidates.
  {
    rex::TokenMask big;
    big.allow_ranges = {{0, 150000}, {250000, 300000}};
    std::vector<RowCase> wide = {make_masked(300000, Layout::kFullMasked, Dist::kPeaked, greedy_pen, big),
                                 make_masked(300000, Layout::kRestricted, Dist::kFlat, greedy_pen, big),
                                 make_masked(300000, Layout::kFullMasked, Dist::kFlat, params_of(1.0f, 0, 0.9f, 1.05f), big)};
    const DeviceBatch batch(wide, 262143);
    CHECK_EQ(compare_with_cpu(wide, batch.run(), "vocab 300000").mismatches, 0);
  }
  // Greedy and sampled rows interleaved at max_candidates 37: every sampled
  // row's arrays are written while the greedy rows' partials are read.
  {
    std::vector<RowCase> mixed;
    const rex::SamplingParams ps[] = {greedy_pen, params_of(1.0f, 0, 0.9f, 1.05f), greedy,
                                      params_of(0.7f, 5, 1.0f, 1.3f), params_of(0.7f, 1, 0.5f, 1.0f),
                                      params_of(1.3f, 0, 1.0f, 1.0f)};
    for (int rep = 0; rep < 4; ++rep)
      for (const rex::SamplingParams& p : ps)
        for (Layout layout : {Layout::kFull, Layout::kRestricted}) mixed.push_back(make_case(37, layout, Dist(rep), p));
    const DeviceBatch batch(mixed, 37);
    const std::vector<SamplerResult> first = batch.run();
    CHECK_EQ(compare_with_cpu(mixed, first, "vocab 37 mixed, max_candidates 37").mismatches, 0);
    int moved = 0;
    const std::vector<SamplerResult> second = batch.run();
    for (size_t i = 0; i < mixed.size(); ++i) moved += !same_bits(first[i], second[i]);
    for (int i = 0; i < batch.count(); ++i) moved += !same_bits(batch.run(i, 1)[size_t(i)], first[size_t(i)]);
    std::printf("  vocab 37 mixed: %d results changed on a second run or alone (expect 0)\n", moved);
    CHECK_EQ(moved, 0);
  }
}

// ------------------------------------------------------------ determinism

std::vector<RowCase> mixed_batch() {
  std::vector<RowCase> cases;
  const rex::SamplingParams ps[] = {params_of(0.0f, 0, 1.0f, 1.05f), params_of(1.0f, 0, 0.9f, 1.05f),
                                    params_of(0.7f, 50, 1.0f, 1.3f),  params_of(1.3f, 0, 1.0f, 1.0f),
                                    params_of(1.0f, 5, 0.5f, 1.05f),  params_of(0.7f, 0, 0.05f, 1.0f)};
  int i = 0;
  for (Layout layout : {Layout::kFull, Layout::kFullMasked, Layout::kRestricted})
    for (const rex::SamplingParams& p : ps) {
      cases.push_back(make_case(kVocab, layout, Dist(i % 4), p));
      cases.push_back(make_case(1000, layout, Dist((i + 1) % 4), p));
      ++i;
    }
  return cases;
}

REX_TEST(sample_rows_deterministic_and_batch_independent) {
  if (skip_without_gpu()) return;
  const std::vector<RowCase> cases = mixed_batch();
  const DeviceBatch batch(cases);
  const std::vector<SamplerResult> first = batch.run(), second = batch.run();
  int moved = 0, alone_moved = 0, reversed_moved = 0;
  for (size_t i = 0; i < cases.size(); ++i) moved += !same_bits(first[i], second[i]);
  // Each row alone (row_count 1, the workspace's first slot).
  for (int i = 0; i < batch.count(); ++i) {
    const std::vector<SamplerResult> alone = batch.run(i, 1);
    alone_moved += !same_bits(alone[size_t(i)], first[size_t(i)]);
  }
  // The same rows in reverse order (other neighbours, other workspace slots).
  std::vector<RowCase> rev(cases.rbegin(), cases.rend());
  const DeviceBatch reversed(rev);
  const std::vector<SamplerResult> back = reversed.run();
  for (size_t i = 0; i < cases.size(); ++i) reversed_moved += !same_bits(back[cases.size() - 1 - i], first[i]);
  std::printf("  %zu rows: changed on a second run %d, alone %d, reversed batch %d (expect 0 0 0)\n", cases.size(), moved,
              alone_moved, reversed_moved);
  CHECK_EQ(moved, 0);
  CHECK_EQ(alone_moved, 0);
  CHECK_EQ(reversed_moved, 0);
  CHECK_EQ(compare_with_cpu(cases, first, "mixed batch").mismatches, 0);
}

REX_TEST(sample_rows_in_a_cuda_graph) {
  if (skip_without_gpu()) return;
  const std::vector<RowCase> cases = mixed_batch();
  const DeviceBatch batch(cases);
  const std::vector<SamplerResult> direct = batch.run();
  cudaStream_t stream;
  CHECK_OK(rex::cuda::cuda_status(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreate"));
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  CHECK_OK(rex::cuda::cuda_status(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), "begin capture"));
  const rex::Status launched = batch.launch(stream);
  CHECK_OK(rex::cuda::cuda_status(cudaStreamEndCapture(stream, &graph), "end capture"));
  CHECK_OK(launched);
  CHECK_OK(rex::cuda::cuda_status(cudaGraphInstantiate(&exec, graph, 0), "cudaGraphInstantiate"));
  int moved = 0;
  for (int rep = 0; rep < 2; ++rep) {
    cudaMemset(batch.results->ptr, 0x7f, batch.results->count * sizeof(SamplerResult));
    CHECK_OK(rex::cuda::cuda_status(cudaGraphLaunch(exec, stream), "cudaGraphLaunch"));
    CHECK_OK(rex::cuda::cuda_status(cudaStreamSynchronize(stream), "cudaStreamSynchronize"));
    const std::vector<SamplerResult> replay = batch.results->download();
    for (size_t i = 0; i < cases.size(); ++i) moved += !same_bits(replay[i], direct[i]);
  }
  std::printf("  graph replays x2 of %zu rows: %d results differ from the direct launch (expect 0)\n", cases.size(), moved);
  CHECK_EQ(moved, 0);
  if (exec) cudaGraphExecDestroy(exec);
  if (graph) cudaGraphDestroy(graph);
  cudaStreamDestroy(stream);
}

// ------------------------------------------------------------ mark_seen

REX_TEST(mark_seen_matches_cpu) {
  if (skip_without_gpu()) return;
  rex::Pcg32 rng(++g_seed);
  const int masks = 5, words = (kVocab + 31) / 32;
  std::vector<uint32_t> init(size_t(masks) * words);
  for (uint32_t& w : init) w = rnd(rng, 16) == 0 ? rng.next_u32() : 0u;  // some bits already set
  std::vector<int32_t> index, ids;
  for (int i = 0; i < 20000; ++i) {
    index.push_back(rnd(rng, masks));
    ids.push_back(rnd(rng, 50) == 0 ? rnd(rng, 64) : rnd(rng, kVocab));  // duplicates on purpose
  }
  index.push_back(2), ids.push_back(-3);           // skipped: negative id
  index.push_back(-1), ids.push_back(7);           // skipped: negative mask
  index.push_back(1), ids.push_back(words * 32);   // skipped: past the mask
  std::vector<uint32_t> want = init;
  for (size_t i = 0; i < ids.size(); ++i)
    if (index[i] >= 0 && ids[i] >= 0 && ids[i] < words * 32)
      want[size_t(index[i]) * words + size_t(ids[i]) / 32] |= 1u << (ids[i] % 32);
  DeviceArray<uint32_t> dm(init);
  DeviceArray<int32_t> di(index), dids(ids);
  CHECK_OK(rex::cuda::mark_seen(dm.ptr, words, di.ptr, dids.ptr, int(ids.size()), nullptr));
  CHECK_CUDA_SYNC();
  const std::vector<uint32_t> got = dm.download();
  size_t differing = 0;
  for (size_t i = 0; i < want.size(); ++i) differing += got[i] != want[i];
  std::printf("  mark_seen %zu ids into %d masks: %zu of %zu words differ (expect 0)\n", ids.size(), masks, differing,
              want.size());
  CHECK_EQ(differing, size_t(0));
  // mask_index null: every id into the bitmask given, with words_per_mask 0 (no bound) or its size.
  for (int w : {0, words}) {
    std::vector<int32_t> one;
    for (int i = 0; i < 3000; ++i) one.push_back(rnd(rng, kVocab));
    one.push_back(-5);  // skipped
    std::vector<uint32_t> want1(size_t(words), 0u);
    for (int32_t id : one)
      if (id >= 0) want1[size_t(id) / 32] |= 1u << (id % 32);
    DeviceArray<uint32_t> single(std::vector<uint32_t>(size_t(words), 0u));
    DeviceArray<int32_t> dids1(one);
    CHECK_OK(rex::cuda::mark_seen(single.ptr, w, nullptr, dids1.ptr, int(one.size()), nullptr));
    CHECK_CUDA_SYNC();
    const std::vector<uint32_t> got1 = single.download();
    size_t diff1 = 0;
    for (size_t i = 0; i < want1.size(); ++i) diff1 += got1[i] != want1[i];
    std::printf("  mark_seen, no mask_index, words_per_mask %d: %zu of %d words differ (expect 0)\n", w, diff1, words);
    CHECK_EQ(diff1, size_t(0));
  }
  CHECK_OK(rex::cuda::mark_seen(nullptr, 0, nullptr, nullptr, 0, nullptr));  // n == 0: nothing to do
}

// ------------------------------------------------------------ arguments

REX_TEST(bad_arguments_return_status) {
  if (skip_without_gpu()) return;
  using rex::cuda::mark_seen;
  using rex::cuda::sample_rows;
  DeviceArray<SamplerRow> rows(1);
  DeviceArray<SamplerSegment> segs(1);
  DeviceArray<SamplerResult> res(1);
  DeviceArray<unsigned char> ws(rex::cuda::sampler_workspace_bytes(1, 64) + 16);
  DeviceArray<uint32_t> masks(8);
  DeviceArray<int32_t> ids(4);
  void* w = ws.ptr;
  expect_invalid(sample_rows(rows.ptr, -1, segs.ptr, 64, w, res.ptr, nullptr), "expected row_count >= 0");
  expect_invalid(sample_rows(rows.ptr, 1, segs.ptr, 0, w, res.ptr, nullptr), "expected 1 <= max_candidates");
  expect_invalid(sample_rows(rows.ptr, 1, segs.ptr, 300000, w, res.ptr, nullptr), "expected 1 <= max_candidates");
  expect_invalid(sample_rows(nullptr, 1, segs.ptr, 64, w, res.ptr, nullptr), "expected a rows pointer");
  expect_invalid(sample_rows(rows.ptr, 1, nullptr, 64, w, res.ptr, nullptr), "expected a segments pointer");
  expect_invalid(sample_rows(rows.ptr, 1, segs.ptr, 64, w, nullptr, nullptr), "expected a results pointer");
  expect_invalid(sample_rows(rows.ptr, 1, segs.ptr, 64, nullptr, res.ptr, nullptr), "expected a workspace pointer");
  expect_invalid(sample_rows(rows.ptr, 1, segs.ptr, 64, ws.ptr + 4, res.ptr, nullptr), "16-byte aligned workspace");
  expect_invalid(mark_seen(masks.ptr, 8, ids.ptr, ids.ptr, -1, nullptr), "expected n >= 0");
  expect_invalid(mark_seen(masks.ptr, -1, nullptr, ids.ptr, 4, nullptr), "expected words_per_mask >= 0");
  expect_invalid(mark_seen(masks.ptr, 0, ids.ptr, ids.ptr, 4, nullptr), "expected words_per_mask > 0 with a mask_index");
  expect_invalid(mark_seen(nullptr, 8, ids.ptr, ids.ptr, 4, nullptr), "expected a seen_masks pointer");
  expect_invalid(mark_seen(masks.ptr, 8, ids.ptr, nullptr, 4, nullptr), "expected an ids pointer");
  const rex::Status st = sample_rows(rows.ptr, 1, segs.ptr, 0, w, res.ptr, nullptr);
  std::printf("  e.g. %s\n", st.message().c_str());
  CHECK_OK(sample_rows(nullptr, 0, nullptr, 0, nullptr, nullptr, nullptr));  // no rows: nothing to do
  CHECK(rex::cuda::sampler_workspace_bytes(0, 100) == 0);
  CHECK(rex::cuda::sampler_workspace_bytes(2, 151936) >= size_t(2) * 151936 * 12);
  CHECK(rex::cuda::sampler_workspace_bytes(3, 1) > rex::cuda::sampler_workspace_bytes(2, 1));  // partials per row too
  expect_invalid(sample_rows(rows.ptr, 16777216, segs.ptr, 64, w, res.ptr, nullptr), "expected row_count <= 16777215");
  CHECK_CUDA_SYNC();
}

// ------------------------------------------------------------ timing

REX_TEST(sample_rows_timing) {
  if (skip_without_gpu()) return;
  struct Shape {
    const char* op;
    const char* shape;
    int rows;
    Layout layout;
    Dist dist;
    rex::SamplingParams p;
  };
  const Shape shapes[] = {
      {"sample greedy", "1 x 151936, pen 1.05", 1, Layout::kFull, Dist::kPeaked, params_of(0.0f, 0, 1.0f, 1.05f)},
      {"sample greedy", "8 x 151936, pen 1.05", 8, Layout::kFull, Dist::kPeaked, params_of(0.0f, 0, 1.0f, 1.05f)},
      {"sample top-p 0.9", "1 x 151936, T 1, pen 1.05", 1, Layout::kFull, Dist::kPeaked, params_of(1.0f, 0, 0.9f, 1.05f)},
      {"sample top-p 0.9 flat", "1 x 151936, T 1, pen 1.05", 1, Layout::kFull, Dist::kFlat, params_of(1.0f, 0, 0.9f, 1.05f)},
      {"sample top-k 50", "1 x 151936, T 0.7, pen 1.05", 1, Layout::kFull, Dist::kPeaked, params_of(0.7f, 50, 1.0f, 1.05f)},
      {"sample T only", "1 x 151936, T 1, pen 1.05", 1, Layout::kFull, Dist::kPeaked, params_of(1.0f, 0, 1.0f, 1.05f)},
      {"sample greedy", "1 x 1000 restricted", 1, Layout::kRestricted, Dist::kPeaked, params_of(0.0f, 0, 1.0f, 1.05f)},
      {"sample greedy", "8 x 1000 restricted", 8, Layout::kRestricted, Dist::kPeaked, params_of(0.0f, 0, 1.0f, 1.05f)},
      {"sample greedy", "1 x 151936 masked (2 segs), pen 1.05", 1, Layout::kFullMasked, Dist::kPeaked,
       params_of(0.0f, 0, 1.0f, 1.05f)},
  };
  for (const Shape& s : shapes) {
    std::vector<RowCase> cases;
    for (int i = 0; i < s.rows; ++i) {
      RowCase c = make_case(kVocab, Layout::kFull, s.dist, s.p);
      if (s.layout == Layout::kRestricted) {  // 1000 coordinate-like ids, packed
        c.layout = Layout::kRestricted;
        c.mask = rex::TokenMask{};
        c.mask.allow_ranges = {{kVocab - 1100, kVocab - 100}};
        c.segs = segments_of(c.mask, kVocab, true, &c.candidates);
      } else if (s.layout == Layout::kFullMasked) {  // free text: the coordinate ids banned
        c.layout = Layout::kFullMasked;
        c.mask = rex::TokenMask{};
        c.mask.allow_ranges = {{0, kVocab - 1100}, {kVocab - 100, kVocab}};
        c.segs = segments_of(c.mask, kVocab, false, &c.candidates);
      }
      cases.push_back(std::move(c));
    }
    const DeviceBatch batch(cases);
    double bytes = 0;
    for (const RowCase& c : cases) bytes += 4.0 * c.candidates;
    time_op(s.op, s.shape, bytes, no_prepare, [&](cudaStream_t st) { return batch.launch(st); });
  }
}

// Last: the table the notes are written from.
REX_TEST(zz_summary_table) { print_timing_table(); }

}  // namespace
