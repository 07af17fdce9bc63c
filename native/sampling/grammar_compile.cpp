// Validation and compilation of an OutputGrammar (see grammar.h). Validation
// runs at submit time so a bad grammar is a kInvalidArgument for the caller,
// never a surprise mid-generation; compilation then cannot fail.
#include <algorithm>
#include <string>

#include "sampling/grammar_compiled.h"

namespace rex {

void TokenTrie::insert(const std::vector<int32_t>& seq, int32_t category) {
  int32_t node = 0;
  for (int32_t tok : seq) {
    int32_t next = child(node, tok);
    if (next < 0) {
      next = int32_t(nodes.size());
      nodes.push_back(Node{});
      auto& ch = nodes[size_t(node)].children;
      ch.insert(std::lower_bound(ch.begin(), ch.end(), std::make_pair(tok, int32_t(-1))), {tok, next});
    }
    node = next;
  }
  Node& n = nodes[size_t(node)];
  if (!n.terminal) n.category = category;
  n.terminal = true;
}

int32_t TokenTrie::child(int32_t node, int32_t token) const {
  const auto& ch = nodes[size_t(node)].children;
  auto it = std::lower_bound(ch.begin(), ch.end(), std::make_pair(token, int32_t(-1)));
  return it != ch.end() && it->first == token ? it->second : -1;
}

void TokenTrie::finalize() {
  // Children always have larger indices than their parent: one reverse sweep.
  for (size_t i = nodes.size(); i-- > 0;) {
    Node& n = nodes[i];
    int best = n.terminal ? 0 : (1 << 28);
    for (auto& c : n.children) best = std::min(best, 1 + nodes[size_t(c.second)].to_terminal);
    n.to_terminal = best;
  }
}

namespace {

Status bad(const std::string& what) { return Status(StatusCode::kInvalidArgument, "grammar: " + what); }

bool is_structural(const OutputGrammar& g, int32_t id) {
  return id == g.ref_start || id == g.ref_end || id == g.box_start || id == g.box_end ||
         std::find(g.stop_ids.begin(), g.stop_ids.end(), id) != g.stop_ids.end();
}
bool is_coord(const OutputGrammar& g, int32_t id) { return id >= g.coord_first && id < g.coord_first + g.coord_count; }

Status check_sequences(const OutputGrammar& g, int vocab, const std::vector<std::vector<int32_t>>& seqs,
                       const char* field, bool allow_coords) {
  for (size_t i = 0; i < seqs.size(); ++i) {
    if (seqs[i].empty()) return bad(std::string("expected ") + field + "[" + std::to_string(i) + "] non-empty but got []");
    for (int32_t id : seqs[i]) {
      if (id < 0 || id >= vocab)
        return bad(std::string("expected ") + field + "[" + std::to_string(i) + "] ids in [0, " + std::to_string(vocab) +
                   ") but got " + std::to_string(id));
      if (is_structural(g, id) || (!allow_coords && is_coord(g, id)))
        return bad(std::string("expected ") + field + "[" + std::to_string(i) +
                   "] to hold no structural, stop or coordinate id but got " + std::to_string(id));
    }
  }
  return Status::Ok();
}

// [0, vocab) minus `banned`, as sorted disjoint intervals.
std::vector<IdRange> complement(std::vector<IdRange> banned, int vocab) {
  std::sort(banned.begin(), banned.end(), [](const IdRange& a, const IdRange& b) { return a.begin < b.begin; });
  std::vector<IdRange> out;
  int32_t next = 0;
  for (const IdRange& r : banned) {
    if (r.end <= r.begin) continue;
    if (r.begin > next) out.push_back({next, std::min(r.begin, int32_t(vocab))});
    next = std::max(next, r.end);
    if (next >= vocab) break;
  }
  if (next < vocab) out.push_back({next, int32_t(vocab)});
  out.erase(std::remove_if(out.begin(), out.end(), [](const IdRange& r) { return r.begin >= r.end; }), out.end());
  return out;
}

std::vector<IdRange> text_intervals(const OutputGrammar& g, int vocab, bool ban_coords) {
  std::vector<IdRange> banned = g.free_text_banned;
  for (int32_t id : {g.ref_start, g.ref_end, g.box_start, g.box_end})
    if (id >= 0) banned.push_back({id, id + 1});
  for (int32_t id : g.stop_ids) banned.push_back({id, id + 1});
  if (ban_coords) banned.push_back({g.coord_first, g.coord_first + g.coord_count});
  return complement(std::move(banned), vocab);
}

}  // namespace

Status validate_grammar(const OutputGrammar& g, int vocab) {
  if (vocab <= 0) return bad("expected a vocabulary size > 0 but got " + std::to_string(vocab));
  if (g.coord_count < 1 || g.coord_count > 4096)
    return bad("expected coord_count in [1, 4096] but got " + std::to_string(g.coord_count));
  if (g.coord_first < 0 || int64_t(g.coord_first) + g.coord_count > vocab)
    return bad("expected coordinate ids [coord_first, coord_first + coord_count) inside [0, " + std::to_string(vocab) +
               ") but got [" + std::to_string(g.coord_first) + ", " + std::to_string(int64_t(g.coord_first) + g.coord_count) + ")");
  if (g.stop_ids.empty()) return bad("expected at least one stop id but got none");
  for (int32_t id : g.stop_ids)
    if (id < 0 || id >= vocab || is_coord(g, id))
      return bad("expected stop ids in [0, vocab) outside the coordinates but got " + std::to_string(id));
  for (const IdRange& r : g.free_text_banned)
    if (r.begin < 0 || r.end < r.begin)
      return bad("expected free_text_banned ranges with 0 <= begin <= end but got [" + std::to_string(r.begin) + ", " +
                 std::to_string(r.end) + ")");
  if (g.max_predictions < 0) return bad("expected max_predictions >= 0 but got " + std::to_string(g.max_predictions));
  if (g.max_phrase_tokens < 0) return bad("expected max_phrase_tokens >= 0 but got " + std::to_string(g.max_phrase_tokens));

  if (g.mode == GrammarMode::kKeypointJson) {
    for (size_t i = 0; i < g.json_vocab.size(); ++i) {
      const int32_t id = g.json_vocab[i].first;
      if (id < 0 || id >= vocab || is_structural(g, id) || is_coord(g, id))
        return bad("expected json_vocab[" + std::to_string(i) + "] an ordinary id in [0, " + std::to_string(vocab) +
                   ") (no structural, stop or coordinate id) but got " + std::to_string(id));
    }
    auto tables = KeypointJsonTables::shared(g.json_vocab);  // validates; cached for compile_grammar
    return tables.ok() ? Status::Ok() : tables.status();
  }
  if (g.mode == GrammarMode::kFree) {
    for (size_t i = 0; i < g.runs.size(); ++i) {
      const CoordinateRun& r = g.runs[i];
      const std::string at = "runs[" + std::to_string(i) + "]";
      if (r.triggers.empty()) return bad("expected " + at + ".triggers non-empty but got []");
      REX_RETURN_IF_ERROR(check_sequences(g, vocab, r.triggers, (at + ".triggers").c_str(), false));
      if (!r.separator.empty())
        REX_RETURN_IF_ERROR(check_sequences(g, vocab, {r.separator}, (at + ".separator").c_str(), false));
      if (r.coords < 1 || r.coords > 64) return bad("expected " + at + ".coords in [1, 64] but got " + std::to_string(r.coords));
      if (r.ordered_box && r.coords != 4)
        return bad("expected " + at + ".coords 4 with ordered_box but got " + std::to_string(r.coords));
    }
    if (text_intervals(g, vocab, g.coords_only_in_runs).empty())
      return bad("expected free text to allow some id but free_text_banned covers the vocabulary");
    return Status::Ok();
  }

  for (int32_t id : {g.ref_start, g.ref_end, g.box_start, g.box_end})
    if (id < 0 || id >= vocab || is_coord(g, id))
      return bad("expected ref_start, ref_end, box_start and box_end in [0, vocab) outside the coordinates but got " +
                 std::to_string(id));
  if (g.item_separators.empty()) return bad("expected at least one item separator but got none");
  if (g.group_separators.empty()) return bad("expected at least one group separator but got none");
  REX_RETURN_IF_ERROR(check_sequences(g, vocab, g.item_separators, "item_separators", false));
  REX_RETURN_IF_ERROR(check_sequences(g, vocab, g.group_separators, "group_separators", false));
  if (!g.none_tokens.empty()) REX_RETURN_IF_ERROR(check_sequences(g, vocab, {g.none_tokens}, "none_tokens", false));
  if (g.arity == ItemArity::kPolygon && g.max_item_coords != 0 && (g.max_item_coords < 6 || g.max_item_coords % 2))
    return bad("expected max_item_coords 0 or an even number >= 6 but got " + std::to_string(g.max_item_coords));
  if (g.phrase_mode == PhraseMode::kFixed) {
    if (g.phrases.empty()) return bad("expected at least one phrase in fixed phrase mode but got none");
    REX_RETURN_IF_ERROR(check_sequences(g, vocab, g.phrases, "phrases", false));
  } else if (text_intervals(g, vocab, true).empty()) {
    return bad("expected free phrases to allow some id but free_text_banned covers the vocabulary");
  }
  return Status::Ok();
}

std::shared_ptr<const CompiledGrammar> compile_grammar(const OutputGrammar& g, int vocab) {
  auto c = std::make_shared<CompiledGrammar>();
  c->g = g;
  for (size_t i = 0; i < g.phrases.size(); ++i) c->phrases.insert(g.phrases[i], int32_t(i));
  for (auto& s : g.item_separators) c->item_seps.insert(s, 0);
  for (auto& s : g.group_separators) c->group_seps.insert(s, 0);
  if (!g.none_tokens.empty()) c->none.insert(g.none_tokens, 0);
  for (TokenTrie* t : {&c->phrases, &c->item_seps, &c->group_seps, &c->none}) t->finalize();
  c->phrase_text = text_intervals(g, vocab, true);
  c->free_text = text_intervals(g, vocab, g.coords_only_in_runs);
  c->arity_fixed = g.arity == ItemArity::kPoint ? 2 : g.arity == ItemArity::kBox ? 4 : 0;
  c->arity_min = g.arity == ItemArity::kPolygon ? 6 : c->arity_fixed;
  c->phrase_min = g.phrase_mode == PhraseMode::kFixed ? c->phrases.nodes[0].to_terminal : 1;
  int body = c->arity_min;
  if (!g.none_tokens.empty()) body = std::min(body, int(g.none_tokens.size()));
  c->body_min = body + 1;
  c->group_min = 1 + c->phrase_min + 1 + 1 + c->body_min;
  for (auto& r : g.runs)
    for (auto& t : r.triggers) c->max_trigger = std::max(c->max_trigger, int(t.size()));
  if (g.mode == GrammarMode::kKeypointJson) {
    auto tables = KeypointJsonTables::shared(g.json_vocab);  // validated: cannot fail here
    if (tables.ok()) c->json = std::move(tables).value();
  }
  return c;
}

}  // namespace rex
