// A small, strict JSON DOM for the files a checkpoint carries: config.json,
// model.safetensors.index.json and safetensors headers. RFC 8259 only: no
// comments, no trailing commas, no NaN/Infinity, valid UTF-8, unique object
// keys. Parse errors come back as kBadHeader with the byte offset.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "rex/status.h"

namespace rex::json {

enum class Type { kNull, kBool, kNumber, kString, kArray, kObject };

// "null", "bool", "number", "string", "array", "object": for error messages.
const char* type_name(Type type);

class Value {
 public:
  using Member = std::pair<std::string, Value>;

  Value() = default;  // null
  static Value make_bool(bool b);
  static Value make_number(double d, bool is_int, int64_t i);
  static Value make_string(std::string s);
  static Value make_array(std::vector<Value> items);
  static Value make_object(std::vector<Member> members);

  Type type() const { return type_; }
  const char* type_name() const { return json::type_name(type_); }
  bool is_null() const { return type_ == Type::kNull; }
  bool is_bool() const { return type_ == Type::kBool; }
  bool is_number() const { return type_ == Type::kNumber; }
  bool is_string() const { return type_ == Type::kString; }
  bool is_array() const { return type_ == Type::kArray; }
  bool is_object() const { return type_ == Type::kObject; }
  // A number whose value is an integer that int64 holds exactly
  // ("2048", "-3", also "1e3" and "2048.0").
  bool is_int() const { return type_ == Type::kNumber && is_int_; }

  // Accessors: the caller checks the type first; a wrong type yields
  // false / 0 / an empty string / an empty list rather than failing.
  bool as_bool() const { return type_ == Type::kBool && bool_; }
  double as_double() const { return type_ == Type::kNumber ? number_ : 0.0; }
  int64_t as_int() const { return is_int() ? int_ : 0; }
  const std::string& as_string() const;
  const std::vector<Value>& items() const;     // array elements
  const std::vector<Member>& members() const;  // object members, in file order

  // Array length or object member count; 0 for scalars.
  size_t size() const;
  // Object member `key`, or nullptr when absent or when this is no object.
  const Value* get(std::string_view key) const;

 private:
  Type type_ = Type::kNull;
  bool bool_ = false;
  bool is_int_ = false;
  double number_ = 0.0;
  int64_t int_ = 0;
  std::string string_;
  std::vector<Value> items_;
  std::vector<Member> members_;
};

// Parses one JSON document; only whitespace may follow it.
// Errors: kBadHeader "invalid JSON at byte N: <what>".
Result<Value> parse(std::string_view text);

}  // namespace rex::json
