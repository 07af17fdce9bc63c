// The strict JSON parser behind json.h: a recursive-descent reader over a
// byte buffer that reports the first error with its byte offset.
#include "common/json.h"

#include <algorithm>
#include <charconv>
#include <cmath>

namespace rex::json {

namespace {

constexpr int kMaxDepth = 256;  // nesting limit, so hostile input cannot overflow the stack

const std::string& empty_string() {
  static const std::string s;
  return s;
}

class Parser {
 public:
  explicit Parser(std::string_view text) : text_(text) {}

  Result<Value> parse_document() {
    skip_whitespace();
    Value root;
    if (!parse_value(root, 0)) return error_status();
    skip_whitespace();
    if (pos_ != text_.size()) {
      fail("unexpected content after the JSON value");
      return error_status();
    }
    return root;
  }

 private:
  bool at_end() const { return pos_ >= text_.size(); }
  unsigned char peek() const { return static_cast<unsigned char>(text_[pos_]); }

  bool fail(std::string what) {
    if (error_.empty()) {
      error_ = std::move(what);
      error_pos_ = pos_;
    }
    return false;
  }
  Status error_status() const {
    return Status(StatusCode::kBadHeader,
                  "invalid JSON at byte " + std::to_string(error_pos_) + ": " + error_);
  }

  void skip_whitespace() {
    while (!at_end()) {
      char c = text_[pos_];
      if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
      ++pos_;
    }
  }

  bool consume_literal(std::string_view word) {
    if (text_.substr(pos_, word.size()) != word) return fail("invalid literal");
    pos_ += word.size();
    return true;
  }

  bool parse_value(Value& out, int depth) {
    if (at_end()) return fail("unexpected end of input; expected a value");
    switch (text_[pos_]) {
      case '{': return parse_object(out, depth);
      case '[': return parse_array(out, depth);
      case '"': {
        std::string s;
        if (!parse_string(s)) return false;
        out = Value::make_string(std::move(s));
        return true;
      }
      case 't':
        if (!consume_literal("true")) return false;
        out = Value::make_bool(true);
        return true;
      case 'f':
        if (!consume_literal("false")) return false;
        out = Value::make_bool(false);
        return true;
      case 'n':
        if (!consume_literal("null")) return false;
        out = Value();
        return true;
      default:
        if (text_[pos_] == '-' || (text_[pos_] >= '0' && text_[pos_] <= '9')) return parse_number(out);
        return fail(std::string("unexpected character '") + text_[pos_] + "'");
    }
  }

  bool parse_object(Value& out, int depth) {
    if (depth >= kMaxDepth) return fail("nesting deeper than " + std::to_string(kMaxDepth));
    ++pos_;  // '{'
    std::vector<Value::Member> members;
    skip_whitespace();
    if (!at_end() && text_[pos_] == '}') {
      ++pos_;
      out = Value::make_object(std::move(members));
      return true;
    }
    while (true) {
      skip_whitespace();
      if (at_end() || text_[pos_] != '"') return fail("expected a string key");
      size_t key_pos = pos_;
      std::string key;
      if (!parse_string(key)) return false;
      skip_whitespace();
      if (at_end() || text_[pos_] != ':') return fail("expected ':' after an object key");
      ++pos_;
      skip_whitespace();
      Value value;
      if (!parse_value(value, depth + 1)) return false;
      members.emplace_back(std::move(key), std::move(value));
      key_positions_.push_back(key_pos);
      skip_whitespace();
      if (at_end()) return fail("unexpected end of input inside an object");
      if (text_[pos_] == ',') { ++pos_; continue; }
      if (text_[pos_] == '}') { ++pos_; break; }
      return fail("expected ',' or '}' in an object");
    }
    size_t first_key = key_positions_.size() - members.size();
    if (!check_unique_keys(members, first_key)) return false;
    key_positions_.resize(first_key);
    out = Value::make_object(std::move(members));
    return true;
  }

  // Duplicate keys are ambiguous (which one wins differs between readers), so reject them.
  bool check_unique_keys(const std::vector<Value::Member>& members, size_t first_key) {
    std::vector<size_t> order(members.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
      int c = members[a].first.compare(members[b].first);
      return c != 0 ? c < 0 : a < b;
    });
    for (size_t i = 1; i < order.size(); ++i) {
      if (members[order[i]].first == members[order[i - 1]].first) {
        pos_ = key_positions_[first_key + order[i]];
        return fail("duplicate object key \"" + members[order[i]].first + "\"");
      }
    }
    return true;
  }

  bool parse_array(Value& out, int depth) {
    if (depth >= kMaxDepth) return fail("nesting deeper than " + std::to_string(kMaxDepth));
    ++pos_;  // '['
    std::vector<Value> items;
    skip_whitespace();
    if (!at_end() && text_[pos_] == ']') {
      ++pos_;
      out = Value::make_array(std::move(items));
      return true;
    }
    while (true) {
      skip_whitespace();
      Value item;
      if (!parse_value(item, depth + 1)) return false;
      items.push_back(std::move(item));
      skip_whitespace();
      if (at_end()) return fail("unexpected end of input inside an array");
      if (text_[pos_] == ',') { ++pos_; continue; }
      if (text_[pos_] == ']') { ++pos_; break; }
      return fail("expected ',' or ']' in an array");
    }
    out = Value::make_array(std::move(items));
    return true;
  }

  bool parse_hex4(uint32_t& out) {
    if (text_.size() - pos_ < 4) return fail("truncated \\u escape");
    out = 0;
    for (int i = 0; i < 4; ++i) {
      char c = text_[pos_ + i];
      uint32_t digit;
      if (c >= '0' && c <= '9') digit = c - '0';
      else if (c >= 'a' && c <= 'f') digit = c - 'a' + 10;
      else if (c >= 'A' && c <= 'F') digit = c - 'A' + 10;
      else return fail("invalid hex digit in \\u escape");
      out = out * 16 + digit;
    }
    pos_ += 4;
    return true;
  }

  static void append_utf8(std::string& s, uint32_t cp) {
    if (cp < 0x80) {
      s += static_cast<char>(cp);
    } else if (cp < 0x800) {
      s += static_cast<char>(0xC0 | (cp >> 6));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      s += static_cast<char>(0xE0 | (cp >> 12));
      s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      s += static_cast<char>(0xF0 | (cp >> 18));
      s += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  // After "\u" has been consumed: one code point, joining a surrogate pair.
  bool parse_unicode_escape(std::string& s) {
    uint32_t cp;
    if (!parse_hex4(cp)) return false;
    if (cp >= 0xDC00 && cp <= 0xDFFF) return fail("unpaired low surrogate in \\u escape");
    if (cp >= 0xD800 && cp <= 0xDBFF) {
      if (text_.substr(pos_, 2) != "\\u") return fail("high surrogate not followed by a low surrogate");
      pos_ += 2;
      uint32_t low;
      if (!parse_hex4(low)) return false;
      if (low < 0xDC00 || low > 0xDFFF) return fail("high surrogate not followed by a low surrogate");
      cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
    }
    append_utf8(s, cp);
    return true;
  }

  // Copies one raw (unescaped) UTF-8 sequence starting at pos_, validating it.
  bool copy_utf8_sequence(std::string& s) {
    unsigned char c = peek();
    int extra;
    uint32_t cp;
    if (c < 0x80) { extra = 0; cp = c; }
    else if ((c & 0xE0) == 0xC0) { extra = 1; cp = c & 0x1F; }
    else if ((c & 0xF0) == 0xE0) { extra = 2; cp = c & 0x0F; }
    else if ((c & 0xF8) == 0xF0) { extra = 3; cp = c & 0x07; }
    else return fail("invalid UTF-8 byte");
    if (text_.size() - pos_ <= static_cast<size_t>(extra)) return fail("truncated UTF-8 sequence");
    for (int i = 1; i <= extra; ++i) {
      unsigned char cc = static_cast<unsigned char>(text_[pos_ + i]);
      if ((cc & 0xC0) != 0x80) return fail("invalid UTF-8 continuation byte");
      cp = (cp << 6) | (cc & 0x3F);
    }
    static const uint32_t kMinForLength[4] = {0, 0x80, 0x800, 0x10000};
    if (cp < kMinForLength[extra]) return fail("overlong UTF-8 sequence");
    if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return fail("invalid UTF-8 code point");
    s.append(text_.data() + pos_, extra + 1);
    pos_ += extra + 1;
    return true;
  }

  bool parse_string(std::string& s) {
    ++pos_;  // opening quote
    while (true) {
      if (at_end()) return fail("unterminated string");
      unsigned char c = peek();
      if (c == '"') { ++pos_; return true; }
      if (c < 0x20) return fail("unescaped control character in a string");
      if (c != '\\') {
        if (!copy_utf8_sequence(s)) return false;
        continue;
      }
      ++pos_;
      if (at_end()) return fail("unterminated escape");
      char e = text_[pos_++];
      switch (e) {
        case '"': s += '"'; break;
        case '\\': s += '\\'; break;
        case '/': s += '/'; break;
        case 'b': s += '\b'; break;
        case 'f': s += '\f'; break;
        case 'n': s += '\n'; break;
        case 'r': s += '\r'; break;
        case 't': s += '\t'; break;
        case 'u':
          if (!parse_unicode_escape(s)) return false;
          break;
        default:
          --pos_;
          return fail(std::string("invalid escape '\\") + e + "'");
      }
    }
  }

  bool scan_digits() {
    size_t start = pos_;
    while (!at_end() && text_[pos_] >= '0' && text_[pos_] <= '9') ++pos_;
    return pos_ > start;
  }

  // -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
  bool parse_number(Value& out) {
    size_t start = pos_;
    if (text_[pos_] == '-') ++pos_;
    if (at_end()) return fail("truncated number");
    if (text_[pos_] == '0') {
      ++pos_;
      if (!at_end() && text_[pos_] >= '0' && text_[pos_] <= '9') return fail("leading zero in a number");
    } else if (!scan_digits()) {
      return fail("expected a digit");
    }
    bool integral_literal = true;
    if (!at_end() && text_[pos_] == '.') {
      ++pos_;
      integral_literal = false;
      if (!scan_digits()) return fail("expected a digit after '.'");
    }
    if (!at_end() && (text_[pos_] == 'e' || text_[pos_] == 'E')) {
      ++pos_;
      integral_literal = false;
      if (!at_end() && (text_[pos_] == '+' || text_[pos_] == '-')) ++pos_;
      if (!scan_digits()) return fail("expected a digit in the exponent");
    }
    const char* first = text_.data() + start;
    const char* last = text_.data() + pos_;
    double d = 0.0;
    auto [dend, derr] = std::from_chars(first, last, d);
    if (derr == std::errc::result_out_of_range) {
      // Overflow or underflow: from_chars leaves d alone. Finite input must stay finite.
      pos_ = start;
      return fail("number out of range");
    }
    if (derr != std::errc() || dend != last) {
      pos_ = start;
      return fail("invalid number");
    }
    int64_t i = 0;
    bool is_int = false;
    if (integral_literal) {
      auto [iend, ierr] = std::from_chars(first, last, i);
      is_int = ierr == std::errc() && iend == last;
    }
    if (!is_int && std::isfinite(d) && std::floor(d) == d && std::fabs(d) <= 9007199254740992.0) {
      i = static_cast<int64_t>(d);  // exact: |d| <= 2^53
      is_int = true;
    }
    out = Value::make_number(d, is_int, i);
    return true;
  }

  std::string_view text_;
  size_t pos_ = 0;
  std::string error_;
  size_t error_pos_ = 0;
  std::vector<size_t> key_positions_;  // byte offsets of the keys of the objects being parsed
};

}  // namespace

const char* type_name(Type type) {
  switch (type) {
    case Type::kNull: return "null";
    case Type::kBool: return "bool";
    case Type::kNumber: return "number";
    case Type::kString: return "string";
    case Type::kArray: return "array";
    case Type::kObject: return "object";
  }
  return "unknown";
}

Value Value::make_bool(bool b) {
  Value v;
  v.type_ = Type::kBool;
  v.bool_ = b;
  return v;
}

Value Value::make_number(double d, bool is_int, int64_t i) {
  Value v;
  v.type_ = Type::kNumber;
  v.number_ = d;
  v.is_int_ = is_int;
  v.int_ = is_int ? i : 0;
  return v;
}

Value Value::make_string(std::string s) {
  Value v;
  v.type_ = Type::kString;
  v.string_ = std::move(s);
  return v;
}

Value Value::make_array(std::vector<Value> items) {
  Value v;
  v.type_ = Type::kArray;
  v.items_ = std::move(items);
  return v;
}

Value Value::make_object(std::vector<Member> members) {
  Value v;
  v.type_ = Type::kObject;
  v.members_ = std::move(members);
  return v;
}

const std::string& Value::as_string() const {
  return type_ == Type::kString ? string_ : empty_string();
}

const std::vector<Value>& Value::items() const {
  static const std::vector<Value> kEmpty;
  return type_ == Type::kArray ? items_ : kEmpty;
}

const std::vector<Value::Member>& Value::members() const {
  static const std::vector<Member> kEmpty;
  return type_ == Type::kObject ? members_ : kEmpty;
}

size_t Value::size() const {
  if (type_ == Type::kArray) return items_.size();
  if (type_ == Type::kObject) return members_.size();
  return 0;
}

const Value* Value::get(std::string_view key) const {
  if (type_ != Type::kObject) return nullptr;
  for (const auto& m : members_) {
    if (m.first == key) return &m.second;
  }
  return nullptr;
}

Result<Value> parse(std::string_view text) {
  return Parser(text).parse_document();
}

}  // namespace rex::json
