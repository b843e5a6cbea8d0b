#include "dlavm/json.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <unordered_set>

namespace dlavm {
namespace json {

ParseError::ParseError(const std::string& what, size_t offset)
    : std::runtime_error("JSON error at byte " + std::to_string(offset) + ": " + what), offset_(offset) {}

const char* type_name(Type t) {
  switch (t) {
    case Type::Null: return "null";
    case Type::Bool: return "boolean";
    case Type::Int: return "integer";
    case Type::Double: return "number";
    case Type::String: return "string";
    case Type::Array: return "array";
    case Type::Object: return "object";
  }
  return "?";
}

Value Value::boolean(bool b) {
  Value v;
  v.type_ = Type::Bool;
  v.b_ = b;
  return v;
}

Value Value::integer(int64_t i) {
  Value v;
  v.type_ = Type::Int;
  v.i_ = i;
  return v;
}

Value Value::number(double d) {
  Value v;
  v.type_ = Type::Double;
  v.d_ = d;
  return v;
}

Value Value::string(std::string s) {
  Value v;
  v.type_ = Type::String;
  v.s_ = std::move(s);
  return v;
}

Value Value::array(Array items) {
  Value v;
  v.type_ = Type::Array;
  v.arr_ = std::make_shared<const Array>(std::move(items));
  return v;
}

Value Value::object(Object members) {
  Value v;
  v.type_ = Type::Object;
  v.obj_ = std::make_shared<const Object>(std::move(members));
  return v;
}

namespace {

[[noreturn]] void wrong_type(const char* wanted, Type got) {
  throw TypeError(std::string("JSON value is ") + type_name(got) + ", expected " + wanted);
}

}  // namespace

bool Value::as_bool() const {
  if (type_ != Type::Bool) wrong_type("boolean", type_);
  return b_;
}

int64_t Value::as_int() const {
  if (type_ != Type::Int) wrong_type("integer", type_);
  return i_;
}

double Value::as_double() const {
  if (type_ == Type::Int) return static_cast<double>(i_);
  if (type_ != Type::Double) wrong_type("number", type_);
  return d_;
}

const std::string& Value::as_string() const {
  if (type_ != Type::String) wrong_type("string", type_);
  return s_;
}

const Value::Array& Value::as_array() const {
  if (type_ != Type::Array) wrong_type("array", type_);
  return *arr_;
}

const Value::Object& Value::as_object() const {
  if (type_ != Type::Object) wrong_type("object", type_);
  return *obj_;
}

const Value* Value::find(const std::string& key) const {
  for (const auto& kv : as_object()) {
    if (kv.first == key) return &kv.second;
  }
  return nullptr;
}

const Value& Value::at(const std::string& key) const {
  const Value* v = find(key);
  if (!v) throw TypeError("JSON object has no key \"" + key + "\"");
  return *v;
}

const Value& Value::at(size_t i) const {
  const Array& a = as_array();
  if (i >= a.size()) {
    throw TypeError("JSON array index " + std::to_string(i) + " out of range (size " + std::to_string(a.size()) + ")");
  }
  return a[i];
}

size_t Value::size() const {
  if (type_ == Type::Array) return arr_->size();
  if (type_ == Type::Object) return obj_->size();
  return 0;
}

namespace {

// A byte of the input for a message: 'c' when printable ASCII, else its value (0xA2), so the message
// stays one line of valid UTF-8 whatever the input holds.
std::string shown_byte(char c) {
  const unsigned char u = static_cast<unsigned char>(c);
  if (u >= 0x20 && u < 0x7F) return std::string("'") + c + "'";
  static const char* hex = "0123456789ABCDEF";
  return std::string("byte 0x") + hex[u >> 4] + hex[u & 15];
}

void dump_string(const std::string& s, std::string& out) {
  out += '"';
  out += escape(s);
  out += '"';
}

void dump_value(const Value& v, std::string& out) {
  switch (v.type()) {
    case Type::Null: out += "null"; break;
    case Type::Bool: out += v.as_bool() ? "true" : "false"; break;
    case Type::Int: out += std::to_string(v.as_int()); break;
    case Type::Double: {
      const double d = v.as_double();
      if (!std::isfinite(d)) {
        out += "null";  // JSON has no inf/nan; the parser never produces them
        break;
      }
      char buf[64];
      auto res = std::to_chars(buf, buf + sizeof buf, d);
      std::string text(buf, res.ptr);
      // Keep it a double on re-parse: add ".0" to an integral rendering.
      if (text.find_first_of(".eE") == std::string::npos) text += ".0";
      out += text;
      break;
    }
    case Type::String: dump_string(v.as_string(), out); break;
    case Type::Array: {
      out += '[';
      bool first = true;
      for (const Value& e : v.as_array()) {
        if (!first) out += ',';
        first = false;
        dump_value(e, out);
      }
      out += ']';
      break;
    }
    case Type::Object: {
      out += '{';
      bool first = true;
      for (const auto& kv : v.as_object()) {
        if (!first) out += ',';
        first = false;
        dump_string(kv.first, out);
        out += ':';
        dump_value(kv.second, out);
      }
      out += '}';
      break;
    }
  }
}

constexpr int kMaxDepth = 256;

class Parser {
 public:
  explicit Parser(const std::string& text) : t_(text) {}

  Value document() {
    skip_ws();
    Value v = value(0);
    skip_ws();
    if (pos_ != t_.size()) fail("unexpected data after the JSON value");
    return v;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const { throw ParseError(what, pos_); }
  [[noreturn]] void fail_at(const std::string& what, size_t at) const { throw ParseError(what, at); }

  bool eof() const { return pos_ >= t_.size(); }
  char peek() const { return eof() ? '\0' : t_[pos_]; }

  void skip_ws() {
    while (!eof() && (t_[pos_] == ' ' || t_[pos_] == '\t' || t_[pos_] == '\n' || t_[pos_] == '\r')) ++pos_;
  }

  void expect(char c) {
    if (peek() != c || eof()) fail(std::string("expected '") + c + "'");
    ++pos_;
  }

  void literal(const char* word) {
    const size_t n = std::strlen(word);
    if (t_.compare(pos_, n, word) != 0) fail(std::string("invalid literal (expected '") + word + "')");
    pos_ += n;
  }

  Value value(int depth) {
    if (depth > kMaxDepth) fail("nesting deeper than " + std::to_string(kMaxDepth) + " levels");
    if (eof()) fail("unexpected end of input, expected a value");
    switch (t_[pos_]) {
      case '{': return object(depth);
      case '[': return array(depth);
      case '"': return Value::string(string());
      case 't': literal("true"); return Value::boolean(true);
      case 'f': literal("false"); return Value::boolean(false);
      case 'n': literal("null"); return Value();
      default:
        if (t_[pos_] == '-' || (t_[pos_] >= '0' && t_[pos_] <= '9')) return number();
        fail("unexpected character " + shown_byte(t_[pos_]));
    }
  }

  Value object(int depth) {
    const size_t start = pos_;
    ++pos_;  // '{'
    Value::Object members;
    skip_ws();
    if (peek() == '}') {
      ++pos_;
      return Value::object(std::move(members));
    }
    // Duplicate keys: a linear scan while the object is small, a hash set of its keys beyond that
    // (linear time overall: a 150k-entry vocabulary is one object).
    constexpr size_t kScanLimit = 8;
    std::unordered_set<std::string> seen;
    for (;;) {
      skip_ws();
      if (peek() != '"' || eof()) fail("expected a string key");
      const size_t key_at = pos_;
      std::string key = string();
      bool duplicate = false;
      if (members.size() < kScanLimit) {
        for (const auto& kv : members) duplicate = duplicate || kv.first == key;
      } else {
        if (seen.empty())
          for (const auto& kv : members) seen.insert(kv.first);
        duplicate = !seen.insert(key).second;
      }
      if (duplicate) fail_at("duplicate key \"" + key + "\" in the object at byte " + std::to_string(start), key_at);
      skip_ws();
      expect(':');
      skip_ws();
      Value v = value(depth + 1);
      members.emplace_back(std::move(key), std::move(v));
      skip_ws();
      if (peek() == ',' && !eof()) {
        ++pos_;
        continue;
      }
      if (peek() == '}' && !eof()) {
        ++pos_;
        return Value::object(std::move(members));
      }
      fail("expected ',' or '}' in an object");
    }
  }

  Value array(int depth) {
    ++pos_;  // '['
    Value::Array items;
    skip_ws();
    if (peek() == ']' && !eof()) {
      ++pos_;
      return Value::array(std::move(items));
    }
    for (;;) {
      skip_ws();
      items.push_back(value(depth + 1));
      skip_ws();
      if (peek() == ',' && !eof()) {
        ++pos_;
        continue;
      }
      if (peek() == ']' && !eof()) {
        ++pos_;
        return Value::array(std::move(items));
      }
      fail("expected ',' or ']' in an array");
    }
  }

  unsigned hex4() {
    if (pos_ + 4 > t_.size()) fail("truncated \\u escape");
    unsigned v = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = t_[pos_ + i];
      v <<= 4;
      if (c >= '0' && c <= '9') v |= c - '0';
      else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
      else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
      else fail_at("invalid hex digit in \\u escape", pos_ + i);
    }
    pos_ += 4;
    return v;
  }

  static void put_utf8(unsigned cp, std::string& out) {
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

  std::string string() {
    const size_t start = pos_;
    ++pos_;  // opening quote
    std::string out;
    for (;;) {
      if (eof()) fail_at("unterminated string", start);
      const unsigned char c = static_cast<unsigned char>(t_[pos_]);
      if (c == '"') {
        ++pos_;
        return out;
      }
      if (c < 0x20) fail("control character in a string (escape it)");
      if (c != '\\') {
        out += static_cast<char>(c);
        ++pos_;
        continue;
      }
      ++pos_;
      if (eof()) fail_at("unterminated string", start);
      const char e = t_[pos_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          unsigned cp = hex4();
          if (cp >= 0xD800 && cp < 0xDC00 && t_.compare(pos_, 2, "\\u") == 0) {
            const size_t save = pos_;
            pos_ += 2;
            const unsigned lo = hex4();
            if (lo >= 0xDC00 && lo < 0xE000) {
              cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else {
              pos_ = save;  // a lone high surrogate, then an unrelated escape
            }
          }
          put_utf8(cp, out);  // lone surrogates are kept as code points, as Python does
          break;
        }
        default:
          pos_ -= 2;
          fail("invalid escape '\\' followed by " + shown_byte(e));
      }
    }
  }

  Value number() {
    const size_t start = pos_;
    bool integral = true;
    if (peek() == '-') ++pos_;
    if (peek() == '0') {
      ++pos_;
    } else if (peek() >= '1' && peek() <= '9') {
      while (peek() >= '0' && peek() <= '9') ++pos_;
    } else {
      fail("invalid number");
    }
    if (peek() == '.') {
      integral = false;
      ++pos_;
      if (!(peek() >= '0' && peek() <= '9')) fail("expected a digit after '.'");
      while (peek() >= '0' && peek() <= '9') ++pos_;
    }
    if (peek() == 'e' || peek() == 'E') {
      integral = false;
      ++pos_;
      if (peek() == '+' || peek() == '-') ++pos_;
      if (!(peek() >= '0' && peek() <= '9')) fail("expected a digit in the exponent");
      while (peek() >= '0' && peek() <= '9') ++pos_;
    }
    const char* first = t_.data() + start;
    const char* last = t_.data() + pos_;
    if (integral) {
      int64_t i = 0;
      auto res = std::from_chars(first, last, i);
      if (res.ec != std::errc() || res.ptr != last) fail_at("integer out of the int64 range", start);
      return Value::integer(i);
    }
    double d = 0;
    auto res = std::from_chars(first, last, d);
    if (res.ec != std::errc() || res.ptr != last) fail_at("number out of the double range", start);
    return Value::number(d);
  }

  const std::string& t_;
  size_t pos_ = 0;
};

}  // namespace

std::string escape(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20) {
          static const char* hex = "0123456789abcdef";
          out += "\\u00";
          out += hex[c >> 4];
          out += hex[c & 15];
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out;
}

std::string Value::dump() const {
  std::string out;
  dump_value(*this, out);
  return out;
}

Value parse(const std::string& text) { return Parser(text).document(); }

}  // namespace json
}  // namespace dlavm
