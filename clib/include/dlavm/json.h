// A small JSON reader (RFC 8259), enough for artifact manifests.
//
// Numbers without fraction or exponent are int64 (an integer outside int64 is
// an error); others are double. Objects keep their key order; a duplicate
// key is an error (the Python runtime refuses it too). Strings are UTF-8
// with every escape decoded (\uXXXX incl. surrogate pairs). Errors are
// json::ParseError naming the byte offset.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace dlavm {
namespace json {

class ParseError : public std::runtime_error {
 public:
  ParseError(const std::string& what, size_t offset);
  size_t offset() const { return offset_; }

 private:
  size_t offset_;
};

// A wrong-type or missing-key access on a Value.
class TypeError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class Type { Null, Bool, Int, Double, String, Array, Object };

// Name of a type as written in error messages ("null", "integer", ...).
const char* type_name(Type t);

class Value {
 public:
  using Array = std::vector<Value>;
  using Object = std::vector<std::pair<std::string, Value>>;

  Value() = default;  // null
  static Value boolean(bool b);
  static Value integer(int64_t i);
  static Value number(double d);
  static Value string(std::string s);
  static Value array(Array items);
  static Value object(Object members);

  Type type() const { return type_; }
  bool is_null() const { return type_ == Type::Null; }
  bool is_bool() const { return type_ == Type::Bool; }
  bool is_int() const { return type_ == Type::Int; }
  bool is_number() const { return type_ == Type::Int || type_ == Type::Double; }
  bool is_string() const { return type_ == Type::String; }
  bool is_array() const { return type_ == Type::Array; }
  bool is_object() const { return type_ == Type::Object; }

  // Typed accessors throw TypeError on a type mismatch.
  bool as_bool() const;
  int64_t as_int() const;
  double as_double() const;  // an integer converts
  const std::string& as_string() const;
  const Array& as_array() const;
  const Object& as_object() const;

  // Object member by key: find returns nullptr when absent, at throws TypeError.
  const Value* find(const std::string& key) const;
  const Value& at(const std::string& key) const;
  const Value& operator[](const std::string& key) const { return at(key); }
  // Array element (TypeError when out of range).
  const Value& at(size_t i) const;
  const Value& operator[](size_t i) const { return at(i); }
  // Elements of an array or members of an object; 0 for scalars.
  size_t size() const;

  // Compact JSON text (no spaces; strings UTF-8 with the mandatory escapes;
  // doubles in shortest round-trip form). parse(dump()) gives this value back.
  std::string dump() const;

 private:
  Type type_ = Type::Null;
  bool b_ = false;
  int64_t i_ = 0;
  double d_ = 0;
  std::string s_;
  std::shared_ptr<const Array> arr_;
  std::shared_ptr<const Object> obj_;
};

// The body of a JSON string literal for ``s`` (no surrounding quotes): quotes, backslashes and
// control characters escaped as Python's json module does (\n, \b, \u001f, ...); other bytes as they
// are. The artifact reader's messages use it too, so they stay one line and match Python's.
std::string escape(const std::string& s);

// Parse a whole document (one value, surrounding whitespace allowed).
// Nesting deeper than 256 levels is refused.
Value parse(const std::string& text);

}  // namespace json
}  // namespace dlavm
