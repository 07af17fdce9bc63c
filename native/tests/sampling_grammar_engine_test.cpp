// Constrained decoding through the Engine over a random in-memory model
// (vocabulary 1000: text 0..99, coordinates 100..899, structural 900..905):
// 50 seeded sampled generations per grammar kind end with STOP at a group
// boundary (finish "eos", never "length", even with small max_new_tokens),
// replay cleanly through a fresh GrammarState, report both log-probabilities,
// and a request without a grammar is untouched. Invalid grammars are
// rejected at submit.
#include <vector>

#include "cpu/cpu_backend.h"
#include "cpu/random_model.h"
#include "rex/engine.h"
#include "test_harness.h"

using namespace rex;
using namespace rex::cpu;

namespace {

constexpr int32_t kStop = 900, kRefStart = 901, kRefEnd = 902, kBoxStart = 903, kBoxEnd = 904;

OutputGrammar grammar(ItemArity arity, bool fixed) {
  OutputGrammar g;
  g.coord_first = 100;
  g.coord_count = 800;
  g.stop_ids = {kStop};
  g.ref_start = kRefStart;
  g.ref_end = kRefEnd;
  g.box_start = kBoxStart;
  g.box_end = kBoxEnd;
  g.none_tokens = {30};
  g.item_separators = {{11}, {11, 20}};
  g.group_separators = {{11, 20}};
  g.arity = arity;
  g.phrase_mode = fixed ? PhraseMode::kFixed : PhraseMode::kFree;
  if (fixed) g.phrases = {{40}, {41, 42}};
  g.free_text_banned = {{100, 1000}};
  g.max_phrase_tokens = 6;
  g.max_predictions = 6;
  g.forbid_duplicate_boxes = true;
  return g;
}

struct Fixture {
  std::shared_ptr<RandomModel> model;
  std::unique_ptr<Engine> engine;
  Fixture() {
    model = std::shared_ptr<RandomModel>(make_random_model().release());
    auto be = std::make_unique<CpuBackend>(2);
    CHECK(be->prepare(model->config, model->weights).ok());
    auto e = Engine::create_with_backend(model->config, std::move(be), EngineOptions{}, model);
    CHECK(e.ok());
    engine = std::move(e).value();
  }
};

GenerationRequest request(const OutputGrammar* g, uint64_t seed, int max_new) {
  GenerationRequest r;
  r.prompt_ids = {5, 17, 42, 7};
  r.max_new_tokens = max_new;
  r.stop_token_ids = {kStop};
  r.sampling.temperature = 1.5f;
  r.sampling.top_p = 0.95f;
  r.sampling.repetition_penalty = 1.05f;
  r.sampling.seed = seed;
  if (g) r.grammar = *g;
  return r;
}

}  // namespace

REX_TEST(fifty_seeded_generations_per_grammar_close_cleanly) {
  Fixture f;
  const OutputGrammar grammars[] = {grammar(ItemArity::kBox, true), grammar(ItemArity::kPoint, true),
                                    grammar(ItemArity::kPolygon, false), grammar(ItemArity::kBox, false)};
  for (const OutputGrammar& g : grammars) {
    int items = 0;
    for (uint64_t seed = 0; seed < 50; ++seed) {
      const int max_new = 4 + int(seed % 40);
      auto res = f.engine->generate_blocking(request(&g, seed, max_new));
      CHECK(res.ok());
      if (!res.ok()) continue;
      CHECK(res->finish.reason == FinishReason::kEos);
      CHECK(int(res->tokens.size()) <= max_new);
      CHECK_EQ(res->model_logprobs.size(), res->tokens.size());
      for (size_t i = 0; i < res->tokens.size(); ++i) {
        CHECK(res->model_logprobs[i] <= 0.0f);
        CHECK(res->logprobs[i] <= 0.0f);
      }
      auto replay = std::move(GrammarState::create(g, 1000)).value();
      for (int32_t id : res->tokens) CHECK(replay.advance(id).ok());
      CHECK(replay.done());
      items += replay.predictions();
    }
    CHECK(items > 0);
  }
}

REX_TEST(no_grammar_is_plain_decoding) {
  Fixture f;
  auto a = f.engine->generate_blocking(request(nullptr, 3, 12));
  auto b = f.engine->generate_blocking(request(nullptr, 3, 12));
  CHECK(a.ok() && b.ok());
  if (!a.ok() || !b.ok()) return;
  CHECK(a->tokens == b->tokens);
  CHECK(a->finish.reason == FinishReason::kLength);  // a random model rarely says STOP
}

REX_TEST(invalid_grammar_is_rejected_at_submit) {
  Fixture f;
  OutputGrammar g = grammar(ItemArity::kBox, true);
  g.phrases.clear();
  auto res = f.engine->submit(request(&g, 0, 8));
  CHECK(!res.ok());
  CHECK(res.status().code() == StatusCode::kInvalidArgument);
  CHECK_CONTAINS(res.status().message(), "at least one phrase");
}
