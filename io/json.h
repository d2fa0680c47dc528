// A small, strict JSON (RFC 8259) value, parser and writer: safetensors headers and config files.
//
// Strict means: UTF-8 input only (no BOM), no comments, no trailing commas, no NaN/Infinity,
// no leading zeros or '+' in numbers, no control characters or lone surrogates in strings, no
// duplicate keys in an object, nothing but whitespace after the value, and at most
// kMaxDepth nested arrays/objects (so hostile input cannot overflow the stack). Every violation
// throws idem::Error "[json] line L, column C: <problem>".
//
// Objects keep their members in document order. Numbers keep their double value and, when
// the literal is an integer that fits in int64, that exact integer too (file offsets and
// shapes need all 64 bits).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace idem::json {

constexpr int kMaxDepth = 256;

class Value {
 public:
  enum class Type : uint8_t { null, boolean, number, string, array, object };
  using Array = std::vector<Value>;
  using Object = std::vector<std::pair<std::string, Value>>;

  Value() = default;  // null
  Value(std::nullptr_t) {}
  Value(bool b) : type_(Type::boolean), bool_(b) {}
  Value(double d) : type_(Type::number), num_(d) {}
  Value(int64_t i) : type_(Type::number), num_(static_cast<double>(i)), is_int_(true), int_(i) {}
  Value(int i) : Value(static_cast<int64_t>(i)) {}
  Value(const char* s) : type_(Type::string), str_(s) {}
  Value(std::string s) : type_(Type::string), str_(std::move(s)) {}
  static Value array(Array a = {});
  static Value object(Object o = {});

  Type type() const { return type_; }
  const char* type_name() const;
  bool is_null() const { return type_ == Type::null; }
  bool is_bool() const { return type_ == Type::boolean; }
  bool is_number() const { return type_ == Type::number; }
  // A number that is an exact int64 (an integer literal in range, or built from an integer).
  bool is_integer() const { return type_ == Type::number && is_int_; }
  bool is_string() const { return type_ == Type::string; }
  bool is_array() const { return type_ == Type::array; }
  bool is_object() const { return type_ == Type::object; }

  // Typed access; each throws idem::Error naming the actual type on a mismatch.
  bool as_bool() const;
  double as_double() const;
  int64_t as_int() const;
  const std::string& as_string() const;
  const Array& as_array() const;
  const Object& as_object() const;
  Array& as_array();
  Object& as_object();

  // Objects: the member named `key`, or nullptr (also for non-objects).
  const Value* find(std::string_view key) const;
  // Objects: the member named `key`; throws when absent.
  const Value& at(std::string_view key) const;
  // Objects: replaces the member `key` or appends it.
  void set(const std::string& key, Value v);
  // Arrays: appends.
  void push_back(Value v);

 private:
  Type type_ = Type::null;
  bool bool_ = false;
  double num_ = 0.0;
  bool is_int_ = false;
  int64_t int_ = 0;
  std::string str_;
  Array arr_;
  Object obj_;
};

// Parses one JSON document.
Value parse(std::string_view text);
// Serializes: compact when indent < 0, else pretty-printed with `indent` spaces per level.
// Doubles are written in the shortest form that reads back to the same value; NaN and
// infinities throw (JSON cannot hold them).
std::string dump(const Value& v, int indent = -1);
// `s` as a JSON string literal, quotes included.
std::string quote(std::string_view s);

}  // namespace idem::json
