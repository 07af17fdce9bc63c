// Keypoint JSON mode ("keypoint_json"): the REXOMNI.md keypoint schema as a
// character-level automaton over the decoded text of a candidate vocabulary
// (json_vocab), with the coordinate tokens as one extra symbol. The schema has
// a fixed nesting depth, so the "stack" is implicit in the phase; a state is
// one small integer (phase * kKpSpan + counter), which lets the per-state
// closing cost be a precomputed table and lets a token be tested by stepping
// a copy of that integer over its characters. Everything here is built once
// per request (compile) and read-only after; the per-step mask walk
// allocates nothing beyond the TokenMask's own vectors.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "rex/status.h"
#include "sampling/token_mask.h"

namespace rex {

constexpr int kKpSpan = 72;  // counters run 0..65 (key/name length up to 64)
constexpr int kKpNameMax = 64;
constexpr int kKpWsMax = 16;  // characters of one whitespace gap between JSON tokens
constexpr int32_t kKpInf = 1 << 28;

// What a step did besides moving: an instance closed (its '}' was read).
struct KpStep {
  int32_t code = -1;  // -1: the character is not allowed here
  bool closed_instance = false;
};

// One character; `may_open` says whether a ',' may start another instance (the cap).
KpStep kp_step(int32_t code, unsigned char ch, bool may_open);
// A coordinate token: the next state, or -1; *index is the coordinate's slot in its
// string (0..3), *box whether that string is the bbox (ordered).
int32_t kp_coord(int32_t code, int* index, bool* box);
// A KEY or NAME state reading `len` more name characters: the state after, or -1
// (not a name state, or past the 64-character cap).
int32_t kp_name_run(int32_t code, int len);
int32_t kp_start();
bool kp_accepting(int32_t code);
bool kp_json_char(unsigned char ch);  // the JSON-safe character set of json_vocab texts

struct KeypointJsonTables {
  // Candidate tokens grouped by first byte: token i has ids[i] and text
  // chars[off[i] .. off[i+1]); bucket[b] .. bucket[b+1] are those starting with b.
  std::vector<int32_t> ids;
  std::vector<uint32_t> off;
  std::vector<unsigned char> chars;
  std::vector<uint32_t> bucket;                      // 257 entries
  std::vector<std::pair<int32_t, int32_t>> by_id;    // (id, token index), sorted by id
  std::vector<int32_t> cost;                         // per state code: fewest tokens to close, STOP included
  std::vector<uint8_t> name_len;                     // per token: its length if all name characters, else 0 (255: long)
  bool singles[256] = {};                            // single-character tokens present

  // Builds the tables; kInvalidArgument when a text is empty or leaves the
  // JSON-safe set, or when the single-character tokens cannot close the JSON.
  static Result<KeypointJsonTables> build(const std::vector<std::pair<int32_t, std::string>>& vocab);
  // build() through a small process-wide cache: every keypoint request of a
  // model sends the same ~80,000-token vocabulary, and building takes tens of
  // milliseconds on the engine's thread. Failures are not cached.
  static Result<std::shared_ptr<const KeypointJsonTables>> shared(const std::vector<std::pair<int32_t, std::string>>& vocab);
  int32_t cost_of(int32_t code) const { return code < 0 || size_t(code) >= cost.size() ? kKpInf : cost[size_t(code)]; }
  int32_t index_of(int32_t id) const;  // token index, or -1
  // Steps `code` over token i's characters (instances: closed so far, updated); -1 if refused.
  int32_t walk(int32_t code, size_t i, int cap, int* instances) const;
  // Marks hit[i] = 1 for every token i readable from `code` whose end state can close
  // within `budget` tokens after it (INT_MAX: any finite cost); returns how many.
  // `instances` closed so far count against `cap` (0: none).
  size_t mark(int32_t code, int cap, int instances, int budget, uint8_t* hit) const;
};

}  // namespace rex
