// The keypoint JSON automaton (see grammar_keypoint.h). The schema, one phase
// per position between JSON tokens, whitespace (space, newline, tab) allowed
// wherever JSON allows it:
//   ws ["```json" ws] "{" [member ("," member)*] "}" ws ["```" ws] STOP
//   member   := "KEY" ":" "{" "\"bbox\"" ":" BOX "," "\"keypoints\"" ":" "{" [kp ("," kp)*] "}" "}"
//   kp       := "NAME" ":" (POINT | "\"unvisible\"")
//   BOX      := "\"" [" "] C " " C " " C " " C [" "] "\""   (C: a coordinate token)
//   POINT    := "\"" [" "] C " " C [" "] "\""
// KEY and NAME: 1..64 of letters, digits, space, _ - '. Each whitespace gap
// holds at most kKpWsMax characters (the reference indents by a newline and a
// few spaces; an unbounded gap lets a weak model spend its budget on blanks,
// and whitespace-run tokens are a large share of the vocabulary). The closing cost of
// every state is computed by relaxing over the single-character tokens (and
// the coordinate symbol) until nothing changes: an upper bound on the true
// fewest-token completion that one allowed token always achieves.
#include "sampling/grammar_keypoint.h"

#include <algorithm>
#include <climits>
#include <cstring>
#include <mutex>

namespace rex {

namespace {

enum Phase : int32_t {
  kLead, kFence, kFenceWs, kTopOpen, kKey, kKeyColon, kInstBrace, kInstOpen, kBboxLit, kBboxColon,
  kBboxQuote, kBox, kAfterBox, kKpQuote, kKpLit, kKpColon, kKpBrace, kKpOpen, kName, kNameColon,
  kValQuote, kVal, kUnvis, kAfterVal, kKpNext, kInstClose, kAfterInst, kTopNext, kEnd, kCloseFence,
  kTail, kPhaseCount
};

constexpr const char kFenceText[] = "```json";  // kFence n: n characters read
constexpr const char kBboxText[] = "bbox\"";
constexpr const char kKpText[] = "keypoints\"";
constexpr const char kUnvisText[] = "unvisible\"";

constexpr int32_t at(int32_t phase, int32_t n = 0) { return phase * kKpSpan + n; }
bool ws(unsigned char c) { return c == ' ' || c == '\n' || c == '\t'; }
bool name_char(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == ' ' || c == '_' ||
         c == '-' || c == '\'';
}

// A literal: the next state after reading c at position n, or -1.
int32_t literal(const char* text, int32_t phase, int32_t n, unsigned char c, int32_t then) {
  if (c != static_cast<unsigned char>(text[n])) return -1;
  return text[n + 1] == '\0' ? then : at(phase, n + 1);
}

// A coordinate string of `arity` coordinates. n: 0 start, 1 leading space,
// 2k after coordinate k, 2k+1 the space after coordinate k (k < arity), 2*arity+1 trailing space.
int32_t coord_string_char(int32_t phase, int32_t n, int arity, unsigned char c, int32_t after) {
  if (n == 0) return c == ' ' ? at(phase, 1) : -1;
  if (n == 2 * arity) return c == ' ' ? at(phase, n + 1) : c == '"' ? after : -1;
  if (n == 2 * arity + 1) return c == '"' ? after : -1;
  if (n >= 2 && n % 2 == 0) return c == ' ' ? at(phase, n + 1) : -1;
  return -1;
}

}  // namespace

bool kp_json_char(unsigned char c) {
  return name_char(c) || ws(c) || c == '{' || c == '}' || c == ':' || c == ',' || c == '"' || c == '`';
}

int32_t kp_start() { return at(kLead); }

int32_t kp_name_run(int32_t code, int len) {
  const int32_t phase = code / kKpSpan, n = code % kKpSpan;
  if (phase != kKey && phase != kName) return -1;
  return n + len <= kKpNameMax ? at(phase, n + len) : -1;
}
bool kp_accepting(int32_t code) { return code >= 0 && (code / kKpSpan == kEnd || code / kKpSpan == kTail); }

namespace {
inline KpStep step_inline(int32_t code, unsigned char c, bool may_open);
}  // namespace

KpStep kp_step(int32_t code, unsigned char c, bool may_open) { return step_inline(code, c, may_open); }

namespace {

inline KpStep step_inline(int32_t code, unsigned char c, bool may_open) {
  const int32_t phase = code / kKpSpan, n = code % kKpSpan;
  KpStep r;
  // Whitespace between JSON tokens: the counter n is the gap's length so far, capped.
  const int32_t gap = ws(c) ? (n < kKpWsMax ? code + 1 : -1) : -2;  // -2: not whitespace
  // Phases that skip whitespace and wait for one structural character.
  auto after_ws = [&](unsigned char want, int32_t then) { return gap != -2 ? gap : c == want ? then : -1; };
  switch (phase) {
    case kLead: r.code = gap != -2 ? gap : c == '`' ? at(kFence, 1) : c == '{' ? at(kTopOpen) : -1; break;
    case kFence: r.code = literal(kFenceText, kFence, n, c, at(kFenceWs)); break;
    case kFenceWs: r.code = after_ws('{', at(kTopOpen)); break;
    case kTopOpen: r.code = gap != -2 ? gap : c == '"' && may_open ? at(kKey, 0) : c == '}' ? at(kEnd) : -1; break;
    case kKey:
    case kName: {
      const int32_t colon = phase == kKey ? at(kKeyColon) : at(kNameColon);
      if (c == '"') r.code = n >= 1 ? colon : -1;
      else r.code = name_char(c) && n < kKpNameMax ? at(phase, n + 1) : -1;
      break;
    }
    case kKeyColon: r.code = after_ws(':', at(kInstBrace)); break;
    case kInstBrace: r.code = after_ws('{', at(kInstOpen)); break;
    case kInstOpen: r.code = after_ws('"', at(kBboxLit, 0)); break;
    case kBboxLit: r.code = literal(kBboxText, kBboxLit, n, c, at(kBboxColon)); break;
    case kBboxColon: r.code = after_ws(':', at(kBboxQuote)); break;
    case kBboxQuote: r.code = after_ws('"', at(kBox, 0)); break;
    case kBox: r.code = coord_string_char(kBox, n, 4, c, at(kAfterBox)); break;
    case kAfterBox: r.code = after_ws(',', at(kKpQuote)); break;
    case kKpQuote: r.code = after_ws('"', at(kKpLit, 0)); break;
    case kKpLit: r.code = literal(kKpText, kKpLit, n, c, at(kKpColon)); break;
    case kKpColon: r.code = after_ws(':', at(kKpBrace)); break;
    case kKpBrace: r.code = after_ws('{', at(kKpOpen)); break;
    case kKpOpen: r.code = gap != -2 ? gap : c == '"' ? at(kName, 0) : c == '}' ? at(kInstClose) : -1; break;
    case kNameColon: r.code = after_ws(':', at(kValQuote)); break;
    case kValQuote: r.code = after_ws('"', at(kVal, 0)); break;
    case kVal:
      r.code = n == 0 && c == 'u' ? at(kUnvis, 1) : coord_string_char(kVal, n, 2, c, at(kAfterVal));
      break;
    case kUnvis: r.code = literal(kUnvisText, kUnvis, n, c, at(kAfterVal)); break;
    case kAfterVal: r.code = gap != -2 ? gap : c == ',' ? at(kKpNext) : c == '}' ? at(kInstClose) : -1; break;
    case kKpNext: r.code = after_ws('"', at(kName, 0)); break;
    case kInstClose:
      r.code = after_ws('}', at(kAfterInst));
      r.closed_instance = c == '}';
      break;
    case kAfterInst: r.code = gap != -2 ? gap : c == ',' && may_open ? at(kTopNext) : c == '}' ? at(kEnd) : -1; break;
    case kTopNext: r.code = after_ws('"', at(kKey, 0)); break;
    case kEnd: r.code = gap != -2 ? gap : c == '`' ? at(kCloseFence, 1) : -1; break;
    case kCloseFence: r.code = c != '`' ? -1 : n == 2 ? at(kTail) : at(kCloseFence, n + 1); break;
    case kTail: r.code = gap != -2 ? gap : -1; break;
    default: r.code = -1; break;
  }
  return r;
}

}  // namespace

int32_t kp_coord(int32_t code, int* index, bool* box) {
  const int32_t phase = code / kKpSpan, n = code % kKpSpan;
  if (phase != kBox && phase != kVal) return -1;
  const int arity = phase == kBox ? 4 : 2;
  *box = phase == kBox;
  if (n == 0 || n == 1) {
    *index = 0;
    return at(phase, 2);
  }
  if (n % 2 == 1 && n < 2 * arity) {
    *index = n / 2;
    return at(phase, n + 1);
  }
  return -1;
}

int32_t KeypointJsonTables::index_of(int32_t id) const {
  auto it = std::lower_bound(by_id.begin(), by_id.end(), std::make_pair(id, int32_t(-1)));
  return it != by_id.end() && it->first == id ? it->second : -1;
}

int32_t KeypointJsonTables::walk(int32_t code, size_t i, int cap, int* instances) const {
  for (uint32_t k = off[i]; k < off[i + 1] && code >= 0; ++k) {
    const KpStep s = kp_step(code, chars[k], cap == 0 || *instances < cap);
    code = s.code;
    if (s.closed_instance) ++*instances;
  }
  return code;
}

size_t KeypointJsonTables::mark(int32_t code, int cap, int instances, int budget, uint8_t* hit) const {
  auto fits = [&](int32_t next) {
    const int32_t k = cost[size_t(next)];
    return k < kKpInf && (budget == INT_MAX || 1 + k <= budget);
  };
  const int32_t name_base = kp_name_run(code, 0);
  size_t count = 0;
  for (int b = 0; b < 256; ++b) {
    const uint32_t begin = bucket[size_t(b)], end = bucket[size_t(b) + 1];
    if (begin == end) continue;
    const KpStep first = step_inline(code, static_cast<unsigned char>(b), cap == 0 || instances < cap);
    if (first.code < 0) continue;
    const int base = instances + (first.closed_instance ? 1 : 0);
    for (uint32_t i = begin; i < end; ++i) {
      int32_t next;
      if (name_base >= 0 && name_len[i] > 0) {  // a KEY/NAME goes on: no need to step each character
        next = kp_name_run(code, name_len[i]);
      } else {
        next = first.code;
        int closed = base;
        for (uint32_t k = off[i] + 1; k < off[i + 1] && next >= 0; ++k) {
          const KpStep s = step_inline(next, chars[k], cap == 0 || closed < cap);
          next = s.code;
          closed += s.closed_instance ? 1 : 0;
        }
      }
      if (next >= 0 && fits(next)) {
        hit[i] = 1;
        ++count;
      }
    }
  }
  return count;
}

namespace {

// Closing costs over the single-character tokens: relax until nothing changes
// (a few sweeps; later phases first, so most costs settle in the first).
std::vector<int32_t> closing_costs(const bool singles[256]) {
  const int32_t states = kPhaseCount * kKpSpan;
  std::vector<int32_t> cost(size_t(states), kKpInf);
  for (int32_t s = 0; s < states; ++s)
    if (kp_accepting(s)) cost[size_t(s)] = 1;
  for (bool changed = true; changed;) {
    changed = false;
    for (int32_t s = states - 1; s >= 0; --s) {
      int32_t best = cost[size_t(s)];
      int index = 0;
      bool box = false;
      const int32_t after_coord = kp_coord(s, &index, &box);
      if (after_coord >= 0) best = std::min(best, 1 + cost[size_t(after_coord)]);
      for (int ch = 0; ch < 256; ++ch) {
        if (!singles[ch]) continue;
        const int32_t next = step_inline(s, static_cast<unsigned char>(ch), true).code;
        if (next >= 0) best = std::min(best, 1 + cost[size_t(next)]);
      }
      if (best < cost[size_t(s)]) {
        cost[size_t(s)] = best;
        changed = true;
      }
    }
  }
  return cost;
}

Status check_texts(const std::vector<std::pair<int32_t, std::string>>& vocab, bool singles[256]) {
  for (size_t i = 0; i < vocab.size(); ++i) {
    const std::string& text = vocab[i].second;
    const std::string at = "json_vocab[" + std::to_string(i) + "]";
    if (text.empty()) return Status(StatusCode::kInvalidArgument, "grammar: expected " + at + " to have non-empty text but got \"\"");
    for (char ch : text)
      if (!kp_json_char(static_cast<unsigned char>(ch)))
        return Status(StatusCode::kInvalidArgument, "grammar: expected " + at + " text of JSON-safe characters but got byte " +
                                                        std::to_string(int(static_cast<unsigned char>(ch))));
    if (text.size() == 1) singles[static_cast<unsigned char>(text[0])] = true;
  }
  if (closing_costs(singles)[size_t(kp_start())] >= kKpInf)
    return Status(StatusCode::kInvalidArgument,
                  "grammar: expected json_vocab to hold the single-character tokens that close the keypoint JSON but it lacks some");
  return Status::Ok();
}

}  // namespace

Result<std::shared_ptr<const KeypointJsonTables>> KeypointJsonTables::shared(
    const std::vector<std::pair<int32_t, std::string>>& vocab) {
  struct Entry {
    uint64_t hash;
    std::vector<std::pair<int32_t, std::string>> vocab;
    std::shared_ptr<const KeypointJsonTables> tables;
  };
  static std::mutex mu;
  static std::vector<Entry> cache;  // newest last, at most 4
  uint64_t hash = 1469598103934665603ull;  // FNV-1a over ids and texts
  for (const auto& e : vocab) {
    hash = (hash ^ uint64_t(uint32_t(e.first))) * 1099511628211ull;
    for (char ch : e.second) hash = (hash ^ static_cast<unsigned char>(ch)) * 1099511628211ull;
    hash = (hash ^ 0x7c) * 1099511628211ull;
  }
  {
    std::lock_guard<std::mutex> lock(mu);
    for (const Entry& e : cache)
      if (e.hash == hash && e.vocab == vocab) return e.tables;
  }
  auto built = build(vocab);
  if (!built.ok()) return built.status();
  auto tables = std::make_shared<const KeypointJsonTables>(std::move(built).value());
  std::lock_guard<std::mutex> lock(mu);
  if (cache.size() >= 4) cache.erase(cache.begin());
  cache.push_back({hash, vocab, tables});
  return tables;
}

Result<KeypointJsonTables> KeypointJsonTables::build(const std::vector<std::pair<int32_t, std::string>>& vocab) {
  KeypointJsonTables t;
  REX_RETURN_IF_ERROR(check_texts(vocab, t.singles));
  std::vector<size_t> order(vocab.size());
  for (size_t i = 0; i < vocab.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return static_cast<unsigned char>(vocab[a].second[0]) < static_cast<unsigned char>(vocab[b].second[0]);
  });
  t.bucket.assign(257, 0);
  t.off.push_back(0);
  for (size_t i : order) {
    const std::string& text = vocab[i].second;
    t.by_id.push_back({vocab[i].first, int32_t(t.ids.size())});
    t.ids.push_back(vocab[i].first);
    t.chars.insert(t.chars.end(), text.begin(), text.end());
    t.off.push_back(uint32_t(t.chars.size()));
    bool pure = true;
    for (char ch : text) pure = pure && name_char(static_cast<unsigned char>(ch));
    t.name_len.push_back(pure ? uint8_t(std::min<size_t>(text.size(), 255)) : 0);
    ++t.bucket[size_t(static_cast<unsigned char>(text[0])) + 1];
  }
  for (size_t b = 0; b < 256; ++b) t.bucket[b + 1] += t.bucket[b];
  std::sort(t.by_id.begin(), t.by_id.end());

  t.cost = closing_costs(t.singles);
  return t;
}

}  // namespace rex
