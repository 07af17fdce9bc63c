// The coordinate-token grammar, sampler alone: for every task kind, random
// logits (with random boosts on structural and separator ids so every branch
// is taken) go through the real sample_token path under the grammar's mask for
// at least 100,000 steps. Each finished output is then re-checked by an
// independent parser written here from REXOMNI.md "Output", not from the
// state machine: well-formed, arity, x1 >= x0 and y1 >= y0, the cap, no
// duplicate box within a category, and a STOP only at a group boundary — even
// when max_new_tokens cuts in (the budget check must close the output first).
// Keypoint JSON (keypoint_json mode) is checked the same way, by a plain JSON
// reader and the REXOMNI.md schema, over a small JSON-ish token vocabulary.
// The synthetic vocabulary mirrors the real layout: text ids, then 1000
// coordinate ids, then the special ids, then padding.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "sampling/grammar.h"
#include "sampling/rng.h"
#include "sampling/sampling.h"
#include "test_harness.h"

using namespace rex;

namespace {

constexpr int32_t kComma = 11, kSpace = 20, kNone = 30, kColon = 31, kQuote = 32, kBbox = 33;
constexpr int32_t kCoord0 = 200;
constexpr int32_t kImEnd = 1200, kRefStart = 1201, kRefEnd = 1202, kBoxStart = 1203, kBoxEnd = 1204,
                  kEndOfText = 1205;
constexpr int kVocab = 1216;  // 1210..1215: padding, as the real model's rows past the tokenizer

bool is_coord(int32_t id) { return id >= kCoord0 && id < kCoord0 + 1000; }

OutputGrammar base(ItemArity arity, PhraseMode phrases) {
  OutputGrammar g;
  g.coord_first = kCoord0;
  g.coord_count = 1000;
  g.stop_ids = {kImEnd};
  g.ref_start = kRefStart;
  g.ref_end = kRefEnd;
  g.box_start = kBoxStart;
  g.box_end = kBoxEnd;
  g.none_tokens = {kNone};
  g.item_separators = {{kComma}, {kComma, kSpace}};
  g.group_separators = {{kComma, kSpace}};
  g.arity = arity;
  g.phrase_mode = phrases;
  if (phrases == PhraseMode::kFixed) g.phrases = {{40}, {40, 41}, {42, 43, 44}, {45}, {42, 46}};
  g.free_text_banned = {{kCoord0, kVocab}};  // coordinates, specials, padding
  g.max_phrase_tokens = 12;
  return g;
}

// keypoint_json: a small JSON-ish vocabulary (every single character the
// schema needs, plus merged pieces as BPE would have them). The boosted ids
// (",", " ", ":", "\"", "\"bbox\"", "None") are among them.
std::vector<std::pair<int32_t, std::string>> json_vocab() {
  std::vector<std::pair<int32_t, std::string>> v = {
      {kComma, ","}, {kSpace, " "}, {kColon, ":"}, {kQuote, "\""}, {kBbox, "\"bbox\""}, {kNone, "None"}};
  std::vector<std::string> texts;
  for (char ch = 'a'; ch <= 'z'; ++ch) texts.push_back(std::string(1, ch));
  for (char ch = '0'; ch <= '9'; ++ch) texts.push_back(std::string(1, ch));
  for (const char* t : {"_", "-", "'", "{", "}", "`", "\n", "\t", "P", "```json", "```", "json", "  ", "    ",
                        "{\n", "}\n", "\n}", "\"keypoints\"", "\": \"", ": \"", "\": {", "\": ", ", ", ",\n", "\",",
                        "\"}", "}}", "}, ", "unvisible", "\"unvisible\"", "person", "person1", "\"person", "nose",
                        "left eye", " \"", "\" ", "box", "key", "points", "1\": {", "visible", "\"left", "\n  \"",
                        "un", "\"b", "bb", "ox\"", "\"k", "eypoints", "\"},\n", "\"}\n", " }"})
    texts.push_back(t);
  int32_t id = 0;
  for (const std::string& t : texts) {
    while (std::any_of(v.begin(), v.end(), [&](const std::pair<int32_t, std::string>& e) { return e.first == id; })) ++id;
    v.push_back({id, t});
  }
  return v;
}

OutputGrammar keypoint_json_grammar(int cap) {
  OutputGrammar g;
  g.mode = GrammarMode::kKeypointJson;
  g.coord_first = kCoord0;
  g.stop_ids = {kImEnd};
  g.ref_start = kRefStart;
  g.ref_end = kRefEnd;
  g.box_start = kBoxStart;
  g.box_end = kBoxEnd;
  g.max_predictions = cap;
  g.json_vocab = json_vocab();
  return g;
}

struct TaskCase {
  const char* name;
  OutputGrammar g;
};

std::vector<TaskCase> task_cases() {
  std::vector<TaskCase> v;
  auto det = base(ItemArity::kBox, PhraseMode::kFixed);
  det.forbid_duplicate_boxes = true;
  det.max_predictions = 25;
  v.push_back({"detection", det});
  auto point = base(ItemArity::kPoint, PhraseMode::kFixed);
  point.forbid_duplicate_boxes = true;
  v.push_back({"pointing", point});
  auto vp = base(ItemArity::kBox, PhraseMode::kFree);
  vp.max_predictions = 8;
  v.push_back({"visual_prompting", vp});
  auto ocr = base(ItemArity::kBox, PhraseMode::kFree);
  ocr.none_tokens.clear();
  v.push_back({"ocr_box", ocr});
  auto poly = base(ItemArity::kPolygon, PhraseMode::kFree);
  poly.max_item_coords = 16;
  v.push_back({"ocr_polygon", poly});
  auto poly_open = base(ItemArity::kPolygon, PhraseMode::kFree);
  v.push_back({"ocr_polygon_uncapped", poly_open});
  auto gui = base(ItemArity::kBox, PhraseMode::kFree);
  gui.forbid_duplicate_boxes = true;
  v.push_back({"gui_grounding", gui});
  auto guip = base(ItemArity::kPoint, PhraseMode::kFree);
  v.push_back({"gui_pointing", guip});
  OutputGrammar kp;
  kp.mode = GrammarMode::kFree;
  kp.coord_first = kCoord0;
  kp.stop_ids = {kImEnd};
  kp.ref_start = kRefStart;
  kp.ref_end = kRefEnd;
  kp.box_start = kBoxStart;
  kp.box_end = kBoxEnd;
  kp.free_text_banned = {{kImEnd, kVocab}};
  kp.coords_only_in_runs = true;
  CoordinateRun box;
  box.triggers = {{kBbox, kColon, kQuote}};
  box.separator = {kSpace};
  box.coords = 4;
  box.ordered_box = true;
  CoordinateRun pt;
  pt.triggers = {{kColon, kQuote}};
  pt.separator = {kSpace};
  pt.coords = 2;
  pt.optional = true;
  kp.runs = {box, pt};
  v.push_back({"keypoint", kp});
  v.push_back({"keypoint_json", keypoint_json_grammar(0)});
  v.push_back({"keypoint_json_capped", keypoint_json_grammar(2)});
  return v;
}

// ---- the independent checker (groups mode) ----
struct Reader {
  const std::vector<int32_t>& t;
  size_t i = 0;
  bool at(int32_t id) const { return i < t.size() && t[i] == id; }
  // Longest separator matching at i, consumed; false if none.
  bool sep(const std::vector<std::vector<int32_t>>& seqs) {
    size_t best = 0;
    for (auto& s : seqs)
      if (s.size() > best && i + s.size() <= t.size() && std::equal(s.begin(), s.end(), t.begin() + ptrdiff_t(i)))
        best = s.size();
    i += best;
    return best > 0;
  }
};

std::string check_groups(const OutputGrammar& g, const std::vector<int32_t>& t) {
  Reader r{t};
  int items = 0;
  std::map<std::vector<int32_t>, std::set<std::vector<int32_t>>> seen;
  if (!r.at(kImEnd)) {
    for (;;) {
      if (!r.at(kRefStart)) return "expected <|object_ref_start|> at " + std::to_string(r.i);
      ++r.i;
      std::vector<int32_t> phrase;
      while (r.i < t.size() && t[r.i] != kRefEnd) {
        const int32_t id = t[r.i++];
        if (id >= kCoord0) return "non-text id " + std::to_string(id) + " in a phrase";
        phrase.push_back(id);
      }
      if (!r.at(kRefEnd)) return "unterminated phrase";
      ++r.i;
      if (phrase.empty()) return "empty phrase";
      if (g.phrase_mode == PhraseMode::kFixed &&
          std::find(g.phrases.begin(), g.phrases.end(), phrase) == g.phrases.end())
        return "phrase outside the categories";
      if (g.max_phrase_tokens && int(phrase.size()) > g.max_phrase_tokens) return "phrase too long";
      if (!r.at(kBoxStart)) return "expected <|box_start|>";
      ++r.i;
      if (!g.none_tokens.empty() && r.at(g.none_tokens[0])) {
        r.i += g.none_tokens.size();
      } else {
        for (;;) {
          std::vector<int32_t> item;
          while (r.i < t.size() && is_coord(t[r.i])) item.push_back(t[r.i++] - kCoord0);
          const int n = int(item.size());
          if (g.arity == ItemArity::kBox && n != 4) return "box of " + std::to_string(n) + " coordinates";
          if (g.arity == ItemArity::kPoint && n != 2) return "point of " + std::to_string(n) + " coordinates";
          if (g.arity == ItemArity::kPolygon && (n < 6 || n % 2 || (g.max_item_coords && n > g.max_item_coords)))
            return "polygon of " + std::to_string(n) + " coordinates";
          if (g.arity == ItemArity::kBox && (item[2] < item[0] || item[3] < item[1])) return "box out of order";
          if (g.forbid_duplicate_boxes && g.arity != ItemArity::kPolygon && !seen[phrase].insert(item).second)
            return "duplicate item within a category";
          ++items;
          if (r.at(kBoxEnd)) break;
          if (!r.sep(g.item_separators)) return "expected an item separator or <|box_end|> at " + std::to_string(r.i);
        }
      }
      if (!r.at(kBoxEnd)) return "expected <|box_end|>";
      ++r.i;
      if (r.at(kImEnd)) break;
      if (!r.sep(g.group_separators)) return "expected a group separator or STOP at " + std::to_string(r.i);
    }
  }
  if (r.i + 1 != t.size()) return "STOP is not the last token (or is missing)";
  if (g.max_predictions && items > g.max_predictions) return "more items than the cap";
  return "";
}

// The keypoint (free mode) checker: every coordinate sits in a run right
// after its trigger, runs have their arity (and box order), STOP ends it.
std::string check_free(const OutputGrammar& g, const std::vector<int32_t>& t) {
  if (t.empty() || t.back() != kImEnd) return "missing the final STOP";
  for (size_t i = 0; i + 1 < t.size(); ++i) {
    if (t[i] >= kImEnd) return "banned id " + std::to_string(t[i]);
    if (is_coord(t[i])) return "coordinate outside a run at " + std::to_string(i);
    // Longest trigger ending at i.
    int run = -1;
    size_t len = 0;
    for (size_t r = 0; r < g.runs.size(); ++r)
      for (auto& tr : g.runs[r].triggers)
        if (tr.size() > len && tr.size() <= i + 1 && std::equal(tr.begin(), tr.end(), t.begin() + ptrdiff_t(i + 1 - tr.size()))) {
          run = int(r);
          len = tr.size();
        }
    if (run < 0) continue;
    const CoordinateRun& cr = g.runs[size_t(run)];
    if (cr.optional && (i + 1 >= t.size() || t[i + 1] != cr.separator[0])) continue;
    std::vector<int32_t> bins;
    size_t j = i + 1;
    for (int c = 0; c < cr.coords; ++c) {
      for (int32_t s : cr.separator)
        if (j >= t.size() || t[j++] != s) return "run separator missing";
      if (j >= t.size() || !is_coord(t[j])) return "run coordinate missing";
      bins.push_back(t[j++] - kCoord0);
    }
    if (cr.ordered_box && (bins[2] < bins[0] || bins[3] < bins[1])) return "run box out of order";
    i = j - 1;
  }
  return "";
}

// The keypoint JSON checker, from REXOMNI.md "Output" alone: the tokens
// rendered as text (coordinates as "<k>"), an optional ```json fence, a JSON
// object read by a plain JSON reader (objects and strings; the vocabulary has
// no backslash), then the schema: instance -> {"bbox": " <x0> <y0> <x1> <y1> ",
// "keypoints": {name: " <x> <y> " | "unvisible"}} in that order, x1 >= x0,
// y1 >= y0, an optional closing fence, STOP last; *instances gets the count.
struct JsonNode {
  bool is_string = false;
  std::string text;                                       // string
  std::vector<std::pair<std::string, JsonNode>> members;  // object, in order
};

struct JsonReader {
  const std::string& s;
  size_t i = 0;
  std::string error = {};
  void skip_ws() { while (i < s.size() && (s[i] == ' ' || s[i] == '\n' || s[i] == '\t' || s[i] == '\r')) ++i; }
  bool string(std::string* out) {
    if (i >= s.size() || s[i] != '"') return error = "expected '\"' at " + std::to_string(i), false;
    size_t end = s.find('"', i + 1);
    if (end == std::string::npos) return error = "unterminated string", false;
    *out = s.substr(i + 1, end - i - 1);
    if (out->find('\\') != std::string::npos || out->find('\n') != std::string::npos) return error = "escape or newline in a string", false;
    i = end + 1;
    return true;
  }
  bool value(JsonNode* out) {
    skip_ws();
    if (i < s.size() && s[i] == '"') {
      out->is_string = true;
      return string(&out->text);
    }
    if (i >= s.size() || s[i] != '{') return error = "expected a string or an object at " + std::to_string(i), false;
    ++i;
    skip_ws();
    if (i < s.size() && s[i] == '}') return ++i, true;
    for (;;) {
      skip_ws();
      std::string key;
      if (!string(&key)) return false;
      skip_ws();
      if (i >= s.size() || s[i] != ':') return error = "expected ':' at " + std::to_string(i), false;
      ++i;
      JsonNode child;
      if (!value(&child)) return false;
      out->members.push_back({key, std::move(child)});
      skip_ws();
      if (i < s.size() && s[i] == ',') { ++i; continue; }
      if (i < s.size() && s[i] == '}') return ++i, true;
      return error = "expected ',' or '}' at " + std::to_string(i), false;
    }
  }
};

// " <a> <b> ... " (leading/trailing space optional, single spaces between) -> bins, or empty.
std::vector<int> coord_string(const std::string& text, size_t n) {
  std::string t = text;
  if (!t.empty() && t[0] == ' ') t.erase(0, 1);
  if (!t.empty() && t.back() == ' ') t.pop_back();
  std::vector<int> bins;
  size_t at = 0;
  for (size_t k = 0; k < n; ++k) {
    if (k > 0) {
      if (at >= t.size() || t[at] != ' ') return {};
      ++at;
    }
    if (at >= t.size() || t[at] != '<') return {};
    const size_t close = t.find('>', at);
    if (close == std::string::npos || close == at + 1) return {};
    for (size_t d = at + 1; d < close; ++d)
      if (t[d] < '0' || t[d] > '9') return {};
    bins.push_back(std::stoi(t.substr(at + 1, close - at - 1)));
    at = close + 1;
  }
  return at == t.size() ? bins : std::vector<int>{};
}

std::string check_keypoint_json(const OutputGrammar& g, const std::vector<int32_t>& t, int* instances) {
  if (t.empty() || t.back() != kImEnd) return "missing the final STOP";
  std::map<int32_t, std::string> text_of(g.json_vocab.begin(), g.json_vocab.end());
  std::string s;
  for (size_t i = 0; i + 1 < t.size(); ++i) {
    if (is_coord(t[i])) s += "<" + std::to_string(t[i] - kCoord0) + ">";
    else if (text_of.count(t[i])) s += text_of[t[i]];
    else return "id " + std::to_string(t[i]) + " outside the JSON vocabulary";
  }
  JsonReader r{s};
  r.skip_ws();
  if (s.compare(r.i, 7, "```json") == 0) r.i += 7;
  JsonNode root;
  if (!r.value(&root)) return r.error + " in " + s;
  if (root.is_string) return "top level is a string";
  r.skip_ws();
  if (s.compare(r.i, 3, "```") == 0) r.i += 3;
  r.skip_ws();
  if (r.i != s.size()) return "text after the JSON at " + std::to_string(r.i) + " in " + s;
  for (const auto& inst : root.members) {
    const JsonNode& v = inst.second;
    if (inst.first.empty() || v.is_string || v.members.size() != 2 || v.members[0].first != "bbox" ||
        v.members[1].first != "keypoints")
      return "instance " + inst.first + " is not {\"bbox\", \"keypoints\"} in " + s;
    const JsonNode& bbox = v.members[0].second;
    const std::vector<int> b = bbox.is_string ? coord_string(bbox.text, 4) : std::vector<int>{};
    if (b.size() != 4) return "bbox \"" + bbox.text + "\" is not 4 coordinates";
    if (b[2] < b[0] || b[3] < b[1]) return "bbox out of order: " + bbox.text;
    const JsonNode& kps = v.members[1].second;
    if (kps.is_string) return "keypoints is a string";
    for (const auto& kp : kps.members) {
      if (kp.first.empty()) return "empty keypoint name";
      if (!kp.second.is_string) return "keypoint value is an object";
      if (kp.second.text != "unvisible" && coord_string(kp.second.text, 2).size() != 2)
        return "keypoint \"" + kp.second.text + "\" is neither a point nor unvisible";
    }
  }
  *instances = int(root.members.size());
  if (g.max_predictions && *instances > g.max_predictions) return "more instances than the cap";
  return "";
}

struct Stats {
  long steps = 0, outputs = 0, items = 0, budget_closed = 0;
  int last_items = 0;
};

// One random output under `g`: random logits, random sampling parameters.
const std::vector<float>& noise_pool() {
  static const std::vector<float> pool = [] {
    std::vector<float> v(size_t(1) << 18);
    Pcg32 r(12345);
    for (float& x : v) x = float(r.next_double() - 0.5);
    return v;
  }();
  return pool;
}

std::vector<int32_t> generate(const OutputGrammar& g, Pcg32& rng, Stats& st, std::string* error) {
  const std::vector<float>& pool = noise_pool();
  auto state = GrammarState::create(g, kVocab);
  if (!state.ok()) {
    *error = state.status().message();
    return {};
  }
  GrammarState& gs = state.value();
  // Most outputs take the cheap path (greedy over the masked random logits);
  // one in 32 goes through sample_token with random parameters.
  const bool full = rng.next_u32() % 32 == 0;
  SamplingParams p;
  const uint32_t kind = rng.next_u32() % 8;
  if (kind < 3) {
    p.temperature = 0;  // greedy
  } else {
    p.temperature = float(0.3 + 1.5 * rng.next_double());
    if (kind == 4) p.top_k = 1 + int(rng.next_u32() % 50);
    if (kind == 5) p.top_p = float(0.5 + 0.5 * rng.next_double());
  }
  p.repetition_penalty = rng.next_u32() % 2 ? 1.05f : 1.0f;
  const int max_new = gs.cost_to_finish() + int(rng.next_u32() % 160);  // keypoint_json starts at 3: "{", "}", STOP
  TokenHistory history(kVocab);
  std::vector<int32_t> out;
  std::vector<float> logits(kVocab);
  const int32_t boost_ids[] = {kImEnd, kBoxEnd, kComma, kSpace, kRefEnd, kNone, kColon, kQuote, kBbox};
  while (int(out.size()) < max_new && !gs.done()) {
    const int left = max_new - int(out.size());
    if (gs.cost_to_finish() > left) {
      *error = "cost to finish " + std::to_string(gs.cost_to_finish()) + " exceeds the " + std::to_string(left) + " tokens left";
      return out;
    }
    const double scale = 1.0 + 6.0 * rng.next_double();
    // A random window of a pool of uniform noise, scaled: random logits at memcpy cost.
    const float* noise = &pool[rng.next_u32() % uint32_t(pool.size() - kVocab)];
    for (int i = 0; i < kVocab; ++i) logits[size_t(i)] = noise[i] * float(scale);
    for (int32_t id : boost_ids)
      if (rng.next_u32() % 3 == 0) logits[size_t(id)] += float(8.0 * rng.next_double());
    const TokenMask& mask = gs.allowed(left);
    if (mask.first_allowed(kVocab) < 0) {
      *error = "empty mask";
      return out;
    }
    SampledToken tok;
    if (full) {
      tok = sample_token(logits.data(), kVocab, p, history, rng, &mask);
    } else {
      apply_token_mask(logits.data(), kVocab, mask);
      tok.id = argmax(logits.data(), kVocab);
    }
    if (!mask.allows(tok.id)) {
      *error = "sampled a disallowed id " + std::to_string(tok.id);
      return out;
    }
    Status s = gs.advance(tok.id);
    if (!s.ok()) {
      *error = s.message();
      return out;
    }
    out.push_back(tok.id);
    history.add(tok.id);
    ++st.steps;
  }
  ++st.outputs;
  st.items += gs.predictions();
  st.last_items = gs.predictions();
  if (int(out.size()) == max_new) ++st.budget_closed;
  return out;
}

std::string show(const std::vector<int32_t>& t) {
  std::string s;
  for (int32_t id : t) s += (is_coord(id) ? "<" + std::to_string(id - kCoord0) + ">" : "[" + std::to_string(id) + "]");
  return s;
}

}  // namespace

REX_TEST(random_logits_property_every_task) {
  for (const TaskCase& tc : task_cases()) {
    Pcg32 rng(0x5eedULL + uint64_t(tc.name[0]) * 131 + uint64_t(tc.name[4]));
    Stats st;
    int failures = 0;
    while (st.steps < 100000 && failures < 3) {
      std::string error;
      std::vector<int32_t> out = generate(tc.g, rng, st, &error);
      int instances = 0;
      if (error.empty())
        error = tc.g.mode == GrammarMode::kFree           ? check_free(tc.g, out)
                : tc.g.mode == GrammarMode::kKeypointJson ? check_keypoint_json(tc.g, out, &instances)
                                                          : check_groups(tc.g, out);
      if (error.empty() && tc.g.mode == GrammarMode::kKeypointJson && instances != st.last_items)
        error = "the state counted " + std::to_string(st.last_items) + " instances, the checker " + std::to_string(instances);
      if (!error.empty()) {
        ++failures;
        ::rex_test::fail(__FILE__, __LINE__, std::string(tc.name) + ": " + error + " in " + show(out));
      }
    }
    std::printf("  %-22s %ld steps, %ld outputs, %ld items, %ld closed by the budget\n", tc.name, st.steps,
                st.outputs, st.items, st.budget_closed);
    CHECK(st.steps >= 100000);
    // The branches were really exercised (free mode: ordered box runs, which need a 3-token trigger).
    CHECK(st.items > (tc.g.mode == GrammarMode::kGroups ? 1000 : 100));
    if (std::string(tc.name) == "keypoint_json") CHECK(st.budget_closed > 100);
  }
}

namespace {

// Feeds `ids` through advance(); returns the index of the first rejected id, or -1.
int feed(GrammarState& gs, const std::vector<int32_t>& ids) {
  for (size_t i = 0; i < ids.size(); ++i)
    if (!gs.advance(ids[i]).ok()) return int(i);
  return -1;
}
int32_t c(int bin) { return kCoord0 + bin; }

}  // namespace

REX_TEST(accepts_the_reference_output_shape) {
  auto g = base(ItemArity::kBox, PhraseMode::kFixed);
  auto gs = GrammarState::create(g, kVocab);
  CHECK(gs.ok());
  // <ref>car door</ref><box><1><2><3><4>,<5><6><7><8>, <9><9><9><9></box>, <ref>x</ref><box>None</box><|im_end|>
  const std::vector<int32_t> ids = {kRefStart, 40, 41, kRefEnd, kBoxStart, c(1), c(2), c(3), c(4), kComma, c(5), c(6),
                                    c(7), c(8), kComma, kSpace, c(9), c(9), c(9), c(9), kBoxEnd, kComma, kSpace,
                                    kRefStart, 45, kRefEnd, kBoxStart, kNone, kBoxEnd, kImEnd};
  CHECK_EQ(feed(gs.value(), ids), -1);
  CHECK(gs.value().done());
  CHECK_EQ(gs.value().predictions(), 3);
  auto empty = GrammarState::create(g, kVocab);
  CHECK_EQ(feed(empty.value(), {kImEnd}), -1);  // no groups at all is a valid output
}

REX_TEST(rejects_what_the_grammar_forbids) {
  auto g = base(ItemArity::kBox, PhraseMode::kFixed);
  g.forbid_duplicate_boxes = true;
  g.max_predictions = 2;
  auto fresh = [&] { return std::move(GrammarState::create(g, kVocab)).value(); };
  const std::vector<int32_t> head = {kRefStart, 40, kRefEnd, kBoxStart};
  auto with = [&](std::vector<int32_t> tail) {
    std::vector<int32_t> v = head;
    v.insert(v.end(), tail.begin(), tail.end());
    return v;
  };
  { auto s = fresh(); CHECK_EQ(feed(s, with({c(5), c(5), c(4)})), 6); }              // x1 < x0
  { auto s = fresh(); CHECK_EQ(feed(s, with({c(5), c(5), c(5), c(4)})), 7); }        // y1 < y0
  { auto s = fresh(); CHECK_EQ(feed(s, with({c(1), c(2), c(3), kBoxEnd})), 7); }     // 3 coordinates
  { auto s = fresh(); CHECK_EQ(feed(s, with({c(1), c(2), c(3), c(4), c(5)})), 8); }  // 5 coordinates
  { auto s = fresh(); CHECK_EQ(feed(s, with({c(1), c(2), c(3), c(4), kImEnd})), 8); }  // stop inside a group
  { auto s = fresh(); CHECK_EQ(feed(s, {kRefStart, 42, 43, kRefEnd}), 3); }          // not a category
  { auto s = fresh(); CHECK_EQ(feed(s, {kRefStart, 99}), 1); }                       // not a category
  { auto s = fresh(); CHECK_EQ(feed(s, with({kNone, c(1)})), 5); }                   // None then a box
  { auto s = fresh(); CHECK_EQ(feed(s, with({c(1), c(2), c(3), c(4), kComma, c(1), c(2), c(3), c(4)})), 12); }  // duplicate
  {  // the same box under another category is fine; the cap (2) then allows only the end
    auto s = fresh();
    CHECK_EQ(feed(s, with({c(1), c(2), c(3), c(4), kBoxEnd, kComma, kSpace, kRefStart, 45, kRefEnd, kBoxStart, c(1),
                           c(2), c(3), c(4)})), -1);
    CHECK(!s.advance(kComma).ok());
    CHECK(s.advance(kBoxEnd).ok());
    CHECK(!s.advance(kComma).ok());
    CHECK(s.advance(kImEnd).ok());
  }
}

REX_TEST(free_phrases_ban_structural_ids_but_close) {
  auto g = base(ItemArity::kPoint, PhraseMode::kFree);
  auto s = std::move(GrammarState::create(g, kVocab)).value();
  CHECK_EQ(feed(s, {kRefStart}), -1);
  const TokenMask& m = s.allowed();
  CHECK(m.allows(0) && m.allows(kComma) && m.allows(199));
  CHECK(!m.allows(kRefEnd));  // an empty phrase cannot close
  for (int32_t id : {kImEnd, kRefStart, kBoxStart, kBoxEnd, kEndOfText, c(0), c(999), 1215}) CHECK(!m.allows(id));
  CHECK_EQ(feed(s, {7, 8}), -1);
  CHECK(s.allowed().allows(kRefEnd));
  CHECK(!s.allowed().allows(kBoxEnd));
}

REX_TEST(polygon_arity_even_and_at_least_six) {
  auto g = base(ItemArity::kPolygon, PhraseMode::kFree);
  g.max_item_coords = 8;
  auto s = std::move(GrammarState::create(g, kVocab)).value();
  CHECK_EQ(feed(s, {kRefStart, 7, kRefEnd, kBoxStart, c(1), c(2), c(3), c(4)}), -1);
  CHECK(!s.allowed().allows(kBoxEnd));
  CHECK(!s.allowed().allows(kComma));
  CHECK_EQ(feed(s, {c(5), c(6)}), -1);
  CHECK(s.allowed().allows(kBoxEnd) && s.allowed().allows(kComma) && s.allowed().allows(c(0)));
  CHECK_EQ(feed(s, {c(7)}), -1);
  CHECK(!s.allowed().allows(kBoxEnd));
  CHECK_EQ(feed(s, {c(8)}), -1);
  CHECK(!s.allowed().allows(c(0)));  // max_item_coords
  CHECK_EQ(feed(s, {kBoxEnd, kImEnd}), -1);
  CHECK_EQ(s.predictions(), 1);
}

REX_TEST(budget_closes_the_output_in_time) {
  auto g = base(ItemArity::kBox, PhraseMode::kFixed);
  auto s = std::move(GrammarState::create(g, kVocab)).value();
  // With 9 tokens left the shortest group <ref>x</ref><box>None</box> + STOP (7) fits; a box (9) does too.
  CHECK(s.allowed(9).allows(kRefStart));
  // With 6 left no group fits: only STOP.
  const TokenMask& m = s.allowed(6);
  CHECK(m.allows(kImEnd) && !m.allows(kRefStart));
  CHECK_EQ(feed(s, {kRefStart, 40, kRefEnd, kBoxStart}), -1);
  // 4 left: "None" + </box> + STOP fit, a 4-coordinate box does not.
  CHECK(s.allowed(4).allows(kNone));
  CHECK(!s.allowed(4).allows(c(0)));
  CHECK(s.allowed(6).allows(c(0)));
}

REX_TEST(keypoint_runs_force_ordered_boxes_and_point_pairs) {
  OutputGrammar kp;
  for (auto& tc : task_cases())
    if (std::string(tc.name) == "keypoint") kp = tc.g;
  auto s = std::move(GrammarState::create(kp, kVocab)).value();
  CHECK(!s.allowed().allows(c(3)));  // no coordinate outside a run
  CHECK_EQ(feed(s, {5, kBbox, kColon, kQuote}), -1);
  CHECK(!s.allowed().allows(kImEnd));
  CHECK_EQ(feed(s, {kSpace, c(10), kSpace, c(20), kSpace}), -1);
  CHECK(!s.allowed().allows(c(9)) && s.allowed().allows(c(10)));  // x1 >= x0
  CHECK_EQ(feed(s, {c(30), kSpace}), -1);
  CHECK(!s.allowed().allows(c(19)) && s.allowed().allows(c(20)));  // y1 >= y0
  CHECK_EQ(feed(s, {c(40), kQuote, 6, kColon, kQuote}), -1);
  // An optional point run: text ("unvisible") or " <x> <y>".
  CHECK(s.allowed().allows(50) && s.allowed().allows(kSpace) && s.allowed().allows(kImEnd));
  CHECK_EQ(feed(s, {kSpace, c(1)}), -1);
  CHECK(s.allowed().allows(kSpace) && !s.allowed().allows(kImEnd));
  CHECK_EQ(feed(s, {kSpace, c(2), kQuote, kImEnd}), -1);
  CHECK(s.done());
}

REX_TEST(masked_sampling_semantics) {
  std::vector<float> raw = {5.0f, 1.0f, 2.0f, 0.5f, 3.0f};
  TokenMask m;
  m.allow_ranges = {{1, 3}};
  m.allow_ids = {4};
  m.deny_ids = {2};
  std::vector<float> l = raw;
  TokenHistory h(5);
  Pcg32 rng(1);
  SamplingParams greedy;
  SampledToken t = sample_token(l.data(), 5, greedy, h, rng, &m);
  CHECK_EQ(t.id, 4);  // the best allowed id, not the best overall (0)
  CHECK_NEAR(t.logprob, 3.0 - std::log(std::exp(1.0) + std::exp(3.0)), 1e-6);
  double z = 0;
  for (float x : raw) z += std::exp(double(x));
  CHECK_NEAR(t.model_logprob, 3.0 - std::log(z), 1e-6);
  CHECK(l[0] == -INFINITY && l[2] == -INFINITY && l[3] == -INFINITY);
  // Sampling only ever draws allowed ids.
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_p = 0.9f;
  for (int i = 0; i < 200; ++i) {
    std::vector<float> x = raw;
    int32_t id = sample_token(x.data(), 5, p, h, rng, &m).id;
    CHECK(id == 1 || id == 4);
  }
  // Without a mask the choice is unchanged and both log-probabilities agree.
  std::vector<float> u = raw;
  SampledToken plain = sample_token(u.data(), 5, greedy, h, rng);
  CHECK_EQ(plain.id, 0);
  CHECK_NEAR(plain.logprob, plain.model_logprob, 1e-6);
}

REX_TEST(token_mask_bitmask_matches_allows) {
  TokenMask m;
  m.allow_ranges = {{30, 70}, {3, 5}, {60, 90}};
  m.allow_ids = {100, 4, 127};
  m.deny_ids = {64, 3};
  const auto bits = m.to_bitmask(128);
  std::vector<float> l(128, 1.0f);
  apply_token_mask(l.data(), 128, m);
  for (int32_t id = 0; id < 128; ++id) {
    const bool bit = (bits[size_t(id) / 32] >> (id % 32)) & 1u;
    CHECK_EQ(bit, m.allows(id));
    CHECK_EQ(l[size_t(id)] != -INFINITY, m.allows(id));
  }
  CHECK_EQ(m.first_allowed(128), 4);
}

REX_TEST(validation_names_the_field) {
  auto g = base(ItemArity::kBox, PhraseMode::kFixed);
  CHECK(validate_grammar(g, kVocab).ok());
  auto bad = g;
  bad.phrases.push_back({});
  CHECK_CONTAINS(validate_grammar(bad, kVocab).message(), "phrases[5]");
  bad = g;
  bad.item_separators = {{kComma, kBoxEnd}};
  CHECK_CONTAINS(validate_grammar(bad, kVocab).message(), "item_separators[0]");
  bad = g;
  bad.coord_first = kVocab - 10;
  CHECK_CONTAINS(validate_grammar(bad, kVocab).message(), "coord_first");
  bad = g;
  bad.phrases.clear();
  CHECK_CONTAINS(validate_grammar(bad, kVocab).message(), "at least one phrase");
  bad = g;
  bad.arity = ItemArity::kPolygon;
  bad.max_item_coords = 7;
  CHECK_CONTAINS(validate_grammar(bad, kVocab).message(), "max_item_coords");
  bad = g;
  bad.phrase_mode = PhraseMode::kFree;
  bad.free_text_banned = {{0, kVocab}};
  CHECK_CONTAINS(validate_grammar(bad, kVocab).message(), "free_text_banned");
  CHECK(!GrammarState::create(bad, kVocab).ok());
}

namespace {

// The id of a synthetic keypoint_json token by its text (-1 if none).
int32_t kj(const std::string& text) {
  for (const auto& e : json_vocab())
    if (e.second == text) return e.first;
  return -1;
}

// Feeds `ids`; false (saying which index was refused and why) on the first refusal.
bool feeds(GrammarState& gs, const std::vector<int32_t>& ids) {
  for (size_t i = 0; i < ids.size(); ++i) {
    Status st = gs.advance(ids[i]);
    if (!st.ok()) {
      std::printf("  refused index %zu (id %d): %s\n", i, ids[i], st.message().c_str());
      return false;
    }
  }
  return true;
}

}  // namespace

REX_TEST(keypoint_json_accepts_the_reference_shape_and_orders_boxes) {
  auto s = std::move(GrammarState::create(keypoint_json_grammar(0), kVocab)).value();
  CHECK_EQ(s.cost_to_finish(), 3);  // "{", "}", STOP
  CHECK(!s.allowed().allows(kImEnd));
  CHECK(!s.allowed().allows(c(0)));
  // ```json\n{"person1": {"bbox": " <10> <20> <30> <40> ", "keypoints": {"nose": " <5> <6> ", "left eye": "unvisible"}}}\n```
  CHECK(feeds(s, {kj("```json"), kj("\n"), kj("{"), kj("\"person"), kj("1\": {"), kBbox, kj(": \""), kSpace, c(10),
                    kSpace, c(20), kSpace}));
  CHECK(!s.allowed().allows(c(9)) && s.allowed().allows(c(10)));  // x1 >= x0
  CHECK(!s.allowed().allows(kQuote) && !s.allowed().allows(kImEnd));
  CHECK(feeds(s, {c(30), kSpace}));
  CHECK(!s.allowed().allows(c(19)) && s.allowed().allows(c(20)));  // y1 >= y0
  CHECK(s.advance(c(19)).code() == StatusCode::kInvalidArgument);
  CHECK(feeds(s, {c(40), kSpace, kQuote, kComma, kSpace, kj("\"keypoints\""), kColon, kSpace, kj("{"), kQuote, kj("nose"),
                    kj("\": \""), kSpace, c(5), kSpace, c(6), kSpace, kQuote, kj(", "), kj("\"left"), kSpace,
                    kj("e"), kj("y"), kj("e"), kj("\": \""), kj("unvisible"), kj("\"}"), kj("}}")}));
  CHECK_EQ(s.predictions(), 1);
  CHECK(s.at_group_boundary() && s.allowed().allows(kImEnd));
  CHECK(feeds(s, {kj("\n"), kj("```"), kImEnd}));
  CHECK(s.done());
}

REX_TEST(keypoint_json_rejects_what_the_schema_forbids) {
  const OutputGrammar g = keypoint_json_grammar(0);
  auto fresh = [&] { return std::move(GrammarState::create(g, kVocab)).value(); };
  auto head = [&] {  // {"a": {"bbox": "
    auto s = fresh();
    CHECK(feeds(s, {kj("{"), kQuote, kj("a"), kj("\": {"), kBbox, kj(": \"")}));
    return s;
  };
  {
    auto s = fresh();
    CHECK(feeds(s, {kj("{"), kQuote}));
    CHECK(!s.allowed().allows(kQuote));  // empty key
    CHECK(s.allowed().allows(kj("a")) && !s.allowed().allows(kj("{")));
  }
  {
    auto s = head();
    CHECK(!s.allowed().allows(kQuote));  // an empty bbox
    CHECK(!s.allowed().allows(kj("a")));
    CHECK(feeds(s, {c(1), kSpace, c(2), kSpace, c(3)}));
    CHECK(!s.allowed().allows(kQuote) && !s.allowed().allows(c(4)));  // 3 coordinates, then a space
  }
  {
    auto s = fresh();  // "keypoints" before "bbox" is not the reference order
    CHECK(feeds(s, {kj("{"), kQuote, kj("a"), kj("\": {")}));
    CHECK(!s.allowed().allows(kj("\"keypoints\"")) && s.allowed().allows(kBbox));
  }
  {
    auto s = head();  // a keypoint value of 1 coordinate or free text is refused
    CHECK(feeds(s, {c(1), kSpace, c(2), kSpace, c(3), kSpace, c(4), kQuote, kComma, kj("\"keypoints\""), kColon, kj("{"),
                      kj("\"left"), kj("\": \"")}));
    CHECK(s.allowed().allows(kj("unvisible")) && s.allowed().allows(c(0)) && !s.allowed().allows(kj("visible")));
    CHECK(feeds(s, {c(7)}));
    CHECK(!s.allowed().allows(kQuote) && s.allowed().allows(kSpace));
  }
}

REX_TEST(keypoint_json_caps_instances_and_closes_in_budget) {
  auto s = std::move(GrammarState::create(keypoint_json_grammar(1), kVocab)).value();
  const std::vector<int32_t> one = {kj("{"), kQuote, kj("a"), kj("\": {"), kBbox, kj(": \""), c(1), kSpace, c(2), kSpace,
                                    c(3), kSpace, c(4), kQuote, kComma, kj("\"keypoints\""), kColon, kj("{"), kj("}}")};
  CHECK(feeds(s, one));
  CHECK_EQ(s.predictions(), 1);
  CHECK(!s.allowed().allows(kComma) && !s.allowed().allows(kj("}, ")) && s.allowed().allows(kj("}")));
  // Budget: inside a key with 8 tokens left, only tokens after which the rest still fits.
  auto b = std::move(GrammarState::create(keypoint_json_grammar(0), kVocab)).value();
  CHECK(feeds(b, {kj("{"), kQuote, kj("a")}));
  const int cost = b.cost_to_finish();
  CHECK(cost > 10);
  CHECK(b.allowed(cost).allows(kQuote));       // the shortest completion goes on
  CHECK(!b.allowed(cost).allows(kj("a")));     // one more key character would not fit
  CHECK(b.allowed(cost + 1).allows(kj("a")));
  CHECK(b.allowed(2).allows(kQuote));          // too few left: still a shortest completion, never empty
  int left = cost;
  Pcg32 rng(7);
  while (!b.done()) {
    const TokenMask& m = b.allowed(left);
    std::vector<int32_t> ok;
    for (int32_t id = 0; id < kVocab; ++id)
      if (m.allows(id)) ok.push_back(id);
    CHECK(!ok.empty());
    if (ok.empty()) break;
    CHECK(b.advance(ok[rng.next_u32() % ok.size()]).ok());
    --left;
  }
  CHECK_EQ(left, 0);
}

REX_TEST(keypoint_json_validation_names_the_field) {
  OutputGrammar g = keypoint_json_grammar(0);
  g.json_vocab.push_back({kCoord0 + 3, "x"});
  CHECK_CONTAINS(validate_grammar(g, kVocab).message(), "json_vocab[");
  g = keypoint_json_grammar(0);
  g.json_vocab.push_back({150, "a.b"});
  CHECK_CONTAINS(validate_grammar(g, kVocab).message(), "JSON-safe");
  g = keypoint_json_grammar(0);
  g.json_vocab.erase(std::remove_if(g.json_vocab.begin(), g.json_vocab.end(),
                                    [](const std::pair<int32_t, std::string>& e) { return e.second == "}"; }),
                     g.json_vocab.end());
  CHECK_CONTAINS(validate_grammar(g, kVocab).message(), "single-character");
}

// The per-step mask cost at the real vocabulary's scale: ~70,000 candidate
// tokens of 1..12 JSON-safe characters. Printed, not asserted.
REX_TEST(keypoint_json_mask_cost_at_real_scale) {
  constexpr int kBig = 151936, kFirstCoord = 150643;
  OutputGrammar g = keypoint_json_grammar(0);
  g.coord_first = kFirstCoord;
  g.stop_ids = {151645};
  g.ref_start = 151646;
  g.ref_end = 151647;
  g.box_start = 151648;
  g.box_end = 151649;
  Pcg32 rng(99);
  const std::string alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789      \n_-'{}:,\"`";
  std::set<int32_t> used;
  for (auto& e : g.json_vocab) used.insert(e.first);
  for (int32_t id = 200; id < 140000; id += 2) {
    std::string t = rng.next_u32() % 2 ? " " : "";
    const int len = 1 + int(rng.next_u32() % 10);
    for (int k = 0; k < len; ++k) t += alphabet[rng.next_u32() % alphabet.size()];
    g.json_vocab.push_back({id, t});
  }
  auto s = std::move(GrammarState::create(g, kBig)).value();
  const std::vector<int32_t> path = {kj("{"), kQuote, kj("a"), kj("b"), kj("\": {"), kBbox, kj(": \""), kFirstCoord + 1};
  double worst = 0, total = 0;
  int steps = 0;
  std::string per_state;
  for (size_t i = 0; i <= path.size(); ++i) {
    double state_total = 0;
    for (int rep = 0; rep < 20; ++rep) {
      const auto t0 = std::chrono::steady_clock::now();
      const TokenMask& m = s.allowed(4096);
      const double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
      CHECK(m.first_allowed(kBig) >= 0);
      worst = std::max(worst, us);
      total += us;
      state_total += us;
      ++steps;
    }
    per_state += " " + std::to_string(int(state_total / 20));
    if (i < path.size()) CHECK(s.advance(path[i]).ok());
  }
  std::printf("  keypoint_json mask over %zu candidates: %.0f us mean, %.0f us worst per step (per state:%s)\n",
              g.json_vocab.size(), total / steps, worst, per_state.c_str());
}
