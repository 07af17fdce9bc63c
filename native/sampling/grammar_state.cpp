// GrammarState: the output grammar as an explicit state machine (see
// grammar.h for the language). allowed() writes the next step's TokenMask;
// advance() first checks the token against the unbudgeted mask, so the one
// place that decides legality is allowed(). The budget check keeps the
// invariant "cost_to_finish() <= tokens left": every allowed token leads to a
// state whose fewest-token completion still fits, and each state's cost is
// achieved by one of its allowed tokens, so the mask is never empty.
#include <algorithm>
#include <climits>
#include <string>

#include "sampling/grammar_compiled.h"

namespace rex {

Result<GrammarState> GrammarState::create(const OutputGrammar& g, int vocab) {
  REX_RETURN_IF_ERROR(validate_grammar(g, vocab));
  GrammarState s;
  s.g_ = compile_grammar(g, vocab);
  s.vocab_ = vocab;
  s.where_ = g.mode == GrammarMode::kFree ? Where::kFreeText : Where::kStart;
  if (g.mode == GrammarMode::kKeypointJson) {
    s.where_ = Where::kJson;
    s.json_ = kp_start();
    s.json_hit_.assign(s.g_->json->ids.size(), 0);
  }
  return s;
}

bool GrammarState::done() const { return where_ == Where::kDone; }

bool GrammarState::at_group_boundary() const {
  return where_ == Where::kStart || where_ == Where::kAfterGroup || where_ == Where::kFreeText ||
         (where_ == Where::kJson && kp_accepting(json_)) ||
         (where_ == Where::kRun && g_->g.runs[size_t(run_)].optional && run_slot_ == 0);
}

int GrammarState::remaining_coords(int k) const {
  if (g_->arity_fixed > 0) return std::max(g_->arity_fixed - k, 0);
  return k < 6 ? 6 - k : k % 2;
}

int GrammarState::run_slots(int run) const {
  const CoordinateRun& r = g_->g.runs[size_t(run)];
  return r.coords * (int(r.separator.size()) + 1);
}

GrammarState::Where GrammarState::phrase_start() const {
  return g_->g.phrase_mode == PhraseMode::kFixed ? Where::kPhrase : Where::kFreePhrase;
}

int GrammarState::cost_of(Where w, int32_t node, int n, int run) const {
  const CompiledGrammar& c = *g_;
  switch (w) {
    case Where::kStart: case Where::kAfterGroup: case Where::kFreeText: return 1;
    case Where::kDone: return 0;
    case Where::kGroupSep: return c.group_seps.nodes[size_t(node)].to_terminal + c.group_min + 1;
    case Where::kPhrase: return c.phrases.nodes[size_t(node)].to_terminal + 2 + c.body_min + 1;
    case Where::kFreePhrase: return (n == 0 ? 1 : 0) + 2 + c.body_min + 1;
    case Where::kAfterPhrase: return 1 + c.body_min + 1;
    case Where::kBoxOpen: return c.body_min + 1;
    case Where::kNone: return c.none.nodes[size_t(node)].to_terminal + 2;
    case Where::kItem: return remaining_coords(n) + 2;
    case Where::kItemSep: return c.item_seps.nodes[size_t(node)].to_terminal + c.arity_min + 2;
    case Where::kRun:
      if (c.g.runs[size_t(run)].optional && n == 0) return 1;
      return run_slots(run) - n + 1;
    case Where::kJson: return c.json->cost_of(node);
  }
  return 1;
}

int GrammarState::cost_to_finish() const {
  const int n = where_ == Where::kFreePhrase ? phrase_len_ : where_ == Where::kRun ? run_slot_ : item_len_;
  return cost_of(where_, where_ == Where::kJson ? json_ : node_, n, run_);
}

uint64_t GrammarState::dup_key() const {
  uint64_t key = uint64_t(uint32_t(category_ + 1)) << 36;
  for (int i = 0; i + 1 < g_->arity_fixed; ++i) key |= uint64_t(item_[i] & 0xfff) << (12 * i);
  return key;
}

// kItem: the next coordinate (ordered, duplicates denied), or the item's end.
void GrammarState::add_item(int left) {
  const CompiledGrammar& c = *g_;
  const OutputGrammar& g = c.g;
  auto fits = [&](int cost) { return 1 + cost <= left; };
  auto under_cap = [&](int extra) { return g.max_predictions == 0 || predictions_ + extra < g.max_predictions; };
  auto add_seps = [&] {
    for (auto& ch : c.item_seps.nodes[0].children)
      if (fits(cost_of(Where::kItemSep, ch.second, 0, -1))) mask_.allow_ids.push_back(ch.first);
  };
  const int k = item_len_;
  if (c.arity_fixed > 0 && k >= c.arity_fixed) {  // complete (already counted)
    if (under_cap(0)) add_seps();
    mask_.allow_ids.push_back(g.box_end);
    return;
  }
  if (c.arity_fixed > 0) {
    int32_t lo = 0;
    if (g.arity == ItemArity::kBox && k >= 2) lo = item_[k - 2];  // x1 >= x0, y1 >= y0
    if (fits(cost_of(Where::kItem, 0, k + 1, -1)))
      mask_.allow_ranges.push_back({g.coord_first + lo, g.coord_first + g.coord_count});
    if (g.forbid_duplicate_boxes && k == c.arity_fixed - 1) {
      auto it = seen_.find(dup_key());
      if (it != seen_.end()) {
        std::vector<int32_t> deny;
        for (int16_t bin : it->second)
          if (bin >= lo) deny.push_back(g.coord_first + bin);
        // Every remaining value would repeat a box: allow the repeat rather than a dead end.
        if (int(deny.size()) < g.coord_count - lo) mask_.deny_ids = std::move(deny);
      }
    }
    return;
  }
  // Polygon: an even count of at least 6, at most max_item_coords.
  if ((g.max_item_coords == 0 || k < g.max_item_coords) && fits(cost_of(Where::kItem, 0, k + 1, -1)))
    mask_.allow_ranges.push_back({g.coord_first, g.coord_first + g.coord_count});
  if (k >= 6 && k % 2 == 0) {
    if (under_cap(1)) add_seps();
    mask_.allow_ids.push_back(g.box_end);
  }
}

int GrammarState::matching_run(int32_t next) const {
  int best = -1;
  size_t best_len = 0;
  const auto& runs = g_->g.runs;
  for (size_t r = 0; r < runs.size(); ++r)
    for (const auto& t : runs[r].triggers) {
      if (t.back() != next || t.size() > tail_.size() + 1 || t.size() <= best_len) continue;
      if (std::equal(t.begin(), t.end() - 1, tail_.end() - ptrdiff_t(t.size() - 1))) {
        best = int(r);
        best_len = t.size();
      }
    }
  return best;
}

// Free mode outside a run (or at an optional run's first slot).
void GrammarState::add_free_text(int left, int run_at_slot0) {
  const CompiledGrammar& c = *g_;
  auto fits = [&](int cost) { return 1 + cost <= left; };
  for (int32_t id : c.g.stop_ids) mask_.allow_ids.push_back(id);
  if (!fits(cost_of(Where::kFreeText, 0, 0, -1))) return;  // one token left: STOP only
  mask_.allow_ranges = c.free_text;
  if (run_at_slot0 >= 0) {
    const CoordinateRun& r = c.g.runs[size_t(run_at_slot0)];
    const bool ok = fits(cost_of(Where::kRun, 0, 1, run_at_slot0));
    if (!r.separator.empty()) {
      if (ok) mask_.allow_ids.push_back(r.separator[0]);
      else mask_.deny_ids.push_back(r.separator[0]);
    } else if (ok) {
      mask_.allow_ranges.push_back({c.g.coord_first, c.g.coord_first + c.g.coord_count});
    }
  }
  if (left == INT_MAX) return;
  for (const auto& r : c.g.runs)
    for (const auto& t : r.triggers) {
      const int run = matching_run(t.back());
      if (run >= 0 && !fits(cost_of(Where::kRun, 0, 0, run))) mask_.deny_ids.push_back(t.back());
    }
}

const TokenMask& GrammarState::allowed(int tokens_left) {
  mask_.clear();
  const CompiledGrammar& c = *g_;
  const OutputGrammar& g = c.g;
  const int left = tokens_left < 0 ? INT_MAX : std::max(tokens_left, 1);
  auto fits = [&](int cost) { return left == INT_MAX || 1 + cost <= left; };
  auto add_stop = [&] { for (int32_t id : g.stop_ids) mask_.allow_ids.push_back(id); };
  auto under_cap = [&] { return g.max_predictions == 0 || predictions_ < g.max_predictions; };
  auto add_children = [&](const TokenTrie& t, int32_t node, Where w) {
    for (auto& ch : t.nodes[size_t(node)].children)
      if (fits(cost_of(w, ch.second, 0, -1))) mask_.allow_ids.push_back(ch.first);
  };
  auto terminal = [&](const TokenTrie& t) { return t.nodes[size_t(node_)].terminal; };
  const IdRange coords{g.coord_first, g.coord_first + g.coord_count};
  switch (where_) {
    case Where::kStart:
      add_stop();
      if (under_cap() && fits(cost_of(phrase_start(), 0, 0, -1))) mask_.allow_ids.push_back(g.ref_start);
      break;
    case Where::kAfterGroup:
      add_stop();
      if (under_cap()) add_children(c.group_seps, 0, Where::kGroupSep);
      break;
    case Where::kGroupSep:
      add_children(c.group_seps, node_, Where::kGroupSep);
      if (terminal(c.group_seps) && fits(cost_of(phrase_start(), 0, 0, -1))) mask_.allow_ids.push_back(g.ref_start);
      break;
    case Where::kPhrase:
      add_children(c.phrases, node_, Where::kPhrase);
      if (terminal(c.phrases)) mask_.allow_ids.push_back(g.ref_end);
      break;
    case Where::kFreePhrase:
      if (phrase_len_ >= 1) mask_.allow_ids.push_back(g.ref_end);
      if ((g.max_phrase_tokens == 0 || phrase_len_ < g.max_phrase_tokens) &&
          fits(cost_of(Where::kFreePhrase, 0, phrase_len_ + 1, -1)))
        mask_.allow_ranges = c.phrase_text;
      break;
    case Where::kAfterPhrase:
      mask_.allow_ids.push_back(g.box_start);
      break;
    case Where::kBoxOpen:
      if (!g.none_tokens.empty()) add_children(c.none, 0, Where::kNone);
      if (fits(cost_of(Where::kItem, 0, 1, -1))) mask_.allow_ranges.push_back(coords);
      break;
    case Where::kNone:
      add_children(c.none, node_, Where::kNone);
      if (terminal(c.none)) mask_.allow_ids.push_back(g.box_end);
      break;
    case Where::kItem:
      add_item(left);
      break;
    case Where::kItemSep:
      add_children(c.item_seps, node_, Where::kItemSep);
      if (terminal(c.item_seps) && fits(cost_of(Where::kItem, 0, 1, -1))) mask_.allow_ranges.push_back(coords);
      break;
    case Where::kDone:
      add_stop();
      break;
    case Where::kFreeText:
      add_free_text(left, -1);
      break;
    case Where::kJson:
      add_json(left);
      break;
    case Where::kRun: {
      const CoordinateRun& r = g.runs[size_t(run_)];
      if (r.optional && run_slot_ == 0) {
        add_free_text(left, run_);
        break;
      }
      const int per = int(r.separator.size()) + 1, pos = run_slot_ % per, ci = run_slot_ / per;
      if (pos < per - 1) {
        mask_.allow_ids.push_back(r.separator[size_t(pos)]);
      } else {
        const int32_t lo = r.ordered_box && ci >= 2 ? item_[ci - 2] : 0;
        mask_.allow_ranges.push_back({g.coord_first + lo, g.coord_first + g.coord_count});
      }
      break;
    }
  }
  return mask_;
}

void GrammarState::begin_item(int32_t bin) {
  where_ = Where::kItem;
  item_len_ = 0;
  push_coord(bin);
}

void GrammarState::push_coord(int32_t bin) {
  if (item_len_ < 4) item_[item_len_] = bin;
  ++item_len_;
  if (g_->arity_fixed > 0 && item_len_ == g_->arity_fixed) finish_item();
}

void GrammarState::finish_item() {
  ++predictions_;
  if (!g_->g.forbid_duplicate_boxes || g_->arity_fixed == 0) return;
  auto& bins = seen_[dup_key()];
  const int16_t last = int16_t(item_[g_->arity_fixed - 1]);
  if (std::find(bins.begin(), bins.end(), last) == bins.end()) bins.push_back(last);
}

void GrammarState::free_token(int32_t id) {
  const int run = matching_run(id);
  tail_.push_back(id);
  if (int(tail_.size()) > g_->max_trigger) tail_.erase(tail_.begin());
  if (run >= 0) {
    where_ = Where::kRun;
    run_ = run;
    run_slot_ = 0;
  }
}

Status GrammarState::advance(int32_t id) {
  if (where_ == Where::kJson) return advance_json(id);
  if (!allowed(-1).allows(id)) {
    return Status(StatusCode::kInvalidArgument,
                  "grammar: token " + std::to_string(id) + " is not allowed here (" +
                  std::to_string(predictions_) + " predictions so far)");
  }
  const CompiledGrammar& c = *g_;
  const OutputGrammar& g = c.g;
  const bool is_stop = std::find(g.stop_ids.begin(), g.stop_ids.end(), id) != g.stop_ids.end();
  const bool is_coord = id >= g.coord_first && id < g.coord_first + g.coord_count;
  const int32_t bin = id - g.coord_first;
  auto enter_phrase = [&] {
    where_ = phrase_start();
    node_ = 0;
    phrase_len_ = 0;
    phrase_tokens_.clear();
  };
  switch (where_) {
    case Where::kStart:
      if (is_stop) where_ = Where::kDone;
      else enter_phrase();
      break;
    case Where::kAfterGroup:
      if (is_stop) {
        where_ = Where::kDone;
      } else {
        node_ = c.group_seps.child(0, id);
        where_ = Where::kGroupSep;
      }
      break;
    case Where::kGroupSep: {
      const int32_t next = c.group_seps.child(node_, id);
      if (next >= 0) node_ = next;
      else enter_phrase();
      break;
    }
    case Where::kPhrase: {
      const int32_t next = c.phrases.child(node_, id);
      if (next >= 0) {
        node_ = next;
      } else {
        category_ = c.phrases.nodes[size_t(node_)].category;
        where_ = Where::kAfterPhrase;
      }
      break;
    }
    case Where::kFreePhrase:
      if (id == g.ref_end) {
        auto ins = free_categories_.emplace(phrase_tokens_, int32_t(free_categories_.size()));
        category_ = ins.first->second;
        where_ = Where::kAfterPhrase;
      } else {
        phrase_tokens_.push_back(id);
        ++phrase_len_;
      }
      break;
    case Where::kAfterPhrase:
      where_ = Where::kBoxOpen;
      break;
    case Where::kBoxOpen:
      if (is_coord) {
        begin_item(bin);
      } else {
        node_ = c.none.child(0, id);
        where_ = Where::kNone;
      }
      break;
    case Where::kNone: {
      const int32_t next = c.none.child(node_, id);
      if (next >= 0) node_ = next;
      else where_ = Where::kAfterGroup;
      break;
    }
    case Where::kItem:
      if (is_coord) {
        push_coord(bin);
        break;
      }
      if (c.arity_fixed == 0) finish_item();
      if (id == g.box_end) {
        where_ = Where::kAfterGroup;
      } else {
        node_ = c.item_seps.child(0, id);
        where_ = Where::kItemSep;
      }
      break;
    case Where::kItemSep: {
      const int32_t next = c.item_seps.child(node_, id);
      if (next >= 0) node_ = next;
      else begin_item(bin);
      break;
    }
    case Where::kDone:
    case Where::kJson:  // handled by advance_json
      break;
    case Where::kFreeText:
      if (is_stop) where_ = Where::kDone;
      else free_token(id);
      break;
    case Where::kRun: {
      const CoordinateRun& r = g.runs[size_t(run_)];
      const int32_t first = r.separator.empty() ? -1 : r.separator[0];
      const bool starts_run = r.separator.empty() ? is_coord : id == first;
      if (r.optional && run_slot_ == 0 && !starts_run) {  // the run was not taken: free text
        where_ = Where::kFreeText;
        if (is_stop) where_ = Where::kDone;
        else free_token(id);
        break;
      }
      const int per = int(r.separator.size()) + 1, ci = run_slot_ / per;
      if (run_slot_ % per == per - 1 && ci < 4) item_[ci] = bin;
      tail_.push_back(id);
      if (int(tail_.size()) > c.max_trigger) tail_.erase(tail_.begin());
      if (++run_slot_ == run_slots(run_)) {
        where_ = Where::kFreeText;
        if (r.ordered_box) ++predictions_;  // keypoint mode: one instance per bbox
      }
      break;
    }
  }
  return Status::Ok();
}

}  // namespace rex
