// What GrammarState needs precomputed from an OutputGrammar: the tries, the
// free-text id intervals, and the fewest-token costs the budget check uses.
// Built once per request (validate_grammar first), shared read-only after.
#pragma once

#include <vector>

#include "sampling/grammar.h"
#include "sampling/grammar_keypoint.h"

namespace rex {

struct CompiledGrammar {
  OutputGrammar g;
  TokenTrie phrases, item_seps, group_seps, none;
  // Free text: phrases (no coordinates) and free mode (coordinates when allowed outside runs).
  std::vector<IdRange> phrase_text, free_text;
  int arity_min = 4;   // coordinates of the shortest item
  int arity_fixed = 4; // point 2, box 4, polygon 0 (open)
  int phrase_min = 1;  // tokens of the shortest phrase
  int body_min = 5;    // BOX_START's successor .. BOX_END, fewest tokens
  int group_min = 0;   // REF_START .. BOX_END, fewest tokens
  int max_trigger = 0; // longest run trigger
  std::shared_ptr<const KeypointJsonTables> json;  // keypoint_json mode only (shared, see grammar_keypoint.h)
};

std::shared_ptr<const CompiledGrammar> compile_grammar(const OutputGrammar& g, int vocab);

}  // namespace rex
