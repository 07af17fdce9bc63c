// OutputGrammar from the JSON that lib/grammar/compile.ts writes (GrammarJson,
// the FIELD LIST in grammar.h). The binding can hand over JSON.stringify's
// text, or a json::Value it built; every field is required and unknown fields
// are rejected, so the two sides cannot drift apart silently.
#pragma once

#include <string_view>

#include "common/json.h"
#include "sampling/grammar.h"

namespace rex {

// kInvalidArgument "grammar.<field>: expected … but got …".
Result<OutputGrammar> grammar_from_json(const json::Value& v);
Result<OutputGrammar> grammar_from_json_text(std::string_view text);

}  // namespace rex
