// GrammarState in keypoint_json mode (grammar.h, grammar_keypoint.h), kept
// apart from the token-trie modes in grammar_state.cpp. allowed() lets
// KeypointJsonTables::mark walk the candidate tokens bucket by first byte (one
// automaton step decides a whole bucket, then each surviving token is stepped
// over its remaining bytes; a KEY/NAME continuing by pure name characters
// takes one step). The allowed ids come out as id ranges in id order (marked per candidate, then
// read back through the id-sorted index), so no per-step sort or allocation.
// advance() runs the same test on one token (legal = its end state can still
// close), which is what allowed(-1) would say, without building the mask.
#include <algorithm>
#include <climits>
#include <string>

#include "sampling/grammar_compiled.h"

namespace rex {

void GrammarState::add_json(int left) {
  const CompiledGrammar& c = *g_;
  const OutputGrammar& g = c.g;
  const KeypointJsonTables& t = *c.json;
  // Never an empty mask: with too few tokens left, still allow a shortest completion.
  const int budget = left == INT_MAX ? INT_MAX : std::max(left, t.cost_of(json_));
  auto fits = [&](int32_t code) {
    const int32_t k = t.cost_of(code);
    return k < kKpInf && (budget == INT_MAX || 1 + k <= budget);
  };
  if (kp_accepting(json_))
    for (int32_t id : g.stop_ids) mask_.allow_ids.push_back(id);
  int index = 0;
  bool box = false;
  const int32_t after_coord = kp_coord(json_, &index, &box);
  if (after_coord >= 0 && fits(after_coord)) {
    const int32_t lo = box && index >= 2 ? item_[index - 2] : 0;  // x1 >= x0, y1 >= y0
    mask_.allow_ranges.push_back({g.coord_first + lo, g.coord_first + g.coord_count});
  }
  if (t.mark(json_, g.max_predictions, predictions_, budget, json_hit_.data()) == 0) return;
  // Read the marks back in id order, as ranges of consecutive ids.
  int32_t run_begin = -1, run_end = -1;
  for (const auto& e : t.by_id) {
    if (!json_hit_[size_t(e.second)]) continue;
    json_hit_[size_t(e.second)] = 0;
    if (e.first == run_end) {
      ++run_end;
      continue;
    }
    if (run_begin >= 0) mask_.allow_ranges.push_back({run_begin, run_end});
    run_begin = e.first;
    run_end = e.first + 1;
  }
  if (run_begin >= 0) mask_.allow_ranges.push_back({run_begin, run_end});
}

Status GrammarState::advance_json(int32_t id) {
  const CompiledGrammar& c = *g_;
  const OutputGrammar& g = c.g;
  const KeypointJsonTables& t = *c.json;
  auto refuse = [&] {
    return Status(StatusCode::kInvalidArgument, "grammar: token " + std::to_string(id) +
                                                    " is not allowed here (keypoint JSON, " +
                                                    std::to_string(predictions_) + " instances so far)");
  };
  if (std::find(g.stop_ids.begin(), g.stop_ids.end(), id) != g.stop_ids.end()) {
    if (!kp_accepting(json_)) return refuse();
    where_ = Where::kDone;
    return Status::Ok();
  }
  if (id >= g.coord_first && id < g.coord_first + g.coord_count) {
    int index = 0;
    bool box = false;
    const int32_t next = kp_coord(json_, &index, &box);
    const int32_t bin = id - g.coord_first;
    if (next < 0 || t.cost_of(next) >= kKpInf) return refuse();
    if (box && index >= 2 && bin < item_[index - 2]) return refuse();
    if (box) item_[index] = bin;
    json_ = next;
    return Status::Ok();
  }
  const int32_t i = t.index_of(id);
  if (i < 0) return refuse();
  int instances = predictions_;
  const int32_t next = t.walk(json_, size_t(i), g.max_predictions, &instances);
  if (next < 0 || t.cost_of(next) >= kKpInf) return refuse();
  json_ = next;
  predictions_ = instances;
  return Status::Ok();
}

}  // namespace rex
