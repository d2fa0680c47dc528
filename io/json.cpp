// Strict JSON: a recursive-descent parser with a depth limit and a shortest-round-trip writer.
#include "io/json.h"

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <sstream>
#include <unordered_set>

#include "core/error.h"

namespace idem::json {

// ---------------------------------------------------------------------------------------------
// Value

Value Value::array(Array a) {
  Value v;
  v.type_ = Type::array;
  v.arr_ = std::move(a);
  return v;
}

Value Value::object(Object o) {
  Value v;
  v.type_ = Type::object;
  v.obj_ = std::move(o);
  return v;
}

const char* Value::type_name() const {
  switch (type_) {
    case Type::null:
      return "null";
    case Type::boolean:
      return "boolean";
    case Type::number:
      return "number";
    case Type::string:
      return "string";
    case Type::array:
      return "array";
    case Type::object:
      return "object";
  }
  return "?";
}

namespace {
[[noreturn]] void type_error(const Value& v, const char* want) {
  fail("json", "expected ", want, ", got ", v.type_name());
}
}  // namespace

bool Value::as_bool() const {
  if (!is_bool()) type_error(*this, "a boolean");
  return bool_;
}
double Value::as_double() const {
  if (!is_number()) type_error(*this, "a number");
  return num_;
}
int64_t Value::as_int() const {
  if (!is_number()) type_error(*this, "an integer");
  if (!is_int_) fail("json", "expected an integer in the int64 range, got ", num_);
  return int_;
}
const std::string& Value::as_string() const {
  if (!is_string()) type_error(*this, "a string");
  return str_;
}
const Value::Array& Value::as_array() const {
  if (!is_array()) type_error(*this, "an array");
  return arr_;
}
const Value::Object& Value::as_object() const {
  if (!is_object()) type_error(*this, "an object");
  return obj_;
}
Value::Array& Value::as_array() {
  if (!is_array()) type_error(*this, "an array");
  return arr_;
}
Value::Object& Value::as_object() {
  if (!is_object()) type_error(*this, "an object");
  return obj_;
}

const Value* Value::find(std::string_view key) const {
  if (!is_object()) return nullptr;
  for (const auto& kv : obj_)
    if (kv.first == key) return &kv.second;
  return nullptr;
}

const Value& Value::at(std::string_view key) const {
  if (!is_object()) type_error(*this, "an object");
  const Value* v = find(key);
  if (!v) fail("json", "missing key ", quote(key));
  return *v;
}

void Value::set(const std::string& key, Value v) {
  Object& o = as_object();
  for (auto& kv : o)
    if (kv.first == key) {
      kv.second = std::move(v);
      return;
    }
  o.emplace_back(key, std::move(v));
}

void Value::push_back(Value v) {
  as_array().push_back(std::move(v));
}

// ---------------------------------------------------------------------------------------------
// Parser

namespace {

// Length of the valid UTF-8 sequence starting at s[i], or 0 when it is invalid (overlong forms,
// UTF-16 surrogates and code points above U+10FFFF are invalid).
size_t utf8_length(std::string_view s, size_t i) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = b(i);
  if (c < 0x80) return 1;
  size_t n;
  uint32_t cp;
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
    cp = c & 0x1F;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    cp = c & 0x0F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    cp = c & 0x07;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    if ((b(i + k) & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (b(i + k) & 0x3F);
  }
  if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10FFFF ||
      (cp >= 0xD800 && cp <= 0xDFFF))
    return 0;
  return n;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

class Parser {
 public:
  explicit Parser(std::string_view s) : s_(s) {}

  Value run() {
    if (s_.size() >= 3 && s_.substr(0, 3) == "\xEF\xBB\xBF")
      error(0, "byte-order mark at the start (not allowed in JSON)");
    for (size_t i = 0; i < s_.size();) {
      const size_t n = utf8_length(s_, i);
      if (n == 0) error(i, "invalid UTF-8 byte 0x", hex(static_cast<unsigned char>(s_[i])));
      i += n;
    }
    skip_ws();
    if (pos_ == s_.size()) error(pos_, "empty document (expected a value)");
    Value v = value(0);
    skip_ws();
    if (pos_ != s_.size()) error(pos_, "unexpected ", describe(pos_), " after the value");
    return v;
  }

 private:
  [[noreturn]] void error(size_t at, const std::string& what) const {
    size_t line = 1, col = 1;
    for (size_t i = 0; i < at && i < s_.size(); ++i) {
      if (s_[i] == '\n') {
        ++line;
        col = 1;
      } else if ((static_cast<unsigned char>(s_[i]) & 0xC0) != 0x80) {
        ++col;  // count code points, not continuation bytes
      }
    }
    fail("json", "line ", line, ", column ", col, ": ", what);
  }
  template <typename... P>
  [[noreturn]] void error(size_t at, const P&... parts) const {
    std::ostringstream os;
    detail::append(os, parts...);
    error(at, os.str());
  }

  static std::string hex(unsigned v) {
    const char* d = "0123456789ABCDEF";
    return std::string{d[(v >> 4) & 15], d[v & 15]};
  }
  std::string describe(size_t at) const {
    if (at >= s_.size()) return "end of input";
    const unsigned char c = static_cast<unsigned char>(s_[at]);
    if (c >= 0x20 && c < 0x7F) return std::string("character '") + static_cast<char>(c) + "'";
    return "byte 0x" + hex(c);
  }

  void skip_ws() {
    while (pos_ < s_.size()) {
      const char c = s_[pos_];
      if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
      ++pos_;
    }
  }

  void expect_literal(const char* lit) {
    const std::string_view l(lit);
    if (s_.substr(pos_, l.size()) != l) error(pos_, "invalid literal (expected ", lit, ")");
    pos_ += l.size();
  }

  Value value(int depth) {
    if (pos_ >= s_.size()) error(pos_, "unexpected end of input (expected a value)");
    const char c = s_[pos_];
    switch (c) {
      case '{':
        return object(depth + 1);
      case '[':
        return array(depth + 1);
      case '"':
        return Value(string());
      case 't':
        expect_literal("true");
        return Value(true);
      case 'f':
        expect_literal("false");
        return Value(false);
      case 'n':
        expect_literal("null");
        return Value();
      default:
        break;
    }
    if (c == '-' || isdigit(c)) return number();
    error(pos_, "unexpected ", describe(pos_), " (expected a value)");
  }

  Value object(int depth) {
    if (depth > kMaxDepth) error(pos_, "nesting deeper than ", kMaxDepth, " levels");
    ++pos_;  // '{'
    Value obj = Value::object();
    Value::Object& members = obj.as_object();
    std::unordered_set<std::string> seen;
    skip_ws();
    if (pos_ < s_.size() && s_[pos_] == '}') {
      ++pos_;
      return obj;
    }
    while (true) {
      skip_ws();
      if (pos_ >= s_.size() || s_[pos_] != '"')
        error(pos_, "expected a string key, got ", describe(pos_));
      const size_t key_pos = pos_;
      std::string key = string();
      if (!seen.insert(key).second) error(key_pos, "duplicate key ", quote(key));
      skip_ws();
      if (pos_ >= s_.size() || s_[pos_] != ':')
        error(pos_, "expected ':' after the key, got ", describe(pos_));
      ++pos_;
      skip_ws();
      members.emplace_back(std::move(key), value(depth));
      skip_ws();
      if (pos_ < s_.size() && s_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (pos_ < s_.size() && s_[pos_] == '}') {
        ++pos_;
        return obj;
      }
      error(pos_, "expected ',' or '}' in an object, got ", describe(pos_));
    }
  }

  Value array(int depth) {
    if (depth > kMaxDepth) error(pos_, "nesting deeper than ", kMaxDepth, " levels");
    ++pos_;  // '['
    Value arr = Value::array();
    skip_ws();
    if (pos_ < s_.size() && s_[pos_] == ']') {
      ++pos_;
      return arr;
    }
    while (true) {
      skip_ws();
      arr.as_array().push_back(value(depth));
      skip_ws();
      if (pos_ < s_.size() && s_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (pos_ < s_.size() && s_[pos_] == ']') {
        ++pos_;
        return arr;
      }
      error(pos_, "expected ',' or ']' in an array, got ", describe(pos_));
    }
  }

  uint32_t hex4() {
    if (pos_ + 4 > s_.size()) error(pos_, "truncated \\u escape");
    uint32_t v = 0;
    for (int k = 0; k < 4; ++k) {
      const char c = s_[pos_ + k];
      uint32_t d;
      if (c >= '0' && c <= '9')
        d = c - '0';
      else if (c >= 'a' && c <= 'f')
        d = c - 'a' + 10;
      else if (c >= 'A' && c <= 'F')
        d = c - 'A' + 10;
      else
        error(pos_ + k, "invalid hex digit in \\u escape: ", describe(pos_ + k));
      v = v * 16 + d;
    }
    pos_ += 4;
    return v;
  }

  std::string string() {
    const size_t start = pos_;
    ++pos_;  // opening quote
    std::string out;
    while (true) {
      if (pos_ >= s_.size()) error(start, "unterminated string");
      const unsigned char c = static_cast<unsigned char>(s_[pos_]);
      if (c == '"') {
        ++pos_;
        return out;
      }
      if (c < 0x20) error(pos_, "control character 0x", hex(c), " in a string (escape it)");
      if (c != '\\') {
        out += static_cast<char>(c);  // UTF-8 was validated up front
        ++pos_;
        continue;
      }
      const size_t esc = pos_;
      ++pos_;
      if (pos_ >= s_.size()) error(start, "unterminated string");
      const char e = s_[pos_++];
      switch (e) {
        case '"':
          out += '"';
          break;
        case '\\':
          out += '\\';
          break;
        case '/':
          out += '/';
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'n':
          out += '\n';
          break;
        case 'r':
          out += '\r';
          break;
        case 't':
          out += '\t';
          break;
        case 'u': {
          uint32_t cp = hex4();
          if (cp >= 0xDC00 && cp <= 0xDFFF) error(esc, "unpaired low surrogate in \\u escape");
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (s_.substr(pos_, 2) != "\\u") error(esc, "unpaired high surrogate in \\u escape");
            pos_ += 2;
            const uint32_t lo = hex4();
            if (lo < 0xDC00 || lo > 0xDFFF) error(esc, "unpaired high surrogate in \\u escape");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          }
          append_utf8(out, cp);
          break;
        }
        default:
          error(esc, "invalid escape sequence: backslash followed by ", describe(pos_ - 1));
      }
    }
  }

  Value number() {
    const size_t start = pos_;
    bool integral = true;
    if (s_[pos_] == '-') ++pos_;
    if (pos_ >= s_.size() || !isdigit(s_[pos_])) error(start, "invalid number (expected a digit)");
    if (s_[pos_] == '0') {
      ++pos_;
      if (pos_ < s_.size() && isdigit(s_[pos_])) error(start, "invalid number (leading zero)");
    } else {
      while (pos_ < s_.size() && isdigit(s_[pos_])) ++pos_;
    }
    if (pos_ < s_.size() && s_[pos_] == '.') {
      integral = false;
      ++pos_;
      if (pos_ >= s_.size() || !isdigit(s_[pos_]))
        error(start, "invalid number (expected a digit after '.')");
      while (pos_ < s_.size() && isdigit(s_[pos_])) ++pos_;
    }
    if (pos_ < s_.size() && (s_[pos_] == 'e' || s_[pos_] == 'E')) {
      integral = false;
      ++pos_;
      if (pos_ < s_.size() && (s_[pos_] == '+' || s_[pos_] == '-')) ++pos_;
      if (pos_ >= s_.size() || !isdigit(s_[pos_]))
        error(start, "invalid number (expected a digit in the exponent)");
      while (pos_ < s_.size() && isdigit(s_[pos_])) ++pos_;
    }
    const char* b = s_.data() + start;
    const char* e = s_.data() + pos_;
    if (integral) {
      int64_t i = 0;
      const auto r = std::from_chars(b, e, i);
      if (r.ec == std::errc() && r.ptr == e) return Value(i);
      // out of the int64 range: keep it as a (rounded) double
    }
    double d = 0.0;
    const auto r = std::from_chars(b, e, d);
    if (r.ec == std::errc::result_out_of_range) {
      // from_chars does not say which way it failed; strtod does (±HUGE_VAL or ~0). Overflow
      // is an error (JSON has no infinity); underflow to zero or a subnormal is harmless.
      const std::string text(b, e);
      d = std::strtod(text.c_str(), nullptr);
      if (std::isinf(d)) error(start, "number out of range: ", text);
    } else if (r.ec != std::errc() || r.ptr != e) {
      error(start, "invalid number: ", std::string(b, e));
    }
    return Value(d);
  }

  static bool isdigit(char c) { return c >= '0' && c <= '9'; }

  std::string_view s_;
  size_t pos_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Writer

void write(std::string& out, const Value& v, int indent, int level) {
  const auto newline = [&](int lvl) {
    if (indent < 0) return;
    out += '\n';
    out.append(static_cast<size_t>(indent * lvl), ' ');
  };
  switch (v.type()) {
    case Value::Type::null:
      out += "null";
      return;
    case Value::Type::boolean:
      out += v.as_bool() ? "true" : "false";
      return;
    case Value::Type::number: {
      char buf[32];
      std::to_chars_result r;
      if (v.is_integer()) {
        r = std::to_chars(buf, buf + sizeof(buf), v.as_int());
      } else {
        const double d = v.as_double();
        if (!std::isfinite(d)) fail("json", "cannot write ", d, " (JSON has no NaN or infinity)");
        // "-0" would read back as the integer 0: keep the sign with a fraction (fuzz finding).
        if (d == 0 && std::signbit(d)) {
          out += "-0.0";
          return;
        }
        r = std::to_chars(buf, buf + sizeof(buf), d);
      }
      out.append(buf, r.ptr);
      return;
    }
    case Value::Type::string:
      out += quote(v.as_string());
      return;
    case Value::Type::array: {
      const auto& a = v.as_array();
      out += '[';
      for (size_t i = 0; i < a.size(); ++i) {
        if (i) out += ',';
        newline(level + 1);
        write(out, a[i], indent, level + 1);
      }
      if (!a.empty()) newline(level);
      out += ']';
      return;
    }
    case Value::Type::object: {
      const auto& o = v.as_object();
      out += '{';
      for (size_t i = 0; i < o.size(); ++i) {
        if (i) out += ',';
        newline(level + 1);
        out += quote(o[i].first);
        out += indent < 0 ? ":" : ": ";
        write(out, o[i].second, indent, level + 1);
      }
      if (!o.empty()) newline(level);
      out += '}';
      return;
    }
  }
}

}  // namespace

Value parse(std::string_view text) {
  return Parser(text).run();
}

std::string dump(const Value& v, int indent) {
  std::string out;
  write(out, v, indent, 0);
  return out;
}

std::string quote(std::string_view s) {
  std::string out = "\"";
  for (const char ch : s) {
    const unsigned char c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          const char* d = "0123456789abcdef";
          out += "\\u00";
          out += d[c >> 4];
          out += d[c & 15];
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
  return out;
}

}  // namespace idem::json
