// See grammar_json.h. A small reader per JSON shape (int, id list, list of id
// lists, ranges, enum string); each names the field it failed on.
#include "sampling/grammar_json.h"

#include <climits>
#include <string>

namespace rex {

namespace {

const char* const kFields[] = {
    "mode", "coord_first", "coord_count", "stop_ids", "ref_start", "ref_end", "box_start",
    "box_end", "none_tokens", "item_separators", "group_separators", "arity", "max_item_coords",
    "phrase_mode", "phrases", "free_text_banned", "max_phrase_tokens", "max_predictions",
    "forbid_duplicate_boxes", "runs", "coords_only_in_runs", "json_vocab"};

Status bad(const std::string& field, const std::string& expected, const json::Value* v) {
  return Status(StatusCode::kInvalidArgument, "grammar." + field + ": expected " + expected + " but got " +
                                                  (v ? std::string(v->type_name()) : std::string("nothing")));
}

Status read_int(const json::Value& o, const std::string& f, int32_t* out) {
  const json::Value* v = o.get(f);
  if (!v || !v->is_int() || v->as_int() < INT32_MIN || v->as_int() > INT32_MAX) return bad(f, "a 32-bit integer", v);
  *out = int32_t(v->as_int());
  return Status::Ok();
}

Status read_ids(const json::Value* v, const std::string& f, std::vector<int32_t>* out) {
  if (!v || !v->is_array()) return bad(f, "an array of token ids", v);
  out->clear();
  for (size_t i = 0; i < v->items().size(); ++i) {
    const json::Value& x = v->items()[i];
    if (!x.is_int() || x.as_int() < INT32_MIN || x.as_int() > INT32_MAX)
      return bad(f + "[" + std::to_string(i) + "]", "a 32-bit integer", &x);
    out->push_back(int32_t(x.as_int()));
  }
  return Status::Ok();
}

Status read_seqs(const json::Value* v, const std::string& f, std::vector<std::vector<int32_t>>* out) {
  if (!v || !v->is_array()) return bad(f, "an array of token id arrays", v);
  out->assign(v->items().size(), {});
  for (size_t i = 0; i < v->items().size(); ++i)
    REX_RETURN_IF_ERROR(read_ids(&v->items()[i], f + "[" + std::to_string(i) + "]", &(*out)[i]));
  return Status::Ok();
}

Status read_bool(const json::Value& o, const std::string& f, bool* out) {
  const json::Value* v = o.get(f);
  if (!v || !v->is_bool()) return bad(f, "a boolean", v);
  *out = v->as_bool();
  return Status::Ok();
}

Status read_enum(const json::Value& o, const std::string& f, const char* a, const char* b, const char* c, int* out) {
  const json::Value* v = o.get(f);
  const std::string expected = std::string("\"") + a + "\" or \"" + b + "\"" + (c ? std::string(" or \"") + c + "\"" : "");
  if (!v || !v->is_string()) return bad(f, expected, v);
  const std::string& s = v->as_string();
  if (s == a) *out = 0;
  else if (s == b) *out = 1;
  else if (c && s == c) *out = 2;
  else return Status(StatusCode::kInvalidArgument, "grammar." + f + ": expected " + expected + " but got \"" + s + "\"");
  return Status::Ok();
}

Status read_run(const json::Value& v, const std::string& f, CoordinateRun* r) {
  if (!v.is_object()) return bad(f, "an object", &v);
  int32_t coords = 0;
  REX_RETURN_IF_ERROR(read_seqs(v.get("triggers"), f + ".triggers", &r->triggers));
  REX_RETURN_IF_ERROR(read_ids(v.get("separator"), f + ".separator", &r->separator));
  REX_RETURN_IF_ERROR(read_int(v, "coords", &coords));
  REX_RETURN_IF_ERROR(read_bool(v, "ordered_box", &r->ordered_box));
  REX_RETURN_IF_ERROR(read_bool(v, "optional", &r->optional));
  r->coords = coords;
  return Status::Ok();
}

// The keypoint_json candidate tokens as one string, "ID:TEXT|" per token: one
// JSON string parses ten times faster than 80,000 [id, text] pairs, and
// TEXT (JSON-safe characters) never holds '|'.
Status read_vocab(const json::Value* v, const std::string& f, std::vector<std::pair<int32_t, std::string>>* out) {
  if (!v || !v->is_string()) return bad(f, "a string of \"ID:TEXT|\" entries", v);
  const std::string& s = v->as_string();
  out->clear();
  size_t i = 0;
  while (i < s.size()) {
    const std::string at = f + " entry " + std::to_string(out->size());
    int64_t id = 0;
    size_t digits = 0;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9' && digits < 10) id = id * 10 + (s[i++] - '0'), ++digits;
    if (digits == 0 || id > INT32_MAX || i >= s.size() || s[i] != ':')
      return Status(StatusCode::kInvalidArgument, "grammar." + at + ": expected \"ID:\" but got none at offset " + std::to_string(i));
    const size_t end = s.find('|', ++i);
    if (end == std::string::npos)
      return Status(StatusCode::kInvalidArgument, "grammar." + at + ": expected a closing '|' but got the end of the string");
    out->push_back({int32_t(id), s.substr(i, end - i)});
    i = end + 1;
  }
  return Status::Ok();
}

}  // namespace

Result<OutputGrammar> grammar_from_json(const json::Value& o) {
  if (!o.is_object()) return bad("", "an object", &o);
  for (const auto& m : o.members()) {
    bool known = false;
    for (const char* f : kFields) known = known || m.first == f;
    if (!known) return Status(StatusCode::kInvalidArgument, "grammar: expected no field \"" + m.first + "\" but got one");
  }
  OutputGrammar g;
  int e = 0;
  REX_RETURN_IF_ERROR(read_enum(o, "mode", "groups", "free", "keypoint_json", &e));
  g.mode = e == 0 ? GrammarMode::kGroups : e == 1 ? GrammarMode::kFree : GrammarMode::kKeypointJson;
  REX_RETURN_IF_ERROR(read_int(o, "coord_first", &g.coord_first));
  REX_RETURN_IF_ERROR(read_int(o, "coord_count", &g.coord_count));
  REX_RETURN_IF_ERROR(read_ids(o.get("stop_ids"), "stop_ids", &g.stop_ids));
  REX_RETURN_IF_ERROR(read_int(o, "ref_start", &g.ref_start));
  REX_RETURN_IF_ERROR(read_int(o, "ref_end", &g.ref_end));
  REX_RETURN_IF_ERROR(read_int(o, "box_start", &g.box_start));
  REX_RETURN_IF_ERROR(read_int(o, "box_end", &g.box_end));
  REX_RETURN_IF_ERROR(read_ids(o.get("none_tokens"), "none_tokens", &g.none_tokens));
  REX_RETURN_IF_ERROR(read_seqs(o.get("item_separators"), "item_separators", &g.item_separators));
  REX_RETURN_IF_ERROR(read_seqs(o.get("group_separators"), "group_separators", &g.group_separators));
  REX_RETURN_IF_ERROR(read_enum(o, "arity", "point", "box", "polygon", &e));
  g.arity = e == 0 ? ItemArity::kPoint : e == 1 ? ItemArity::kBox : ItemArity::kPolygon;
  int32_t n = 0;
  REX_RETURN_IF_ERROR(read_int(o, "max_item_coords", &n));
  g.max_item_coords = n;
  REX_RETURN_IF_ERROR(read_enum(o, "phrase_mode", "fixed", "free", nullptr, &e));
  g.phrase_mode = e == 0 ? PhraseMode::kFixed : PhraseMode::kFree;
  REX_RETURN_IF_ERROR(read_seqs(o.get("phrases"), "phrases", &g.phrases));
  std::vector<std::vector<int32_t>> ranges;
  REX_RETURN_IF_ERROR(read_seqs(o.get("free_text_banned"), "free_text_banned", &ranges));
  for (size_t i = 0; i < ranges.size(); ++i) {
    if (ranges[i].size() != 2)
      return Status(StatusCode::kInvalidArgument, "grammar.free_text_banned[" + std::to_string(i) +
                                                      "]: expected [begin, end] but got " +
                                                      std::to_string(ranges[i].size()) + " numbers");
    g.free_text_banned.push_back({ranges[i][0], ranges[i][1]});
  }
  REX_RETURN_IF_ERROR(read_int(o, "max_phrase_tokens", &n));
  g.max_phrase_tokens = n;
  REX_RETURN_IF_ERROR(read_int(o, "max_predictions", &n));
  g.max_predictions = n;
  REX_RETURN_IF_ERROR(read_bool(o, "forbid_duplicate_boxes", &g.forbid_duplicate_boxes));
  const json::Value* runs = o.get("runs");
  if (!runs || !runs->is_array()) return bad("runs", "an array of runs", runs);
  g.runs.resize(runs->items().size());
  for (size_t i = 0; i < g.runs.size(); ++i)
    REX_RETURN_IF_ERROR(read_run(runs->items()[i], "runs[" + std::to_string(i) + "]", &g.runs[i]));
  REX_RETURN_IF_ERROR(read_bool(o, "coords_only_in_runs", &g.coords_only_in_runs));
  REX_RETURN_IF_ERROR(read_vocab(o.get("json_vocab"), "json_vocab", &g.json_vocab));
  return g;
}

Result<OutputGrammar> grammar_from_json_text(std::string_view text) {
  auto v = json::parse(text);
  if (!v.ok()) return Status(StatusCode::kInvalidArgument, "grammar: " + v.status().message());
  return grammar_from_json(v.value());
}

}  // namespace rex
