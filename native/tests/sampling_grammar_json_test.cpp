// The grammar as lib/grammar/compile.ts writes it (JSON captured from the real
// Rex-Omni test tokenizer) read by grammar_from_json_text, then real outputs
// (tokenized by the same tokenizer) walked through GrammarState at the real
// vocabulary size: the two sides agree on every field and on the token
// sequences. Also: malformed JSON is rejected naming the field.
#include <string>
#include <vector>

#include "sampling/grammar.h"
#include "sampling/grammar_json.h"
#include "test_harness.h"

using namespace rex;

namespace {

constexpr int kVocab = 151936;

// compileGrammar({syntax: 'groups', kind: 'box', phrases: ['person', 'traffic light']}, tok,
//                {maxPredictions: 50, forbidDuplicateBoxes: true})
const char* kDetection =
    R"({"mode":"groups","coord_first":150643,"coord_count":1000,"stop_ids":[151645],"ref_start":151646,)"
    R"("ref_end":151647,"box_start":151648,"box_end":151649,"none_tokens":[4064],"item_separators":[[11],[11,220]],)"
    R"("group_separators":[[11,220]],"arity":"box","max_item_coords":0,"phrase_mode":"fixed",)"
    R"("phrases":[[8987],[53987,3100]],"free_text_banned":[[150643,2147483647]],"max_phrase_tokens":128,)"
    R"("max_predictions":50,"forbid_duplicate_boxes":true,"runs":[],"coords_only_in_runs":false,"json_vocab":""})";

// compileGrammar({syntax: 'keypoint-json', kind: 'keypoints', phrases: null}, tok)
const char* kKeypoint =
    R"({"mode":"free","coord_first":150643,"coord_count":1000,"stop_ids":[151645],"ref_start":151646,)"
    R"("ref_end":151647,"box_start":151648,"box_end":151649,"none_tokens":[],"item_separators":[],)"
    R"("group_separators":[],"arity":"box","max_item_coords":0,"phrase_mode":"free","phrases":[],)"
    R"("free_text_banned":[[151643,2147483647]],"max_phrase_tokens":128,"max_predictions":0,)"
    R"("forbid_duplicate_boxes":false,"runs":[{"triggers":[[1,58456,788,330],[58456,788,330]],"separator":[220],)"
    R"("coords":4,"ordered_box":true,"optional":false},{"triggers":[[788,330]],"separator":[220],"coords":2,)"
    R"("ordered_box":false,"optional":true}],"coords_only_in_runs":true,"json_vocab":""})";

// <|object_ref_start|>person<|object_ref_end|><|box_start|><12><34><56><78>, <1><2><3><4>,<5><6><7><8><|box_end|>,
// <|object_ref_start|>traffic light<|object_ref_end|><|box_start|>None<|box_end|><|im_end|>
const std::vector<int32_t> kDetectionOutput = {
    151646, 8987,   151647, 151648, 150655, 150677, 150699, 150721, 11,     220,    150644, 150645, 150646, 150647, 11,
    150648, 150649, 150650, 150651, 151649, 11,     220,    151646, 53987,  3100,   151647, 151648, 4064,   151649, 151645};

// ```json {"person1": {"bbox": " <1> <2> <3> <4> ", "keypoints": {"nose": " <5> <6> ", "left eye": "unvisible"}}} ```
const std::vector<int32_t> kKeypointOutput = {
    73594, 2236,  198,    515,   220,    330,   8987,   16,    788,    341,    262,    330,    58456,  788,   330,
    220,   150644, 220,   150645, 220,   150646, 220,    150647, 21796, 262,    330,    792,    7706,   788,   341,
    414,   330,   77,     960,   788,    330,   220,    150648, 220,   150649, 21796,  414,    330,    2359,  7912,
    788,   330,   359,    12601, 698,    262,   456,    220,    456,   532,    73594,  151645};

int feed(GrammarState& gs, const std::vector<int32_t>& ids) {
  for (size_t i = 0; i < ids.size(); ++i)
    if (!gs.advance(ids[i]).ok()) return int(i);
  return -1;
}

}  // namespace

REX_TEST(detection_grammar_from_ts_accepts_a_real_output) {
  auto g = grammar_from_json_text(kDetection);
  CHECK(g.ok());
  if (!g.ok()) return;
  CHECK(g->arity == ItemArity::kBox && g->phrase_mode == PhraseMode::kFixed && g->forbid_duplicate_boxes);
  CHECK_EQ(g->max_predictions, 50);
  CHECK(g->item_separators == std::vector<std::vector<int32_t>>({{11}, {11, 220}}));
  auto s = GrammarState::create(g.value(), kVocab);
  CHECK(s.ok());
  if (!s.ok()) return;
  CHECK_EQ(feed(s.value(), kDetectionOutput), -1);
  CHECK(s->done());
  CHECK_EQ(s->predictions(), 3);
  // Free text ("Ġperson") is no category; padding ids past the tokenizer are never allowed.
  auto fresh = std::move(GrammarState::create(g.value(), kVocab)).value();
  CHECK(fresh.advance(151646).ok());
  CHECK(!fresh.allowed().allows(1697));
  CHECK(!fresh.allowed().allows(151900));
}

REX_TEST(keypoint_grammar_from_ts_accepts_a_real_output) {
  auto g = grammar_from_json_text(kKeypoint);
  CHECK(g.ok());
  if (!g.ok()) return;
  auto s = GrammarState::create(g.value(), kVocab);
  CHECK(s.ok());
  if (!s.ok()) return;
  CHECK_EQ(feed(s.value(), kKeypointOutput), -1);
  CHECK(s->done());
  CHECK_EQ(s->predictions(), 1);
  // A bbox out of order is refused: x1 < x0 after " <3> <4> ".
  auto t = std::move(GrammarState::create(g.value(), kVocab)).value();
  std::vector<int32_t> head(kKeypointOutput.begin(), kKeypointOutput.begin() + 20);  // ... <1> Ġ <2> Ġ
  CHECK_EQ(feed(t, head), -1);
  CHECK(!t.allowed().allows(150643));  // <0> < x0 = <1>
  CHECK(t.allowed().allows(150644));
}

REX_TEST(malformed_grammar_json_names_the_field) {
  std::string text = kDetection;
  auto replace = [&](const std::string& from, const std::string& to) {
    std::string s = text;
    s.replace(s.find(from), from.size(), to);
    return s;
  };
  CHECK_CONTAINS(grammar_from_json_text(replace("\"arity\":\"box\"", "\"arity\":\"triangle\"")).status().message(),
                 "grammar.arity: expected \"point\" or \"box\" or \"polygon\" but got \"triangle\"");
  CHECK_CONTAINS(grammar_from_json_text(replace("\"stop_ids\":[151645]", "\"stop_ids\":[\"x\"]")).status().message(),
                 "grammar.stop_ids[0]: expected a 32-bit integer but got string");
  CHECK_CONTAINS(grammar_from_json_text(replace("\"coords_only_in_runs\":false", "\"extra\":1")).status().message(),
                 "grammar: expected no field \"extra\"");
  CHECK_CONTAINS(grammar_from_json_text("{").status().message(), "grammar: invalid JSON");
  CHECK(grammar_from_json_text("{").status().code() == StatusCode::kInvalidArgument);
}

// compileGrammar({syntax: 'keypoint-json', ...}, tok) writes every JSON-safe token of the
// real tokenizer (~79,000); this is the subset a real output and the closing
// single characters use, in the same "ID:TEXT|" form.
const char* kKeypointJson =
    R"({"mode":"keypoint_json","coord_first":150643,"coord_count":1000,"stop_ids":[151645],"ref_start":151646,)"
    R"("ref_end":151647,"box_start":151648,"box_end":151649,"none_tokens":[],"item_separators":[],)"
    R"("group_separators":[],"arity":"box","max_item_coords":0,"phrase_mode":"free","phrases":[],)"
    R"("free_text_banned":[],"max_phrase_tokens":128,"max_predictions":0,"forbid_duplicate_boxes":false,"runs":[],)"
    R"("coords_only_in_runs":false,"json_vocab":"1:\"|11:,|16:1|25::|63:`|65:b|68:e|72:i|73:j|74:k|75:l|77:n|78:o|79:p|)"
    R"(82:s|83:t|84:u|85:v|87:x|88:y|90:{|92:}|198:\n|220: |262:   |330: \"|341: {\n|359:un|414:     |456: }\n|515:{\n|)"
    R"(532:}\n|698:\"\n|788:\":|792:key|960:ose|2236:json|2359:left|7706:points|7912: eye|8987:person|12601:visible|)"
    R"(21796: \",\n|58456:bbox|73594:```|"})";

// ```json\n{\n  "person1": {\n    "bbox": " <1> <2> <3> <4> ",\n    "keypoints": {\n      "nose": " <5> <6> ",\n
//       "left eye": "unvisible"\n    }\n  }\n}\n```<|im_end|>, as the real tokenizer encodes it
const std::vector<int32_t> kKeypointJsonOutput = {
    73594, 2236, 198,    515,    220,    330,    8987,   16,    788,   341,    262,   330,    58456, 788,  330,
    220,   150644, 220, 150645, 220,    150646, 220,    150647, 21796, 262,    330,   792,    7706,  788,  341,
    414,   330,    77,  960,    788,    330,    220,    150648, 220,   150649, 21796, 414,    330,   2359, 7912,
    788,   330,    359, 12601,  698,    262,    456,    220,    456,   532,    73594, 151645};

REX_TEST(keypoint_json_grammar_from_ts_accepts_a_real_output) {
  auto g = grammar_from_json_text(kKeypointJson);
  CHECK(g.ok());
  if (!g.ok()) return;
  CHECK(g->mode == GrammarMode::kKeypointJson);
  CHECK_EQ(g->json_vocab.size(), size_t(45));
  CHECK(g->json_vocab[0] == std::make_pair(int32_t(1), std::string("\"")));
  auto s = GrammarState::create(g.value(), kVocab);
  CHECK(s.ok());
  if (!s.ok()) return;
  CHECK_EQ(feed(s.value(), kKeypointJsonOutput), -1);
  CHECK(s->done());
  CHECK_EQ(s->predictions(), 1);
  // x1 < x0 is refused after " <1> <2> ".
  auto t = std::move(GrammarState::create(g.value(), kVocab)).value();
  std::vector<int32_t> head(kKeypointJsonOutput.begin(), kKeypointJsonOutput.begin() + 20);
  CHECK_EQ(feed(t, head), -1);
  CHECK(!t.allowed().allows(150643) && t.allowed().allows(150644));
  CHECK(!t.allowed().allows(151645));
  // A malformed vocabulary string names the field.
  std::string bad = kKeypointJson;
  bad.replace(bad.find("1:\\\"|"), 4, "x:|");
  CHECK_CONTAINS(grammar_from_json_text(bad).status().message(), "grammar.json_vocab entry 0");
}
