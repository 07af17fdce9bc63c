#include "request_from_js.h"

#include <cmath>
#include <deque>
#include <string>

#include "errors.h"
#include "sampling/grammar_json.h"

namespace rex_napi {
namespace {

std::string type_of(Napi::Value v) {
  switch (v.Type()) {
    case napi_undefined: return "undefined";
    case napi_null: return "null";
    case napi_boolean: return "a boolean";
    case napi_number: return "a number";
    case napi_string: return "a string";
    case napi_object: return v.IsArray() ? "an array" : (v.IsTypedArray() ? "a typed array" : "an object");
    case napi_function: return "a function";
    default: return "another type";
  }
}

[[noreturn]] void fail(Napi::Env env, const std::string& field, const std::string& expected, Napi::Value got) {
  throw invalid_argument(env, "request." + field + ": expected " + expected + " but got " + type_of(got));
}

double number_field(Napi::Env env, Napi::Object o, const char* name, const std::string& path, double fallback) {
  Napi::Value v = o.Get(name);
  if (v.IsUndefined()) return fallback;
  if (!v.IsNumber()) fail(env, path + name, "a number", v);
  return v.As<Napi::Number>().DoubleValue();
}

bool bool_field(Napi::Env env, Napi::Object o, const char* name, bool fallback) {
  Napi::Value v = o.Get(name);
  if (v.IsUndefined()) return fallback;
  if (!v.IsBoolean()) fail(env, name, "a boolean", v);
  return v.As<Napi::Boolean>().Value();
}

int int_field(Napi::Env env, Napi::Object o, const char* name, const std::string& path, int fallback) {
  double d = number_field(env, o, name, path, fallback);
  if (!std::isfinite(d) || d != std::floor(d) || std::fabs(d) > 2147483647.0)
    throw invalid_argument(env, "request." + path + name + ": expected an integer but got " + std::to_string(d));
  return static_cast<int>(d);
}

std::vector<int32_t> int_list(Napi::Env env, Napi::Value v, const std::string& field) {
  std::vector<int32_t> out;
  if (v.IsTypedArray() && v.As<Napi::TypedArray>().TypedArrayType() == napi_int32_array) {
    Napi::Int32Array a = v.As<Napi::Int32Array>();
    out.assign(a.Data(), a.Data() + a.ElementLength());
    return out;
  }
  if (!v.IsArray()) fail(env, field, "an Int32Array or an array of integers", v);
  Napi::Array a = v.As<Napi::Array>();
  out.reserve(a.Length());
  for (uint32_t i = 0; i < a.Length(); ++i) {
    Napi::Value item = a.Get(i);
    if (!item.IsNumber()) fail(env, field + "[" + std::to_string(i) + "]", "an integer", item);
    out.push_back(item.As<Napi::Number>().Int32Value());
  }
  return out;
}

rex::SamplingParams sampling_from_js(Napi::Env env, Napi::Value v) {
  rex::SamplingParams p;
  if (v.IsUndefined()) return p;
  if (!v.IsObject()) fail(env, "sampling", "an object", v);
  Napi::Object o = v.As<Napi::Object>();
  p.temperature = static_cast<float>(number_field(env, o, "temperature", "sampling.", p.temperature));
  p.top_k = int_field(env, o, "topK", "sampling.", p.top_k);
  p.top_p = static_cast<float>(number_field(env, o, "topP", "sampling.", p.top_p));
  p.repetition_penalty = static_cast<float>(number_field(env, o, "repetitionPenalty", "sampling.", p.repetition_penalty));
  Napi::Value seed = o.Get("seed");
  if (seed.IsBigInt()) {
    bool lossless = true;
    p.seed = seed.As<Napi::BigInt>().Uint64Value(&lossless);
  } else if (!seed.IsUndefined()) {
    double d = number_field(env, o, "seed", "sampling.", 0);
    if (!(d >= 0) || d != std::floor(d) || d > 9007199254740991.0)
      throw invalid_argument(env, "request.sampling.seed: expected a non-negative integer but got " + std::to_string(d));
    p.seed = static_cast<uint64_t>(d);
  }
  return p;
}

// Parsing a grammar costs up to tens of milliseconds (the keypoint grammar
// carries its JSON vocabulary), on the JS thread. Services send the same few
// grammars again and again, so the last few parses are kept (per thread: each
// JS environment has its own).
rex::OutputGrammar parsed_grammar(Napi::Env env, const std::string& text) {
  struct Entry {
    std::string text;
    rex::OutputGrammar grammar;
  };
  thread_local std::deque<Entry> recent;
  for (const Entry& e : recent)
    if (e.text == text) return e.grammar;
  rex::Result<rex::OutputGrammar> parsed = rex::grammar_from_json_text(text);
  if (!parsed.ok()) throw status_to_error(env, parsed.status());
  recent.push_front({text, parsed.value()});
  if (recent.size() > 8) recent.pop_back();
  return std::move(parsed).value();
}

}  // namespace

rex::RawImage raw_image_from_js(Napi::Env env, Napi::Value v, const std::string& field) {
  if (!v.IsObject()) fail(env, field, "an object {data, width, height}", v);
  Napi::Object o = v.As<Napi::Object>();
  Napi::Value data = o.Get("data");
  if (!data.IsTypedArray() || data.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
    fail(env, field + ".data", "a Uint8Array of interleaved RGB", data);
  const std::string prefix = field + ".";
  rex::RawImage image;
  image.width = int_field(env, o, "width", prefix, 0);
  image.height = int_field(env, o, "height", prefix, 0);
  Napi::Uint8Array bytes = data.As<Napi::Uint8Array>();
  image.rgb.assign(bytes.Data(), bytes.Data() + bytes.ElementLength());
  image.options.min_pixels = int_field(env, o, "minPixels", prefix, image.options.min_pixels);
  image.options.max_pixels = int_field(env, o, "maxPixels", prefix, image.options.max_pixels);
  return image;
}

namespace {
// The fields every request kind carries: promptIds and an optional image.
template <typename Request>
Napi::Object prompt_from_js(Napi::Env env, Napi::Value value, const char* what, Request* request) {
  if (!value.IsObject()) throw invalid_argument(env, std::string(what) + ": expected an object but got " + type_of(value));
  Napi::Object o = value.As<Napi::Object>();
  request->prompt_ids = int_list(env, o.Get("promptIds"), "promptIds");
  Napi::Value image = o.Get("image");
  if (!image.IsUndefined() && !image.IsNull()) request->raw_image = raw_image_from_js(env, image, "image");
  return o;
}
}  // namespace

rex::GenerationRequest generation_request_from_js(Napi::Env env, Napi::Value value) {
  rex::GenerationRequest request;
  Napi::Object o = prompt_from_js(env, value, "request", &request);
  request.max_new_tokens = int_field(env, o, "maxNewTokens", "", request.max_new_tokens);
  Napi::Value stops = o.Get("stopTokenIds");
  if (!stops.IsUndefined()) request.stop_token_ids = int_list(env, stops, "stopTokenIds");
  request.sampling = sampling_from_js(env, o.Get("sampling"));
  Napi::Value grammar = o.Get("grammar");
  if (!grammar.IsUndefined() && !grammar.IsNull()) {
    // The compiled grammar travels as JSON text (lib/grammar/types.ts lists its fields).
    if (!grammar.IsString()) fail(env, "grammar", "the JSON text of a compiled grammar", grammar);
    request.grammar = parsed_grammar(env, grammar.As<Napi::String>().Utf8Value());
  }
  request.jump_forward = bool_field(env, o, "jumpForward", request.jump_forward);
  request.want_scores = bool_field(env, o, "scores", request.want_scores);
  const double deadline = number_field(env, o, "deadlineMs", "", 0);
  if (!(deadline >= 0) || deadline != std::floor(deadline) || deadline > 9007199254740991.0)
    throw invalid_argument(env, "request.deadlineMs: expected a non-negative integer number of milliseconds (0: none) but got " +
                                    std::to_string(deadline));
  request.deadline_ms = static_cast<int64_t>(deadline);
  return request;
}

rex::ScoreRequest score_request_from_js(Napi::Env env, Napi::Value value) {
  rex::ScoreRequest request;
  Napi::Object o = prompt_from_js(env, value, "score request", &request);
  request.continuation_ids = int_list(env, o.Get("continuationIds"), "continuationIds");
  request.top_k = int_field(env, o, "topK", "", request.top_k);
  request.full_logits = bool_field(env, o, "fullLogits", request.full_logits);
  return request;
}

}  // namespace rex_napi
