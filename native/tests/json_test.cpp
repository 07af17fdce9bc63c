// Tests for the strict JSON parser in native/common/json.h.
#include <string>

#include "common/json.h"
#include "test_harness.h"

using rex::StatusCode;
using rex::json::Value;

namespace {

Value parse_ok(const std::string& text) {
  auto r = rex::json::parse(text);
  if (!r.ok()) {
    rex_test::fail(__FILE__, __LINE__, "parse failed: " + r.status().message());
    return Value();
  }
  return std::move(r).value();
}

// The parse must fail with kBadHeader and a message containing `fragment`.
void expect_error(const std::string& text, const std::string& fragment) {
  auto r = rex::json::parse(text);
  CHECK(!r.ok());
  CHECK(r.status().code() == StatusCode::kBadHeader);
  CHECK_CONTAINS(r.status().message(), fragment);
}

}  // namespace

REX_TEST(parses_scalars) {
  CHECK(parse_ok("null").is_null());
  CHECK(parse_ok(" true ").as_bool());
  CHECK(parse_ok("false").is_bool());
  CHECK(!parse_ok("false").as_bool());
  CHECK_EQ(parse_ok("\"hi\"").as_string(), "hi");
  CHECK_NEAR(parse_ok("-12.5e-1").as_double(), -1.25, 0.0);
  CHECK_NEAR(parse_ok("1e-06").as_double(), 1e-6, 0.0);
}

REX_TEST(integers_are_exact) {
  Value big = parse_ok("9007199254740993");  // 2^53 + 1: a double cannot hold it
  CHECK(big.is_int());
  CHECK_EQ(big.as_int(), 9007199254740993LL);
  Value neg = parse_ok("-9223372036854775808");
  CHECK(neg.is_int());
  CHECK_EQ(neg.as_int(), INT64_MIN);
  CHECK(parse_ok("2048").is_int());
  CHECK_EQ(parse_ok("2048").as_int(), 2048);
  CHECK(parse_ok("1e3").is_int());
  CHECK_EQ(parse_ok("1e3").as_int(), 1000);
  CHECK(parse_ok("2048.0").is_int());
  CHECK(!parse_ok("1.5").is_int());
  CHECK(!parse_ok("1e300").is_int());
  CHECK(!parse_ok("\"3\"").is_int());
  CHECK_EQ(parse_ok("\"3\"").as_int(), 0);
}

REX_TEST(parses_nested_containers_in_order) {
  Value v = parse_ok("{\"b\": [1, {\"c\": null}, []], \"a\": {}, \"z\": \"\"}");
  CHECK(v.is_object());
  CHECK_EQ(v.size(), 3u);
  CHECK_EQ(v.members()[0].first, "b");
  CHECK_EQ(v.members()[1].first, "a");
  const Value* b = v.get("b");
  CHECK(b != nullptr && b->is_array());
  CHECK_EQ(b->size(), 3u);
  CHECK_EQ(b->items()[0].as_int(), 1);
  CHECK(b->items()[1].get("c") != nullptr);
  CHECK(b->items()[1].get("c")->is_null());
  CHECK(b->items()[2].is_array());
  CHECK(v.get("a")->is_object());
  CHECK(v.get("missing") == nullptr);
  CHECK(b->get("c") == nullptr);  // get on an array
}

REX_TEST(decodes_escapes_to_utf8) {
  CHECK_EQ(parse_ok("\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\"").as_string(), "a\"b\\c/d\b\f\n\r\t");
  CHECK_EQ(parse_ok("\"\\u0041\\u00e9\\u20AC\"").as_string(), "A\xC3\xA9\xE2\x82\xAC");
  CHECK_EQ(parse_ok("\"\\ud83d\\ude00\"").as_string(), "\xF0\x9F\x98\x80");  // U+1F600 from a surrogate pair
  CHECK_EQ(parse_ok("\"\\u0000\"").as_string(), std::string(1, '\0'));
  CHECK_EQ(parse_ok("\"caf\xC3\xA9\"").as_string(), "caf\xC3\xA9");  // raw UTF-8 passes through
}

REX_TEST(rejects_bad_strings) {
  expect_error("\"\\ud83d\"", "high surrogate");
  expect_error("\"\\ude00\"", "unpaired low surrogate");
  expect_error("\"\\ud83d\\u0041\"", "high surrogate");
  expect_error("\"\\u12G4\"", "hex digit");
  expect_error("\"\\x\"", "invalid escape");
  expect_error("\"abc", "unterminated string");
  expect_error("\"a\nb\"", "control character");
  expect_error("\"\xC3\"", "UTF-8");
  expect_error("\"\xC0\xAF\"", "overlong");
  expect_error("\"\xFF\"", "invalid UTF-8 byte");
  expect_error("\"\xED\xA0\x80\"", "invalid UTF-8 code point");  // an encoded surrogate
}

REX_TEST(reports_the_byte_offset) {
  expect_error("{\"a\": tru}", "invalid JSON at byte 6: invalid literal");
  expect_error("[1, 2,]", "at byte 6");
  expect_error("{\"a\": 1,}", "at byte 8: expected a string key");
  expect_error("", "at byte 0: unexpected end of input");
  expect_error("{\"a\" 1}", "at byte 5: expected ':'");
  expect_error("[1] x", "at byte 4: unexpected content after the JSON value");
}

REX_TEST(rejects_non_rfc_numbers_and_literals) {
  expect_error("01", "leading zero");
  expect_error("1.", "digit after '.'");
  expect_error(".5", "unexpected character");
  expect_error("1e", "exponent");
  expect_error("-", "truncated number");
  expect_error("+1", "unexpected character");
  expect_error("NaN", "unexpected character");
  expect_error("Infinity", "unexpected character");
  expect_error("1e400", "out of range");
  expect_error("nul", "invalid literal");
  expect_error("// c\n{}", "unexpected character");
}

REX_TEST(rejects_duplicate_keys) {
  expect_error("{\"a\": 1, \"b\": 2, \"a\": 3}", "at byte 17: duplicate object key \"a\"");
  // The same key in different objects is fine.
  Value v = parse_ok("{\"a\": {\"a\": 1}, \"b\": {\"a\": 2}}");
  CHECK_EQ(v.get("b")->get("a")->as_int(), 2);
}

REX_TEST(limits_nesting_depth) {
  std::string deep(300, '[');
  deep += std::string(300, ']');
  expect_error(deep, "nesting deeper than 256");
  std::string ok(200, '[');
  ok += std::string(200, ']');
  CHECK(rex::json::parse(ok).ok());
}

REX_TEST(wrong_type_accessors_are_harmless) {
  Value v = parse_ok("[1]");
  CHECK_EQ(v.as_string(), "");
  CHECK(v.members().empty());
  CHECK(!v.as_bool());
  CHECK_NEAR(v.as_double(), 0.0, 0.0);
  CHECK(parse_ok("{}").items().empty());
  CHECK_EQ(parse_ok("5").size(), 0u);
  CHECK_EQ(std::string(parse_ok("{}").type_name()), "object");
}
