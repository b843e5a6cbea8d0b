// DevProc's host ops (dlavm/devproc.h): the numpy kernels of devproc/lang/ops.py in C++, the same bits.
// Compiled with -ffp-contract=off (clib/Makefile FP_EXACT_SRCS): each float operation rounds once, as numpy's.
#include "dlavm/devproc.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>

#include <sys/stat.h>

#include <iostream>

#include "artifact_files.h"
#include "dlavm/artifact.h"
#include "dlavm/fp16.h"
#include "dlavm/json.h"
#include "dlavm/llm.h"
#include "dlavm/sha256.h"

namespace dlavm {
namespace devproc {
namespace {

[[noreturn]] void fail(const std::string& op, const std::string& rule) { throw DevprocError(op + ": " + rule); }

float round_fp16(float v) { return fp16_to_float(float_to_fp16(v)); }

// v as Python's repr(float) writes it (shortest round-trip digits; fixed notation for exponents -4..15,
// else d.ddde+XX), so a refusal reads as the numpy kernel's.
std::string py_repr(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  if (v == 0) return std::signbit(v) ? "-0.0" : "0.0";
  char buf[64] = {0};
  for (int prec = 0; prec <= 16; ++prec) {  // the shortest that reads back as v
    std::snprintf(buf, sizeof buf, "%.*e", prec, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  std::string t = buf, sign;
  if (t[0] == '-') sign = "-", t = t.substr(1);
  const size_t epos = t.find('e');
  const int e = std::atoi(t.c_str() + epos + 1);
  std::string digits;
  for (size_t k = 0; k < epos; ++k)
    if (t[k] != '.') digits += t[k];
  while (digits.size() > 1 && digits.back() == '0') digits.pop_back();
  if (e >= -4 && e < 16) {
    if (e < 0) return sign + "0." + std::string(static_cast<size_t>(-e - 1), '0') + digits;
    const size_t ip = static_cast<size_t>(e) + 1;
    if (digits.size() <= ip) return sign + digits + std::string(ip - digits.size(), '0') + ".0";
    return sign + digits.substr(0, ip) + "." + digits.substr(ip);
  }
  std::string ex = std::to_string(e < 0 ? -e : e);
  if (ex.size() < 2) ex = "0" + ex;
  const std::string mant = digits.substr(0, 1) + (digits.size() > 1 ? "." + digits.substr(1) : "");
  return sign + mant + "e" + (e < 0 ? "-" : "+") + ex;
}

// dim counted from the end when negative; DevprocError unless -rank <= dim < rank.
size_t axis(const std::string& op, const char* what, int64_t dim, size_t rank) {
  const int64_t r = static_cast<int64_t>(rank);
  if (dim < -r || dim >= r) fail(op, std::string(what) + "=" + std::to_string(dim) + " is outside the " +
                                         std::to_string(rank) + " axes");
  return static_cast<size_t>(dim < 0 ? dim + r : dim);
}

// Outer / axis / inner sizes of `shape` around axis `ax`.
void split_at(const std::vector<int64_t>& shape, size_t ax, int64_t& outer, int64_t& n, int64_t& inner) {
  outer = 1;
  inner = 1;
  for (size_t k = 0; k < ax; ++k) outer *= shape[k];
  n = shape[ax];
  for (size_t k = ax + 1; k < shape.size(); ++k) inner *= shape[k];
}

void need_tensor(const Tensor& t, const std::string& op, const char* what) { check_tensor(t, op + ": " + what); }

bool is_int_kind(DType t) { return !is_float(t); }

// Tensor element k moved from `src` to `dst` (same dtype).
void copy_elem(const Tensor& src, size_t from, Tensor& dst, size_t to_k) {
  if (is_float(src.dtype))
    dst.f[to_k] = src.f[from];
  else
    dst.i[to_k] = src.i[from];
}

}  // namespace

// ---------------------------------------------------------------------------- dtypes and tensors

const char* dtype_name(DType t) {
  switch (t) {
    case DType::kBool: return "bool";
    case DType::kUInt8: return "uint8";
    case DType::kInt32: return "int32";
    case DType::kInt64: return "int64";
    case DType::kFloat16: return "float16";
    case DType::kFloat32: return "float32";
  }
  return "?";
}

DType dtype_from_name(const std::string& name) {
  for (DType t : {DType::kBool, DType::kUInt8, DType::kInt32, DType::kInt64, DType::kFloat16, DType::kFloat32})
    if (name == dtype_name(t)) return t;
  throw DevprocError("dtype '" + name + "' is not one of bool, uint8, int32, int64, float16, float32");
}

bool is_float(DType t) { return t == DType::kFloat16 || t == DType::kFloat32; }

size_t dtype_size(DType t) {
  switch (t) {
    case DType::kBool:
    case DType::kUInt8: return 1;
    case DType::kFloat16: return 2;
    case DType::kInt32:
    case DType::kFloat32: return 4;
    case DType::kInt64: return 8;
  }
  return 1;
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t k = 0; k < shape.size(); ++k) s += (k ? ", " : "") + std::to_string(shape[k]);
  return s + "]";
}

static int64_t numel_of(const std::vector<int64_t>& shape, const std::string& what) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) throw DevprocError(what + ": shape " + shape_str(shape) + " has a negative size");
    if (d != 0 && n > kMaxElements / d)
      throw DevprocError(what + ": shape " + shape_str(shape) + " has more than 2**31 elements");
    n *= d;
  }
  if (n > kMaxElements) throw DevprocError(what + ": shape " + shape_str(shape) + " has more than 2**31 elements");
  return n;
}

int64_t Tensor::numel() const { return numel_of(shape, "tensor"); }

Tensor Tensor::zeros(DType dtype, std::vector<int64_t> shape) {
  Tensor t;
  t.dtype = dtype;
  t.shape = std::move(shape);
  const size_t n = static_cast<size_t>(t.numel());
  if (is_float(dtype))
    t.f.assign(n, 0.0f);
  else
    t.i.assign(n, 0);
  return t;
}

void check_tensor(const Tensor& t, const std::string& what) {
  const size_t n = static_cast<size_t>(numel_of(t.shape, what));
  if (is_float(t.dtype)) {
    if (t.f.size() != n || !t.i.empty())
      throw DevprocError(what + ": a " + dtype_name(t.dtype) + " tensor of shape " + shape_str(t.shape) +
                         " holds " + std::to_string(t.f.size()) + " float values, not " + std::to_string(n));
    if (t.dtype == DType::kFloat16)
      for (float v : t.f)
        if (!std::isnan(v) && round_fp16(v) != v)
          throw DevprocError(what + ": value " + py_repr(v) + " is not a float16");
    return;
  }
  if (t.i.size() != n || !t.f.empty())
    throw DevprocError(what + ": a " + std::string(dtype_name(t.dtype)) + " tensor of shape " + shape_str(t.shape) +
                       " holds " + std::to_string(t.i.size()) + " integer values, not " + std::to_string(n));
  int64_t lo = std::numeric_limits<int64_t>::min(), hi = std::numeric_limits<int64_t>::max();
  if (t.dtype == DType::kBool) lo = 0, hi = 1;
  if (t.dtype == DType::kUInt8) lo = 0, hi = 255;
  if (t.dtype == DType::kInt32) lo = std::numeric_limits<int32_t>::min(), hi = std::numeric_limits<int32_t>::max();
  for (int64_t v : t.i)
    if (v < lo || v > hi)
      throw DevprocError(what + ": value " + std::to_string(v) + " does not fit dtype " + dtype_name(t.dtype));
}

host::Tensor to_host(const Tensor& t) {
  check_tensor(t, "tensor");
  host::Tensor h;
  h.shape = t.shape;
  h.is_int = !is_float(t.dtype);
  h.f = t.f;
  h.i = t.i;
  return h;
}

Tensor from_host(const host::Tensor& h, DType dtype) {
  Tensor src;
  src.shape = h.shape;
  if (h.is_int) {
    src.dtype = DType::kInt64;
    src.i = h.i;
  } else {
    src.dtype = DType::kFloat32;
    src.f = h.f;
  }
  check_tensor(src, "a model's output");
  return to(src, dtype);
}

// ---------------------------------------------------------------------------- .npy

namespace {

// The header dict of a .npy file: {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), } in any key order.
class NpyHeader {
 public:
  NpyHeader(const std::string& text, const std::string& name) : s_(text), name_(name) {}

  void parse(std::string& descr, bool& fortran, std::vector<int64_t>& shape) {
    bool have_descr = false, have_fortran = false, have_shape = false;
    ws();
    expect('{');
    for (;;) {
      ws();
      if (peek() == '}') break;
      const std::string key = str();
      ws();
      expect(':');
      ws();
      if (key == "descr" && !have_descr) {
        descr = str();
        have_descr = true;
      } else if (key == "fortran_order" && !have_fortran) {
        fortran = boolean();
        have_fortran = true;
      } else if (key == "shape" && !have_shape) {
        shape = tuple();
        have_shape = true;
      } else {
        bad("key '" + key + "' is unknown or repeated (a .npy header holds descr, fortran_order and shape)");
      }
      ws();
      if (peek() == ',') {
        ++p_;
        continue;
      }
      ws();
      if (peek() != '}') bad("expected ',' or '}' at offset " + std::to_string(p_));
    }
    ++p_;
    ws();
    if (p_ != s_.size()) bad("text after the header's dict");
    if (!have_descr || !have_fortran || !have_shape) bad("the header must give descr, fortran_order and shape");
  }

 private:
  [[noreturn]] void bad(const std::string& why) const {
    throw DevprocError(name_ + ": not a .npy file DevProc reads: " + why);
  }
  char peek() const { return p_ < s_.size() ? s_[p_] : '\0'; }
  void ws() {
    while (p_ < s_.size() && (s_[p_] == ' ' || s_[p_] == '\n' || s_[p_] == '\t' || s_[p_] == '\r')) ++p_;
  }
  void expect(char c) {
    if (peek() != c) bad(std::string("expected '") + c + "' at offset " + std::to_string(p_));
    ++p_;
  }
  std::string str() {
    const char q = peek();
    if (q != '\'' && q != '"') bad("expected a quoted string at offset " + std::to_string(p_));
    ++p_;
    std::string out;
    while (p_ < s_.size() && s_[p_] != q) {
      if (s_[p_] == '\\' || s_[p_] < 0x20 || s_[p_] > 0x7e || out.size() > 64)
        bad("a header string must be short printable ASCII");
      out += s_[p_++];
    }
    if (p_ >= s_.size()) bad("an unterminated string in the header");
    ++p_;
    return out;
  }
  bool boolean() {
    if (s_.compare(p_, 4, "True") == 0) {
      p_ += 4;
      return true;
    }
    if (s_.compare(p_, 5, "False") == 0) {
      p_ += 5;
      return false;
    }
    bad("fortran_order must be True or False");
  }
  // A Python tuple literal of non-negative decimal integers: (), (N,), (N, M), (N, M,) ...
  std::vector<int64_t> tuple() {
    std::vector<int64_t> out;
    expect('(');
    bool comma = false;  // a comma after the last item
    for (;;) {
      ws();
      if (peek() == ')') break;
      if (!(peek() >= '0' && peek() <= '9')) bad("shape must be a tuple of non-negative integers");
      if (peek() == '0' && p_ + 1 < s_.size() && s_[p_ + 1] >= '0' && s_[p_ + 1] <= '9')
        bad("a size in shape has a leading zero");
      int64_t v = 0;
      while (peek() >= '0' && peek() <= '9') {
        if (v > (std::numeric_limits<int64_t>::max() - 9) / 10) bad("a size in shape is too large");
        v = v * 10 + (s_[p_++] - '0');
      }
      out.push_back(v);
      if (out.size() > kMaxRank) bad("shape has more than " + std::to_string(kMaxRank) + " axes");
      ws();
      comma = peek() == ',';
      if (comma) {
        ++p_;
        continue;
      }
      if (peek() != ')') bad("shape must be a tuple of non-negative integers");
    }
    if (out.size() == 1 && !comma) bad("shape (N) is not a tuple: a tuple of one size is written (N,)");
    ++p_;
    return out;
  }

  const std::string& s_;
  std::string name_;
  size_t p_ = 0;
};

template <typename T>
T load_le(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof v);  // x86-64 and aarch64 are little-endian, as the files are
  return v;
}

}  // namespace

Tensor tensor_from_bytes(const std::vector<uint8_t>& bytes, DType dtype, std::vector<int64_t> shape,
                         const std::string& name) {
  Tensor t;
  t.dtype = dtype;
  t.shape = std::move(shape);
  const size_t n = static_cast<size_t>(numel_of(t.shape, name));
  const size_t es = dtype_size(dtype);
  if (bytes.size() / es != n || bytes.size() % es != 0)
    throw DevprocError(name + ": " + std::to_string(bytes.size()) + " bytes of data, but shape " +
                       shape_str(t.shape) + " of " + dtype_name(dtype) + " needs " + std::to_string(n * es));
  const uint8_t* p = bytes.data();
  switch (dtype) {
    case DType::kBool:
      t.i.resize(n);
      for (size_t k = 0; k < n; ++k) {
        if (p[k] > 1) throw DevprocError(name + ": bool element " + std::to_string(k) + " is byte " +
                                         std::to_string(p[k]) + ", not 0 or 1");
        t.i[k] = p[k];
      }
      break;
    case DType::kUInt8:
      t.i.assign(p, p + n);
      break;
    case DType::kInt32:
      t.i.resize(n);
      for (size_t k = 0; k < n; ++k) t.i[k] = load_le<int32_t>(p + 4 * k);
      break;
    case DType::kInt64:
      t.i.resize(n);
      for (size_t k = 0; k < n; ++k) t.i[k] = load_le<int64_t>(p + 8 * k);
      break;
    case DType::kFloat16:
      t.f.resize(n);
      for (size_t k = 0; k < n; ++k) t.f[k] = fp16_to_float(load_le<uint16_t>(p + 2 * k));
      break;
    case DType::kFloat32:
      t.f.resize(n);
      for (size_t k = 0; k < n; ++k) t.f[k] = load_le<float>(p + 4 * k);
      break;
  }
  return t;
}

Tensor parse_npy(const std::vector<uint8_t>& b, const std::string& name) {
  static const uint8_t kMagic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
  if (b.size() < 10 || std::memcmp(b.data(), kMagic, 6) != 0)
    throw DevprocError(name + ": not a .npy file (no \\x93NUMPY magic)");
  const uint8_t major = b[6];
  if (b[7] != 0) throw DevprocError(name + ": .npy format version " + std::to_string(major) + "." +
                                    std::to_string(b[7]) + " is not 1.0, 2.0 or 3.0");
  size_t hlen, start;
  if (major == 1) {
    hlen = load_le<uint16_t>(b.data() + 8);
    start = 10;
  } else if (major == 2 || major == 3) {
    if (b.size() < 12) throw DevprocError(name + ": a .npy file cut short in its header");
    hlen = load_le<uint32_t>(b.data() + 8);
    start = 12;
  } else {
    throw DevprocError(name + ": .npy format version " + std::to_string(major) + ".0 is not 1.0, 2.0 or 3.0");
  }
  if (hlen > b.size() - start) throw DevprocError(name + ": a .npy file cut short in its header");
  const std::string header(reinterpret_cast<const char*>(b.data() + start), hlen);
  std::string descr;
  bool fortran = false;
  std::vector<int64_t> shape;
  NpyHeader(header, name).parse(descr, fortran, shape);
  if (fortran) throw DevprocError(name + ": fortran_order True: DevProc reads C order only");
  DType dt;
  if (descr == "|b1" || descr == "<b1") dt = DType::kBool;
  else if (descr == "|u1" || descr == "<u1") dt = DType::kUInt8;
  else if (descr == "<i4") dt = DType::kInt32;
  else if (descr == "<i8") dt = DType::kInt64;
  else if (descr == "<f2") dt = DType::kFloat16;
  else if (descr == "<f4") dt = DType::kFloat32;
  else
    throw DevprocError(name + ": dtype '" + descr + "' is not one DevProc holds (|b1, |u1, <i4, <i8, <f2, <f4)");
  const std::vector<uint8_t> data(b.begin() + static_cast<std::ptrdiff_t>(start + hlen), b.end());
  return tensor_from_bytes(data, dt, shape, name);
}

namespace {

// A whole regular file, at most `limit` bytes (checked before reading).
std::vector<uint8_t> read_whole(const std::string& path, uint64_t limit, const std::string& what) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw DevprocError(what + " " + path + ": cannot open it (" + std::strerror(errno) + ")");
  f.seekg(0, std::ios::end);
  const std::streamoff size = f.tellg();
  if (size < 0) throw DevprocError(what + " " + path + ": not a regular file");
  if (static_cast<uint64_t>(size) > limit)
    throw DevprocError(what + " " + path + ": " + std::to_string(size) + " bytes, more than the " +
                       std::to_string(limit) + " it may hold");
  f.seekg(0);
  std::vector<uint8_t> out(static_cast<size_t>(size));
  f.read(reinterpret_cast<char*>(out.data()), size);
  if (f.gcount() != size) throw DevprocError(what + " " + path + ": could not read it whole");
  return out;
}

}  // namespace

Tensor read_npy(const std::string& path) {
  return parse_npy(read_whole(path, (uint64_t{4} << 30) + (1 << 20), ".npy file"), path);
}

std::vector<uint8_t> npy_bytes(const Tensor& t) {
  check_tensor(t, "write_npy");
  const char* descr = t.dtype == DType::kBool    ? "|b1"
                      : t.dtype == DType::kUInt8 ? "|u1"
                      : t.dtype == DType::kInt32 ? "<i4"
                      : t.dtype == DType::kInt64 ? "<i8"
                      : t.dtype == DType::kFloat16 ? "<f2"
                                                   : "<f4";
  std::string shape = "(";
  for (size_t k = 0; k < t.shape.size(); ++k)
    shape += std::to_string(t.shape[k]) + (k + 1 < t.shape.size() ? ", " : "");
  if (t.shape.size() == 1) shape += ",";
  shape += ")";
  std::string header = std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': " + shape + ", }";
  // numpy pads magic + header to a multiple of 64 bytes, ending in '\n'
  const size_t total = ((10 + header.size() + 1 + 63) / 64) * 64;
  header.append(total - 10 - header.size() - 1, ' ');
  header += '\n';
  std::vector<uint8_t> out = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0};
  out.push_back(static_cast<uint8_t>(header.size() & 0xFF));
  out.push_back(static_cast<uint8_t>(header.size() >> 8));
  out.insert(out.end(), header.begin(), header.end());
  const size_t n = static_cast<size_t>(t.numel());
  auto put = [&out](const void* p, size_t nb) {
    const uint8_t* c = static_cast<const uint8_t*>(p);
    out.insert(out.end(), c, c + nb);
  };
  for (size_t k = 0; k < n; ++k) {
    switch (t.dtype) {
      case DType::kBool:
      case DType::kUInt8: out.push_back(static_cast<uint8_t>(t.i[k])); break;
      case DType::kInt32: {
        const int32_t v = static_cast<int32_t>(t.i[k]);
        put(&v, 4);
        break;
      }
      case DType::kInt64: put(&t.i[k], 8); break;
      case DType::kFloat16: {
        const uint16_t h = float_to_fp16(t.f[k]);
        put(&h, 2);
        break;
      }
      case DType::kFloat32: put(&t.f[k], 4); break;
    }
  }
  return out;
}

void write_npy(const std::string& path, const Tensor& t) {
  const std::vector<uint8_t> bytes = npy_bytes(t);
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) throw DevprocError("cannot write " + path + " (" + std::strerror(errno) + ")");
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!f) throw DevprocError("cannot write " + path);
}

std::vector<uint8_t> read_pipeline_file(const std::string& dir, const std::string& rel, uint64_t size,
                                        const std::string& sha256) {
  std::vector<uint8_t> bytes;
  try {
    artifact_files::Root root(dir);
    uint64_t at_open = 0;
    const artifact_files::Fd fd = artifact_files::open_inside(dir, root.fd(), rel, "file \"" + rel + "\" is missing",
                                                              at_open);
    if (at_open != size)
      throw DevprocError("pipeline " + dir + ": file \"" + rel + "\" holds " + std::to_string(at_open) +
                         " bytes, pipeline.json records " + std::to_string(size));
    bytes = artifact_files::read_fd(dir, rel, fd.get(), at_open, size);
  } catch (const ArtifactError& e) {
    std::string msg = e.what();
    const std::string prefix = "artifact ";
    if (msg.compare(0, prefix.size(), prefix) == 0) msg = msg.substr(prefix.size());
    throw DevprocError("pipeline " + msg);
  }
  if (bytes.size() != size)
    throw DevprocError("pipeline " + dir + ": file \"" + rel + "\" holds " + std::to_string(bytes.size()) +
                       " bytes, pipeline.json records " + std::to_string(size));
  const std::string got = sha256_hex(bytes.data(), bytes.size());
  if (got != sha256)
    throw DevprocError("pipeline " + dir + ": file \"" + rel + "\" has sha256 " + got + ", pipeline.json records " +
                       sha256);
  return bytes;
}

Tensor image_to_tensor(const Image& img) {
  Tensor t;
  t.dtype = DType::kUInt8;
  t.shape = {img.height, img.width, 3};
  const size_t n = static_cast<size_t>(numel_of(t.shape, "image"));
  if (img.rgb.size() != n)
    throw DevprocError("image: " + std::to_string(img.height) + "x" + std::to_string(img.width) + " holds " +
                       std::to_string(img.rgb.size()) + " bytes, not " + std::to_string(n));
  t.i.assign(img.rgb.begin(), img.rgb.end());
  return t;
}

Image tensor_to_image(const Tensor& t, const std::string& what) {
  check_tensor(t, what);
  if (t.dtype != DType::kUInt8 || t.shape.size() != 3 || t.shape[2] != 3 || t.shape[0] < 1 || t.shape[1] < 1)
    throw DevprocError(what + ": an image is a uint8 [H, W, 3] array (H, W >= 1), got " + dtype_name(t.dtype) + " " +
                       shape_str(t.shape));
  Image img;
  img.height = t.shape[0];
  img.width = t.shape[1];
  img.rgb.assign(t.i.begin(), t.i.end());
  return img;
}

// ---------------------------------------------------------------------------- text

std::string string(const std::string& value) {
  if (value.size() > (size_t{1} << 20)) fail("string", "value must be a str of at most 1 MiB");
  return value;
}

Tensor tokenize_encode(const std::string& text, const Tokenizer& tok, bool add_special_tokens) {
  const std::vector<int32_t> ids = tok.encode(text, add_special_tokens);
  Tensor t;
  t.dtype = DType::kInt32;
  t.shape = {1, static_cast<int64_t>(ids.size())};
  t.i.assign(ids.begin(), ids.end());
  return t;
}

std::string tokenize_decode(const Tensor& ids, const Tokenizer& tok, bool skip_special_tokens) {
  need_tensor(ids, "tokenize_decode", "ids");
  if (!is_int_kind(ids.dtype)) fail("tokenize_decode", std::string("ids must be an integer or bool tensor, got ") +
                                                           dtype_name(ids.dtype));
  const int64_t n = static_cast<int64_t>(tok.vocab_size());
  std::vector<int32_t> v;
  v.reserve(ids.i.size());
  for (int64_t id : ids.i) {
    if (id < 0 || id >= n)
      fail("tokenize_decode", "token id " + std::to_string(id) + " is outside the vocabulary [0, " +
                                  std::to_string(n) + ") of '" + tok.path() + "'");
    v.push_back(static_cast<int32_t>(id));
  }
  return tok.decode(v, skip_special_tokens);
}

// ---------------------------------------------------------------------------- tensors

Tensor to(const Tensor& x, DType dtype) {
  need_tensor(x, "to", "x");
  Tensor out;
  out.dtype = dtype;
  out.shape = x.shape;
  const size_t n = is_float(x.dtype) ? x.f.size() : x.i.size();
  if (is_float(dtype)) {
    out.f.resize(n);
    for (size_t k = 0; k < n; ++k) {
      const float v = is_float(x.dtype) ? x.f[k] : static_cast<float>(x.i[k]);  // int -> float32 rounds once
      out.f[k] = dtype == DType::kFloat16 ? round_fp16(v) : v;
    }
    return out;
  }
  out.i.resize(n);
  if (is_float(x.dtype)) {
    if (dtype != DType::kBool) {
      const double lo = dtype == DType::kUInt8 ? 0.0 : dtype == DType::kInt32 ? -2147483648.0 : -9223372036854775808.0;
      const double hi = dtype == DType::kUInt8 ? 255.0 : dtype == DType::kInt32 ? 2147483647.0 : 9223372036854775807.0;
      for (size_t k = 0; k < n; ++k) {
        const double t = std::trunc(static_cast<double>(x.f[k]));
        // int64: 2^63 (the double nearest int64's top) does not fit either
        if (!std::isfinite(x.f[k]) || t < lo || t > hi || (dtype == DType::kInt64 && t >= hi))
          fail("to", "value " + py_repr(x.f[k]) + " does not fit dtype " + dtype_name(dtype));
      }
    }
    for (size_t k = 0; k < n; ++k) {
      const float v = x.f[k];
      if (dtype == DType::kBool) {
        out.i[k] = v != 0.0f ? 1 : 0;  // NaN != 0
      } else {
        const double t = std::trunc(static_cast<double>(v));
        out.i[k] = static_cast<int64_t>(t);
      }
    }
    return out;
  }
  for (size_t k = 0; k < n; ++k) {
    const int64_t v = x.i[k];
    switch (dtype) {
      case DType::kBool: out.i[k] = v != 0 ? 1 : 0; break;
      case DType::kUInt8: out.i[k] = static_cast<int64_t>(static_cast<uint64_t>(v) & 0xFFu); break;
      case DType::kInt32: out.i[k] = static_cast<int32_t>(static_cast<uint32_t>(static_cast<uint64_t>(v))); break;
      default: out.i[k] = v; break;
    }
  }
  return out;
}

Tensor argmax(const Tensor& x, int64_t dim, bool keepdim) {
  need_tensor(x, "argmax", "x");
  if (x.shape.empty()) fail("argmax", "x must have at least one axis");
  const size_t ax = axis("argmax", "dim", dim, x.shape.size());
  if (x.shape[ax] == 0) fail("argmax", "axis " + std::to_string(ax) + " of shape " + shape_str(x.shape) + " is empty");
  int64_t outer, n, inner;
  split_at(x.shape, ax, outer, n, inner);
  Tensor out;
  out.dtype = DType::kInt64;
  for (size_t k = 0; k < x.shape.size(); ++k)
    if (k != ax) out.shape.push_back(x.shape[k]);
    else if (keepdim) out.shape.push_back(1);
  out.i.assign(static_cast<size_t>(outer * inner), 0);
  const bool fl = is_float(x.dtype);
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t in = 0; in < inner; ++in) {
      int64_t best = 0;
      const size_t base = static_cast<size_t>(o * n * inner + in);
      if (fl) {
        float bv = x.f[base];
        if (!std::isnan(bv))
          for (int64_t j = 1; j < n; ++j) {
            const float v = x.f[base + static_cast<size_t>(j * inner)];
            if (std::isnan(v)) {
              best = j;
              break;
            }
            if (v > bv) bv = v, best = j;
          }
      } else {
        int64_t bv = x.i[base];
        for (int64_t j = 1; j < n; ++j) {
          const int64_t v = x.i[base + static_cast<size_t>(j * inner)];
          if (v > bv) bv = v, best = j;
        }
      }
      out.i[static_cast<size_t>(o * inner + in)] = best;
    }
  return out;
}

Tensor concat(const std::vector<Tensor>& xs, int64_t dim) {
  if (xs.empty()) fail("concat", "concat needs at least one tensor");
  for (size_t k = 0; k < xs.size(); ++k) need_tensor(xs[k], "concat", "xs");
  const Tensor& a = xs[0];
  if (a.shape.empty()) fail("concat", "xs[0] must have at least one axis");
  const size_t ax = axis("concat", "dim", dim, a.shape.size());
  Tensor out;
  out.dtype = a.dtype;
  out.shape = a.shape;
  out.shape[ax] = 0;
  for (size_t k = 0; k < xs.size(); ++k) {
    const Tensor& x = xs[k];
    if (x.dtype != a.dtype || x.shape.size() != a.shape.size())
      fail("concat", "xs[" + std::to_string(k) + "] is " + dtype_name(x.dtype) + " of rank " +
                         std::to_string(x.shape.size()) + " but xs[0] is " + dtype_name(a.dtype) + " of rank " +
                         std::to_string(a.shape.size()) + ": concat needs one dtype and rank");
    for (size_t d = 0; d < a.shape.size(); ++d)
      if (d != ax && x.shape[d] != a.shape[d])
        fail("concat", "shapes " + shape_str(a.shape) + " and " + shape_str(x.shape) + " differ outside axis " +
                           std::to_string(ax));
    out.shape[ax] += x.shape[ax];
  }
  const size_t total = static_cast<size_t>(numel_of(out.shape, "concat"));
  if (is_float(out.dtype)) out.f.reserve(total);
  else out.i.reserve(total);
  int64_t outer, n, inner;
  split_at(a.shape, ax, outer, n, inner);
  for (int64_t o = 0; o < outer; ++o)
    for (const Tensor& x : xs) {
      const size_t len = static_cast<size_t>(x.shape[ax] * inner);
      const size_t from = static_cast<size_t>(o) * len;
      if (is_float(out.dtype))
        out.f.insert(out.f.end(), x.f.begin() + static_cast<std::ptrdiff_t>(from),
                     x.f.begin() + static_cast<std::ptrdiff_t>(from + len));
      else
        out.i.insert(out.i.end(), x.i.begin() + static_cast<std::ptrdiff_t>(from),
                     x.i.begin() + static_cast<std::ptrdiff_t>(from + len));
    }
  return out;
}

Tensor transpose(const Tensor& x, int64_t dim0, int64_t dim1) {
  need_tensor(x, "transpose", "x");
  const size_t r = x.shape.size();
  const size_t a = axis("transpose", "dim0", dim0, r), b = axis("transpose", "dim1", dim1, r);
  Tensor out;
  out.dtype = x.dtype;
  out.shape = x.shape;
  std::swap(out.shape[a], out.shape[b]);
  const size_t n = static_cast<size_t>(numel_of(x.shape, "transpose"));
  if (is_float(x.dtype)) out.f.resize(n);
  else out.i.resize(n);
  if (n == 0) return out;
  if (r > kMaxRank) fail("transpose", "x has more than " + std::to_string(kMaxRank) + " axes");
  // strides of x, permuted to the output's axis order
  int64_t stride[kMaxRank] = {0}, idx[kMaxRank] = {0};
  int64_t acc = 1;
  for (size_t k = r; k-- > 0;) {
    stride[k] = acc;
    acc *= x.shape[k];
  }
  std::swap(stride[a], stride[b]);
  for (size_t k = 0; k < n; ++k) {
    int64_t from = 0;
    for (size_t d = 0; d < r; ++d) from += idx[d] * stride[d];
    copy_elem(x, static_cast<size_t>(from), out, k);
    for (size_t d = r; d-- > 0;) {
      if (++idx[d] < out.shape[d]) break;
      idx[d] = 0;
    }
  }
  return out;
}

Tensor unsqueeze(const Tensor& x, int64_t dim) {
  need_tensor(x, "unsqueeze", "x");
  const size_t ax = axis("unsqueeze", "dim", dim, x.shape.size() + 1);
  Tensor out = x;
  out.shape.insert(out.shape.begin() + static_cast<std::ptrdiff_t>(ax), 1);
  return out;
}

Tensor ones_like(const Tensor& x) {
  need_tensor(x, "ones_like", "x");
  Tensor out;
  out.dtype = DType::kInt32;
  out.shape = x.shape;
  out.i.assign(static_cast<size_t>(numel_of(x.shape, "ones_like")), 1);
  return out;
}

Tensor mean_pool(const Tensor& x, const Tensor& mask) {
  need_tensor(x, "mean_pool", "x");
  need_tensor(mask, "mean_pool", "mask");
  if (!is_float(x.dtype) || x.shape.size() != 3)
    fail("mean_pool", std::string("x must be a float tensor of rank 3, got ") + dtype_name(x.dtype) + " " +
                          shape_str(x.shape));
  if (is_float(mask.dtype) || mask.shape.size() != 2)
    fail("mean_pool", std::string("mask must be an integer or bool tensor of rank 2, got ") + dtype_name(mask.dtype) +
                          " " + shape_str(mask.shape));
  if (mask.shape[0] != x.shape[0] || mask.shape[1] != x.shape[1])
    fail("mean_pool", "mask of shape " + shape_str(mask.shape) + " does not match x of shape " + shape_str(x.shape) +
                          " (needs [B, n] of x [B, n, H])");
  const int64_t B = x.shape[0], n = x.shape[1], H = x.shape[2];
  Tensor out;
  out.dtype = DType::kFloat32;
  out.shape = {B, H};
  out.f.assign(static_cast<size_t>(B * H), 0.0f);
  for (int64_t b = 0; b < B; ++b) {
    float den = 0.0f;
    float* acc = out.f.data() + b * H;
    for (int64_t i = 0; i < n; ++i) {
      const float m = static_cast<float>(mask.i[static_cast<size_t>(b * n + i)]);
      const float* row = x.f.data() + (b * n + i) * H;
      for (int64_t h = 0; h < H; ++h) {
        const float p = row[h] * m;
        acc[h] = i == 0 ? p : acc[h] + p;  // the first row starts the sum (no 0 + x: -0.0 stays -0.0)
      }
      den = i == 0 ? m : den + m;
    }
    const float d = den > 1e-9f ? den : 1e-9f;  // np.maximum (no NaN: the mask holds integers)
    for (int64_t h = 0; h < H; ++h) acc[h] = acc[h] / d;
  }
  return out;
}

Tensor l2_normalize(const Tensor& x, int64_t dim, double eps) {
  need_tensor(x, "l2_normalize", "x");
  if (!is_float(x.dtype)) fail("l2_normalize", std::string("x must be a float tensor, got ") + dtype_name(x.dtype));
  if (x.shape.empty()) fail("l2_normalize", "x must have at least one axis");
  if (!(std::isfinite(eps) && eps >= 0)) fail("l2_normalize", "eps=" + py_repr(eps) + " must be a finite number >= 0");
  const size_t ax = axis("l2_normalize", "dim", dim, x.shape.size());
  int64_t outer, n, inner;
  split_at(x.shape, ax, outer, n, inner);
  Tensor out;
  out.dtype = DType::kFloat32;
  out.shape = x.shape;
  out.f.resize(x.f.size());
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t in = 0; in < inner; ++in) {
      const size_t base = static_cast<size_t>(o * n * inner + in);
      double s = 0.0;
      for (int64_t j = 0; j < n; ++j) {
        const double v = static_cast<double>(x.f[base + static_cast<size_t>(j * inner)]);
        const double sq = v * v;  // exact
        s = s + sq;
      }
      const double r = std::sqrt(s);
      const double m = std::isnan(r) ? r : (r > eps ? r : eps);  // np.maximum propagates NaN
      const float norm = static_cast<float>(m);
      for (int64_t j = 0; j < n; ++j) {
        const size_t k = base + static_cast<size_t>(j * inner);
        out.f[k] = x.f[k] / norm;
      }
    }
  return out;
}

Tensor embed(const Tensor& ids, const Tensor& table) {
  need_tensor(ids, "embed", "ids");
  need_tensor(table, "embed", "table");
  if (is_float(ids.dtype))
    fail("embed", std::string("ids must be an integer or bool tensor, got ") + dtype_name(ids.dtype));
  if (!is_float(table.dtype) || table.shape.size() != 2)
    fail("embed", std::string("table must be a float tensor of rank 2, got ") + dtype_name(table.dtype) + " " +
                      shape_str(table.shape));
  const int64_t V = table.shape[0], H = table.shape[1];
  for (int64_t id : ids.i)
    if (id < 0 || id >= V)
      fail("embed", "id " + std::to_string(id) + " is outside the table's " + std::to_string(V) + " rows");
  Tensor out;
  out.dtype = DType::kFloat32;
  out.shape = ids.shape;
  out.shape.push_back(H);
  numel_of(out.shape, "embed");
  out.f.reserve(ids.i.size() * static_cast<size_t>(H));
  for (int64_t id : ids.i)
    out.f.insert(out.f.end(), table.f.begin() + id * H, table.f.begin() + (id + 1) * H);
  return out;
}

// ---------------------------------------------------------------------------- images

Image resize(const Image& img, const std::vector<int64_t>& size, const std::string& method) {
  if (size.size() != 2 || size[0] < 1 || size[0] > 16384 || size[1] < 1 || size[1] > 16384)
    fail("resize", "size=" + shape_str(size) + " must be [height, width], integers in [1, 16384]");
  if (method != "bilinear" && method != "bicubic" && method != "nearest")
    fail("resize", "method='" + method + "' is not one of bilinear, bicubic, nearest");
  return resize(img, size[0], size[1], method);
}

Tensor normalize(const Image& img, const std::vector<double>& mean, const std::vector<double>& std) {
  if (mean.size() != 3 || std.size() != 3) fail("normalize", "mean and std must be 3 numbers each (one per channel)");
  float m[3], s[3];
  for (int c = 0; c < 3; ++c) {
    if (!std::isfinite(mean[c]) || !std::isfinite(std[c]) || std[c] == 0)
      fail("normalize", "mean and std must be finite numbers, std without a zero");
    m[c] = static_cast<float>(mean[c]);
    s[c] = static_cast<float>(std[c]);
  }
  Tensor out;
  out.dtype = DType::kFloat32;
  out.shape = {1, 3, img.height, img.width};
  out.f = normalize(img, m, s);
  if (static_cast<int64_t>(out.f.size()) != numel_of(out.shape, "normalize"))
    fail("normalize", "the image's pixels do not match its size");
  return out;
}

// ---------------------------------------------------------------------------- the generated host program

namespace {

bool is_identifier(const std::string& s) {
  if (s.empty() || s.size() > 64 || !(std::isalpha(static_cast<unsigned char>(s[0])) || s[0] == '_')) return false;
  for (char c : s)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_')) return false;
  return true;
}

std::string first_line(const std::string& s) {
  const size_t nl = s.find('\n');
  return nl == std::string::npos ? s : s.substr(0, nl);
}

}  // namespace

ProgramArgs parse_program_args(int argc, const char* const* argv) {
  ProgramArgs a;
  bool have_dir = false;
  for (int k = 1; k < argc; ++k) {
    const std::string arg = argv[k];
    auto value = [&](const char* opt) -> std::string {
      if (k + 1 >= argc) throw UsageError(std::string(opt) + " needs a value");
      return argv[++k];
    };
    if (arg == "--out") {
      if (!a.out.empty()) throw UsageError("--out is given twice");
      a.out = value("--out");
      if (a.out.empty()) throw UsageError("--out needs a folder");
    } else if (arg == "--input") {
      const std::string v = value("--input");
      const size_t eq = v.find('=');
      if (eq == std::string::npos || !is_identifier(v.substr(0, eq)))
        throw UsageError("--input '" + v + "' is not NAME=TEXT or NAME=@FILE");
      a.inputs.emplace_back(v.substr(0, eq), v.substr(eq + 1));
    } else if (arg == "--device") {
      const std::string v = value("--device");
      const size_t eq = v.find('='), scheme = v.find("://");
      if (eq != std::string::npos && (scheme == std::string::npos || eq < scheme) && is_identifier(v.substr(0, eq))) {
        for (const auto& d : a.devices)
          if (d.first == v.substr(0, eq)) throw UsageError("--device " + d.first + "= is given twice");
        a.devices.emplace_back(v.substr(0, eq), v.substr(eq + 1));
      } else {
        if (!a.device.empty()) throw UsageError("--device URI (for every model) is given twice");
        if (v.empty()) throw UsageError("--device needs a URI");
        a.device = v;
      }
    } else if (!arg.empty() && arg[0] == '-') {
      throw UsageError("unknown option " + arg);
    } else {
      if (have_dir) throw UsageError("one pipeline folder only (got '" + a.dir + "' and '" + arg + "')");
      a.dir = arg;
      have_dir = true;
    }
  }
  if (!have_dir) throw UsageError("the pipeline folder DIR is missing");
  if (a.out.empty()) throw UsageError("--out OUTDIR is missing");
  return a;
}

Inputs::Inputs(const ProgramArgs& args, const std::vector<std::string>& names, std::string pipeline)
    : pipeline_(std::move(pipeline)) {
  for (const auto& kv : args.inputs) {
    if (std::find(names.begin(), names.end(), kv.first) == names.end()) {
      std::string known;
      for (const auto& n : names) known += (known.empty() ? "" : ", ") + n;
      throw DevprocError("--input " + kv.first + ": the pipeline has no input '" + kv.first + "' (inputs: " +
                         (known.empty() ? std::string("none") : known) + ")");
    }
    given_[kv.first] = kv.second;
  }
}

const std::string& Inputs::raw(const std::string& name, const std::string& type) const {
  auto it = given_.find(name);
  if (it == given_.end())
    throw DevprocError("pipeline '" + pipeline_ + "': input '" + name + "' (" + type + ") is missing");
  return it->second;
}

std::vector<uint8_t> Inputs::file(const std::string& name, const std::string& path) const {
  constexpr uint64_t kMax = uint64_t{1} << 30;
  std::ifstream f(path, std::ios::binary);
  if (!f) throw DevprocError("--input " + name + ": cannot read " + path + " (" + std::strerror(errno) + ")");
  struct stat st{};
  if (::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && static_cast<uint64_t>(st.st_size) > kMax)
    throw DevprocError("--input " + name + ": " + path + " is larger than " + std::to_string(kMax) + " bytes");
  std::vector<uint8_t> out;
  char buf[1 << 16];
  while (f) {
    f.read(buf, sizeof buf);
    out.insert(out.end(), buf, buf + f.gcount());
    if (out.size() > kMax)
      throw DevprocError("--input " + name + ": " + path + " is larger than " + std::to_string(kMax) + " bytes");
  }
  if (f.bad()) throw DevprocError("--input " + name + ": cannot read " + path + " (a read error)");
  return out;
}

namespace {

// Python's strict UTF-8 decoder: no overlong form, no surrogate, nothing past U+10FFFF, nothing cut short.
bool valid_utf8(const std::vector<uint8_t>& b) {
  size_t k = 0;
  while (k < b.size()) {
    const uint8_t c = b[k];
    size_t n;
    uint32_t cp;
    if (c < 0x80) {
      ++k;
      continue;
    } else if (c >= 0xC2 && c <= 0xDF) {
      n = 1, cp = c & 0x1Fu;
    } else if (c >= 0xE0 && c <= 0xEF) {
      n = 2, cp = c & 0x0Fu;
    } else if (c >= 0xF0 && c <= 0xF4) {
      n = 3, cp = c & 0x07u;
    } else {
      return false;
    }
    for (size_t j = 1; j <= n; ++j) {
      if (k + j >= b.size() || (b[k + j] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (b[k + j] & 0x3Fu);
    }
    if ((n == 2 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (n == 3 && (cp < 0x10000 || cp > 0x10FFFF)))
      return false;
    k += n + 1;
  }
  return true;
}

}  // namespace

std::string Inputs::string(const std::string& name) const {
  const std::string& v = raw(name, "String");
  if (v.empty() || v[0] != '@') return v;
  const std::string path = v.substr(1);
  const std::vector<uint8_t> b = file(name, path);
  if (!valid_utf8(b)) throw DevprocError("--input " + name + ": " + path + " is not UTF-8 text");
  std::string text;  // Python's text mode: \r\n and a lone \r read as \n
  text.reserve(b.size());
  for (size_t k = 0; k < b.size(); ++k) {
    if (b[k] == '\r') {
      text += '\n';
      if (k + 1 < b.size() && b[k + 1] == '\n') ++k;
    } else {
      text += static_cast<char>(b[k]);
    }
  }
  return text;
}

// The .npy array of `--input NAME=@PATH` (its bytes `b`); a refusal names the input and the file.
static Tensor npy_input(const std::string& name, const std::string& path, const std::vector<uint8_t>& b) {
  try {
    return parse_npy(b, path);
  } catch (const DevprocError& e) {
    const std::string why = e.what();
    throw DevprocError("--input " + name + ": " + path + " is not a .npy array (" +
                       (why.compare(0, path.size() + 2, path + ": ") == 0 ? why.substr(path.size() + 2) : why) + ")");
  }
}

Tensor Inputs::tensor(const std::string& name, DType dtype, size_t rank, const std::string& type) const {
  const std::string& v = raw(name, type);
  if (v.empty() || v[0] != '@')
    throw DevprocError("--input " + name + ": a " + type + " input is given as " + name + "=@FILE");
  const std::string path = v.substr(1);
  const Tensor t = npy_input(name, path, file(name, path));
  if (t.dtype != dtype || t.shape.size() != rank)
    throw DevprocError("input '" + name + "' must be " + type + ", got " + dtype_name(t.dtype) + " of rank " +
                       std::to_string(t.shape.size()));
  return t;
}

Image Inputs::image(const std::string& name) const {
  const std::string& v = raw(name, "Image");
  if (v.empty() || v[0] != '@')
    throw DevprocError("--input " + name + ": a Image input is given as " + name + "=@FILE");
  const std::string path = v.substr(1);
  const std::vector<uint8_t> b = file(name, path);
  if (path.size() >= 4 && path.compare(path.size() - 4, 4, ".npy") == 0) {
    const Tensor t = npy_input(name, path, b);
    if (t.dtype != DType::kUInt8 || t.shape.size() != 3 || t.shape[2] != 3)
      throw DevprocError("input '" + name + "' must be an image: uint8 [H, W, 3], got " + dtype_name(t.dtype) + " " +
                         shape_str(t.shape));
    Image img;
    img.height = t.shape[0];
    img.width = t.shape[1];
    img.rgb.assign(t.i.begin(), t.i.end());
    return img;
  }
  try {
    return decode_image(b, path);
  } catch (const ImageError& e) {
    throw DevprocError("--input " + name + ": " + first_line(e.what()));
  }
}

Tokenizer load_tokenizer_const(const std::string& dir, const std::string& rel, uint64_t size,
                               const std::string& sha256) {
  const std::vector<uint8_t> b = read_pipeline_file(dir, rel, size, sha256);
  return Tokenizer::from_json(std::string(b.begin(), b.end()), rel);
}

Tensor load_tensor_const(const std::string& dir, const std::string& rel, uint64_t size, const std::string& sha256,
                         DType dtype, std::vector<int64_t> shape) {
  return tensor_from_bytes(read_pipeline_file(dir, rel, size, sha256), dtype, std::move(shape),
                           "pipeline " + dir + ": file \"" + rel + "\"");
}

Devices::Devices(const ProgramArgs& args, const std::vector<std::string>& models) {
  std::map<std::string, std::shared_ptr<Slot>> by_uri;
  for (const auto& d : args.devices)
    if (std::find(models.begin(), models.end(), d.first) == models.end()) {
      std::string known;
      for (const auto& n : models) known += (known.empty() ? "" : ", ") + n;
      throw UsageError("--device " + d.first + "=: the pipeline has no model of that name (its models: " +
                       (known.empty() ? std::string("none") : known) + ")");
    }
  for (const auto& m : models) {
    std::string uri = args.device;
    for (const auto& d : args.devices)
      if (d.first == m) uri = d.second;
    if (uri.empty())
      throw UsageError("model '" + m + "' has no device: give --device URI (every model) or --device " + m + "=URI");
    auto& s = by_uri[uri];
    if (!s) {
      s = std::make_shared<Slot>();
      s->uri = uri;
    }
    of_[m] = s;
  }
}

Devices::Slot& Devices::slot(const std::string& model) {
  auto it = of_.find(model);
  if (it == of_.end()) throw DevprocError("no device for model '" + model + "'");
  return *it->second;
}

const Devices::Slot& Devices::slot(const std::string& model) const {
  auto it = of_.find(model);
  if (it == of_.end()) throw DevprocError("no device for model '" + model + "'");
  return *it->second;
}

dlavm::Device& Devices::device(const std::string& model) {
  Slot& s = slot(model);
  if (!s.dev) s.dev = open_device(s.uri);
  return *s.dev;
}

bool Devices::claim(const std::string& model) {
  Slot& s = slot(model);
  if (s.loaded == model) return false;
  s.loaded = model;
  ++s.loads;
  return true;
}

const std::string& Devices::loaded(const std::string& model) const { return slot(model).loaded; }
int64_t Devices::loads(const std::string& model) const { return slot(model).loads; }

namespace {

// The cache checks of every LLM op, then the model's weights on its device.
void use_cache(const Llm& m, Devices& devs, KvCache& cache) {
  if (!cache.model.empty() && cache.model != m.name)
    throw DevprocError("this KV cache belongs to model '" + cache.model + "', not '" + m.name + "'");
  if (!cache.model.empty() && cache.epoch != devs.loads(m.name))
    throw DevprocError("the KV cache of '" + m.name + "' was overwritten by model '" + devs.loaded(m.name) +
                       "' on the same device since its last use");
  m.ensure();
}

host::Tensor token_ids(const Tensor& x, int64_t vocab) {
  for (int64_t id : x.i)
    if (id < 0 || id >= vocab)
      throw DevprocError("token id " + std::to_string(id) + " is outside the model's vocabulary [0, " +
                         std::to_string(vocab) + ")");
  host::Tensor h;
  h.shape = x.shape;
  h.is_int = true;
  h.i = x.i;
  return h;
}

host::Tensor as_float32(const Tensor& x) { return to_host(to(x, DType::kFloat32)); }

// dlavm::generate's view of the LLM (dlavm/llm.h): with a prompt of embeddings, the first call runs them and
// every later one the `table` rows of its tokens (the Python runtime's _EmbeddingFront).
class LoopModel final : public LlmModel {
 public:
  LoopModel(const Llm& m, const Tensor* prompt, const Tensor* table) : m_(m), prompt_(prompt), table_(table) {}
  int64_t max_ctx() const override { return m_.max_ctx; }
  int64_t vocab() const override { return m_.vocab; }
  void load_weights() override { m_.ensure(); }
  int32_t greedy(const std::vector<int32_t>& ids, int64_t ctx) override {
    const host::Tensor out = call(false, ids, ctx);
    if (!out.is_int || out.i.size() != ids.size())
      throw DevprocError("model '" + m_.name + "': entry 'greedy' returned " + std::to_string(out.i.size()) +
                         " token ids for " + std::to_string(ids.size()) + " tokens");
    return static_cast<int32_t>(out.i.back());
  }
  std::vector<float> logits(const std::vector<int32_t>& ids, int64_t ctx) override {
    const host::Tensor out = call(true, ids, ctx);
    const size_t v = static_cast<size_t>(m_.vocab);
    if (out.is_int || out.f.size() != ids.size() * v)
      throw DevprocError("model '" + m_.name + "': entry 'logits' returned " + std::to_string(out.f.size()) +
                         " values for " + std::to_string(ids.size()) + " tokens of " + std::to_string(v));
    return std::vector<float>(out.f.end() - static_cast<std::ptrdiff_t>(v), out.f.end());
  }
  int64_t past() const { return past_; }

 private:
  host::Tensor call(bool logits, const std::vector<int32_t>& ids, int64_t ctx) {
    host::Tensor in;
    if (prompt_) {
      in = as_float32(*prompt_);
      prompt_ = nullptr;
    } else if (table_) {
      const int64_t rows = table_->shape[0], h = table_->shape[1];
      int32_t top = 0;
      for (int32_t id : ids) top = std::max(top, id);
      for (int32_t id : ids)
        if (id < 0 || id >= rows)
          throw DevprocError("decode_loop: token " + std::to_string(top) + " has no row in the embedding table of " +
                             std::to_string(rows) + " rows");
      in.shape = {1, static_cast<int64_t>(ids.size()), h};
      for (int32_t id : ids)
        for (int64_t c = 0; c < h; ++c) in.f.push_back(table_->f[static_cast<size_t>(id * h + c)]);
    } else {
      in.shape = {1, static_cast<int64_t>(ids.size())};
      in.is_int = true;
      in.i.assign(ids.begin(), ids.end());
    }
    host::Tensor out = m_.run(logits, in, ctx);
    past_ = ctx;
    return out;
  }

  const Llm& m_;
  const Tensor* prompt_;
  const Tensor* table_;
  int64_t past_ = 0;
};

}  // namespace

Tensor prefill(const Llm& m, Devices& devs, const Tensor& x, KvCache& cache, const std::string& op) {
  check_tensor(x, op + ": x");
  use_cache(m, devs, cache);
  const int64_t n = x.shape.size() >= 2 ? x.shape[1] : 0;
  if (x.shape.empty() || x.shape[0] != 1 || n == 0)
    throw DevprocError(op + " takes one sequence of at least one token ([1, n]), got shape " + shape_str(x.shape));
  const int64_t ctx = cache.past + n;
  if (ctx > m.max_ctx)
    throw DevprocError(std::to_string(cache.past) + " cached + " + std::to_string(n) + " new tokens = " +
                       std::to_string(ctx) + " exceed the model's maximum context of " + std::to_string(m.max_ctx) +
                       " tokens");
  const host::Tensor feed = is_float(x.dtype) ? as_float32(x) : token_ids(x, m.vocab);
  const host::Tensor out = m.run(true, feed, ctx);
  const size_t v = static_cast<size_t>(m.vocab);
  if (out.is_int || out.f.size() != static_cast<size_t>(n) * v)
    throw DevprocError("model '" + m.name + "': entry 'logits' returned " + std::to_string(out.f.size()) +
                       " values for " + std::to_string(n) + " tokens of " + std::to_string(v));
  cache.model = m.name;
  cache.past = ctx;
  cache.epoch = devs.loads(m.name);
  Tensor row;
  row.dtype = DType::kFloat32;
  row.shape = {1, m.vocab};
  row.f.assign(out.f.end() - static_cast<std::ptrdiff_t>(v), out.f.end());
  return row;
}

Tensor decode_loop(const Llm& m, Devices& devs, const Tensor& x, KvCache& cache, const Tensor* embedding,
                   const DecodeLoopAttrs& a) {
  check_tensor(x, "decode_loop: x");
  use_cache(m, devs, cache);
  if (cache.past)
    throw DevprocError("decode_loop starts a generation: give it a new devproc.KVCache(), not one that holds " +
                       std::to_string(cache.past) + " tokens");
  if (x.shape.size() < 2 || x.shape[0] != 1 || x.shape[1] == 0)
    throw DevprocError("decode_loop takes one prompt of at least one token ([1, n]), got shape " + shape_str(x.shape));
  std::vector<int32_t> prompt;
  Tensor table;
  const bool embeds = is_float(x.dtype);
  if (embeds) {
    if (!embedding) throw DevprocError("decode_loop: a prompt of embeddings needs embedding=");
    table = to(*embedding, DType::kFloat32);
    if (table.shape.size() != 2)
      throw DevprocError("decode_loop: embedding must be a table [V, H], got shape " + shape_str(table.shape));
    prompt.assign(static_cast<size_t>(x.shape[1]), 0);
  } else {
    const host::Tensor ids = token_ids(x, m.vocab);
    prompt.assign(ids.i.begin(), ids.i.end());
  }
  LoopModel lm(m, embeds ? &x : nullptr, embeds ? &table : nullptr);
  GenerateOptions o;
  o.max_new_tokens = a.max_new_tokens;
  o.sampling.temperature = a.temperature;
  o.sampling.top_k = a.top_k;
  o.sampling.top_p = a.top_p;
  o.seed = a.seed;
  for (int64_t e : a.eos_ids) {
    if (e < 0 || e >= m.vocab)
      throw DevprocError("eos_id=" + std::to_string(e) + ": must be a token id in [0, " + std::to_string(m.vocab) +
                         ")");
    o.eos_ids.push_back(static_cast<int32_t>(e));
  }
  Tensor out;
  out.dtype = DType::kInt32;
  generate(lm, prompt, o, [&out](int32_t tok) {
    out.i.push_back(tok);
    return true;
  });
  out.shape = {1, static_cast<int64_t>(out.i.size())};
  cache.model = m.name;
  cache.past = lm.past();
  cache.epoch = devs.loads(m.name);
  return out;
}

Tensor model_input(const Tensor& x, DType want, size_t k) {
  check_tensor(x, "argument " + std::to_string(k));
  if (is_float(x.dtype) != is_float(want))
    throw DevprocError("argument " + std::to_string(k) + ": the model takes " + dtype_name(want) + ", got " +
                       dtype_name(x.dtype));
  return to(x, want);
}

std::vector<Tensor> model_outputs(const std::vector<host::Tensor>& outs, const std::vector<DType>& dtypes,
                                  const std::string& model) {
  if (outs.size() != dtypes.size())
    throw DevprocError("model '" + model + "' gave " + std::to_string(outs.size()) +
                       " output(s), the pipeline expects " + std::to_string(dtypes.size()));
  std::vector<Tensor> r;
  for (size_t k = 0; k < outs.size(); ++k) r.push_back(from_host(outs[k], dtypes[k]));
  return r;
}

void node_error(const std::string& loc, const std::string& op, const std::exception& e) {
  std::string msg = first_line(e.what());
  if (const auto* d = dynamic_cast<const DeviceError*>(&e)) {
    if (d->kind() != "TargetMismatch") msg = "the device refused: " + d->kind() + ": " + msg;
  }
  if (msg.empty()) msg = "failed";
  throw DevprocError(loc + ": " + op + ": " + msg);
}

Outputs::Outputs(std::string dir) : dir_(std::move(dir)) {
  if (::mkdir(dir_.c_str(), 0777) != 0 && errno != EEXIST)
    throw DevprocError("--out " + dir_ + ": cannot create the folder (" + std::strerror(errno) + ")");
  struct stat st{};
  if (::stat(dir_.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) throw DevprocError("--out " + dir_ + ": not a folder");
}

namespace {

// A record of outputs.json as Python's json.dump(records, f, indent=1) writes it.
std::string output_record(size_t k, const char* kind, const Tensor* t, const std::string& file) {
  std::string r = " {\n  \"name\": \"out" + std::to_string(k) + "\",\n  \"kind\": \"" + kind + "\",\n";
  if (!t) return r + "  \"dtype\": null,\n  \"shape\": null,\n  \"file\": \"" + file + "\"\n }";
  r += "  \"dtype\": \"" + std::string(dtype_name(t->dtype)) + "\",\n  \"shape\": [";
  for (size_t d = 0; d < t->shape.size(); ++d) r += (d ? ",\n   " : "\n   ") + std::to_string(t->shape[d]);
  r += t->shape.empty() ? "]" : "\n  ]";
  return r + ",\n  \"file\": \"" + file + "\"\n }";
}

}  // namespace

void Outputs::add(const std::string& text) {
  const size_t k = records_.size();
  const std::string file = "out" + std::to_string(k) + ".txt";
  std::ofstream f(dir_ + "/" + file, std::ios::binary | std::ios::trunc);
  f << text;
  if (!f) throw DevprocError("cannot write " + dir_ + "/" + file);
  records_.push_back(output_record(k, "string", nullptr, file));
}

void Outputs::add(const Tensor& t) {
  const size_t k = records_.size();
  const std::string file = "out" + std::to_string(k) + ".npy";
  write_npy(dir_ + "/" + file, t);
  records_.push_back(output_record(k, "tensor", &t, file));
}

void Outputs::add(const Image& img) { add(image_to_tensor(img)); }

void Outputs::finish() {
  std::string text = "[";
  for (size_t k = 0; k < records_.size(); ++k) text += (k ? ",\n" : "\n") + records_[k];
  text += records_.empty() ? "]" : "\n]";
  std::ofstream f(dir_ + "/outputs.json", std::ios::binary | std::ios::trunc);
  f << text;
  if (!f) throw DevprocError("cannot write " + dir_ + "/outputs.json");
}

int program_main(int argc, const char* const* argv, const std::string& usage,
                 const std::function<void(const ProgramArgs&)>& body) {
  ProgramArgs args;
  try {
    args = parse_program_args(argc, argv);
    body(args);
    return 0;
  } catch (const UsageError& e) {
    std::cerr << "error: " << first_line(e.what()) << "\n" << usage;
    return 2;
  } catch (const DeviceError& e) {
    if (e.kind() == "TargetMismatch")
      std::cerr << "error: " << first_line(e.what()) << "\n";
    else
      std::cerr << "error: the device refused: " << e.kind() << ": " << first_line(e.what()) << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "error: " << first_line(e.what()) << "\n";
    return 1;
  }
}

}  // namespace devproc
}  // namespace dlavm
