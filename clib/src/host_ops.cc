// Host-fallback ops of the generated C++ driver: see dlavm/host_ops.h and doc/runtime_cpp.md "Host ops".
// Each kernel follows the numpy kernel of the same op in dlavm/runtime/host_kernels.py; comments say where
// numpy's rule is not the obvious one.
#include "dlavm/host_ops.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>

#include "dlavm/fp16.h"

namespace dlavm {
namespace host {
namespace {

using Shape = std::vector<int64_t>;

[[noreturn]] void fail(const std::string& op, const std::string& why) { throw std::runtime_error(op + ": " + why); }

std::string shape_str(const Shape& s) {
  std::string out = "[";
  for (size_t k = 0; k < s.size(); ++k) out += (k ? ", " : "") + std::to_string(s[k]);
  return out + "]";
}

bool is_float(DType d) { return d == DType::kFloat16 || d == DType::kFloat32; }

int64_t count(const Shape& s, const std::string& op) {
  int64_t n = 1;
  for (int64_t d : s) {
    if (d < 0) fail(op, "shape " + shape_str(s) + " has a negative dim");
    if (d != 0 && n > kMaxElements / d) fail(op, "shape " + shape_str(s) + " has more than 2^31 elements");
    n *= d;
  }
  return n;
}

// An axis in [-rank, rank) as an index in [0, rank).
size_t norm_axis(int64_t axis, size_t rank, const std::string& op) {
  const int64_t r = static_cast<int64_t>(rank);
  if (axis < -r || axis >= r)
    fail(op, "axis " + std::to_string(axis) + " is out of range for rank " + std::to_string(rank));
  return static_cast<size_t>(axis < 0 ? axis + r : axis);
}

// Row-major strides of s.
Shape strides_of(const Shape& s) {
  Shape st(s.size(), 1);
  for (size_t d = s.size(); d-- > 1;) st[d - 1] = st[d] * s[d];
  return st;
}

// Wrap an integer to dtype d as numpy's astype does (two's complement; bool: nonzero).
int64_t wrap(int64_t v, DType d) {
  switch (d) {
    case DType::kBool: return v != 0;
    case DType::kUInt8: return static_cast<uint8_t>(static_cast<uint64_t>(v));
    case DType::kInt8: return static_cast<int8_t>(static_cast<uint8_t>(static_cast<uint64_t>(v)));
    case DType::kInt16: return static_cast<int16_t>(static_cast<uint16_t>(static_cast<uint64_t>(v)));
    case DType::kInt32: return static_cast<int32_t>(static_cast<uint32_t>(static_cast<uint64_t>(v)));
    default: return v;
  }
}

// numpy's float -> integer astype on x86-64: truncation; NaN and values outside the range give the
// "integer indefinite" (INT64_MIN for int64; INT32_MIN, then wrapped, for narrower types); bool: nonzero.
int64_t float_to_int(double v, DType d) {
  if (d == DType::kBool) return v != 0 || std::isnan(v);
  if (d == DType::kInt64) {
    if (!(v > -9223372036854775808.0 - 1.0 && v < 9223372036854775808.0)) return std::numeric_limits<int64_t>::min();
    return static_cast<int64_t>(v);
  }
  if (!(v > -2147483649.0 && v < 2147483648.0)) return wrap(std::numeric_limits<int32_t>::min(), d);
  return wrap(static_cast<int64_t>(static_cast<int32_t>(v)), d);
}

// Round a double to the nearest float16 (ties to even) in one rounding: round to odd in float32
// first (exact enough: 24 > 11 + 2 bits), then to half.
uint16_t double_to_fp16(double d) {
  float f = static_cast<float>(d);
  if (std::isfinite(d) && std::isfinite(f) && static_cast<double>(f) != d) {
    if (std::fabs(static_cast<double>(f)) > std::fabs(d)) f = std::nextafter(f, 0.0f);
    uint32_t bits;
    std::memcpy(&bits, &f, sizeof bits);
    bits |= 1u;
    std::memcpy(&f, &bits, sizeof bits);
  } else if (std::isfinite(d) && !std::isfinite(f)) {
    f = std::copysign(std::numeric_limits<float>::max(), static_cast<float>(d > 0 ? 1 : -1));
    uint32_t bits;
    std::memcpy(&bits, &f, sizeof bits);
    bits |= 1u;
    std::memcpy(&f, &bits, sizeof bits);
  }
  return float_to_fp16(f);
}

float getf(const Tensor& t, size_t k) { return t.is_int ? static_cast<float>(t.i[k]) : t.f[k]; }
double getd(const Tensor& t, size_t k) { return t.is_int ? static_cast<double>(t.i[k]) : static_cast<double>(t.f[k]); }
int64_t geti(const Tensor& t, size_t k, DType d) { return t.is_int ? wrap(t.i[k], d) : float_to_int(t.f[k], d); }
bool truth(const Tensor& t, size_t k) { return t.is_int ? t.i[k] != 0 : t.f[k] != 0 || std::isnan(t.f[k]); }

// The result tensors: values computed in float32, double or int64, converted to `out` (astype).
// Real values (float or double: a double is rounded once, to the result dtype) as a tensor of dtype `out`.
uint16_t to_fp16(float f) { return float_to_fp16(f); }
uint16_t to_fp16(double d) { return double_to_fp16(d); }

template <class Real>
Tensor from_real(Shape s, const std::vector<Real>& v, DType out) {
  Tensor t;
  t.shape = std::move(s);
  t.is_int = !is_float(out);
  if (out == DType::kFloat32 || out == DType::kFloat16) {
    t.f.resize(v.size());
    for (size_t k = 0; k < v.size(); ++k)
      t.f[k] = out == DType::kFloat32 ? static_cast<float>(v[k]) : fp16_to_float(to_fp16(v[k]));
  } else {
    t.i.resize(v.size());
    for (size_t k = 0; k < v.size(); ++k) t.i[k] = float_to_int(v[k], out);
  }
  return t;
}

Tensor from_float(Shape s, const std::vector<float>& v, DType out) { return from_real(std::move(s), v, out); }
Tensor from_double(Shape s, const std::vector<double>& v, DType out) { return from_real(std::move(s), v, out); }

Tensor from_int(Shape s, const std::vector<int64_t>& v, DType out) {
  Tensor t;
  t.shape = std::move(s);
  t.is_int = !is_float(out);
  if (is_float(out)) {
    t.f.resize(v.size());
    for (size_t k = 0; k < v.size(); ++k) {
      const float x = static_cast<float>(v[k]);
      t.f[k] = out == DType::kFloat32 ? x : fp16_to_float(float_to_fp16(x));
    }
  } else {
    t.i.resize(v.size());
    for (size_t k = 0; k < v.size(); ++k) t.i[k] = wrap(v[k], out);
  }
  return t;
}

// x's elements at `src` (positions checked by the caller), as a tensor of `shape` converted to out.
Tensor gather(const Tensor& x, Shape shape, const std::vector<int64_t>& src, DType out) {
  if (x.is_int) {
    std::vector<int64_t> v(src.size());
    for (size_t k = 0; k < src.size(); ++k) v[k] = x.i[static_cast<size_t>(src[k])];
    return from_int(std::move(shape), v, out);
  }
  std::vector<float> v(src.size());
  for (size_t k = 0; k < src.size(); ++k) v[k] = x.f[static_cast<size_t>(src[k])];
  return from_float(std::move(shape), v, out);
}

// numpy broadcasting of several shapes.
Shape broadcast(const std::vector<const Shape*>& shapes, const std::string& op) {
  size_t nd = 0;
  for (const Shape* s : shapes) nd = std::max(nd, s->size());
  Shape out(nd, 1);
  for (const Shape* s : shapes) {
    for (size_t k = 0; k < s->size(); ++k) {
      const size_t d = nd - s->size() + k;
      const int64_t v = (*s)[k];
      if (v == out[d] || v == 1) continue;
      if (out[d] == 1) { out[d] = v; continue; }
      std::string all;
      for (const Shape* t : shapes) all += (all.empty() ? "" : " and ") + shape_str(*t);
      fail(op, "shapes " + all + " do not broadcast");
    }
  }
  count(out, op);
  return out;
}

// Calls f(k, offsets) for every element k of `out` (row-major) with each operand's element offset.
template <class F>
void bcast_loop(const Shape& out, const std::vector<const Shape*>& ins, F&& f) {
  const size_t nd = out.size(), n_in = ins.size();
  std::vector<Shape> st(n_in, Shape(nd, 0));
  for (size_t j = 0; j < n_in; ++j) {
    const Shape s = strides_of(*ins[j]);
    for (size_t k = 0; k < ins[j]->size(); ++k)
      if ((*ins[j])[k] != 1) st[j][nd - ins[j]->size() + k] = s[k];
  }
  int64_t total = 1;
  for (int64_t d : out) total *= d;
  Shape idx(nd, 0);
  std::vector<int64_t> off(n_in, 0);
  for (int64_t k = 0; k < total; ++k) {
    f(static_cast<size_t>(k), off);
    for (size_t d = nd; d-- > 0;) {
      if (++idx[d] < out[d]) {
        for (size_t j = 0; j < n_in; ++j) off[j] += st[j][d];
        break;
      }
      for (size_t j = 0; j < n_in; ++j) off[j] -= st[j][d] * (out[d] - 1);
      idx[d] = 0;
    }
  }
}

// numpy's float floor division and remainder (npy_divmod): the quotient is rounded so that
// floor_divide(a, b) * b + remainder(a, b) == a as closely as possible.
float divmodf(float a, float b, float* modulus) {
  float mod = std::fmod(a, b);
  if (b == 0) {
    *modulus = mod;
    return a / b;
  }
  float div = (a - mod) / b;
  if (mod != 0) {
    if (std::isless(b, 0.0f) != std::isless(mod, 0.0f)) {
      mod += b;
      div -= 1.0f;
    }
  } else {
    mod = std::copysign(0.0f, b);
  }
  float floordiv;
  if (div != 0) {
    floordiv = std::floor(div);
    if (std::isgreater(div - floordiv, 0.5f)) floordiv += 1.0f;
  } else {
    floordiv = std::copysign(0.0f, a / b);
  }
  *modulus = mod;
  return floordiv;
}

float floor_dividef(float a, float b) {
  if (b == 0) return a / b;
  float mod;
  return divmodf(a, b, &mod);
}

float remainderf(float a, float b) {
  if (b == 0) return std::fmod(a, b);
  float mod;
  divmodf(a, b, &mod);
  return mod;
}

// Integer floor division and remainder as numpy (division by zero gives 0; INT64_MIN // -1 wraps).
int64_t ifloordiv(int64_t a, int64_t b) {
  if (b == 0) return 0;
  if (b == -1) return static_cast<int64_t>(0ull - static_cast<uint64_t>(a));
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

int64_t iremainder(int64_t a, int64_t b) {
  if (b == 0 || b == -1) return 0;
  int64_t r = a % b;
  if (r != 0 && ((r < 0) != (b < 0))) r += b;
  return r;
}

int64_t ipow(int64_t a, int64_t b) {
  if (b < 0) fail("pow", "integers to negative integer powers are not allowed");
  uint64_t r = 1, base = static_cast<uint64_t>(a);
  for (uint64_t e = static_cast<uint64_t>(b); e; e >>= 1) {
    if (e & 1) r *= base;
    base *= base;
  }
  return static_cast<int64_t>(r);
}

// np.maximum / np.minimum on floats: a NaN in either operand propagates; of two equal values the
// second is returned (so maximum(-0.0, 0.0) is 0.0).
float fmaxnp(float a, float b) { return std::isnan(a) ? a : std::isnan(b) ? b : (a > b ? a : b); }
float fminnp(float a, float b) { return std::isnan(a) ? a : std::isnan(b) ? b : (a < b ? a : b); }

// A double-precision dense tensor for the kernels numpy computes in float64.
struct DT {
  Shape shape;
  std::vector<double> v;
};

DT to_dt(const Tensor& t) {
  DT d;
  d.shape = t.shape;
  d.v.resize(t.is_int ? t.i.size() : t.f.size());
  for (size_t k = 0; k < d.v.size(); ++k) d.v[k] = getd(t, k);
  return d;
}

// np.matmul on doubles (rank >= 1, broadcast batch dims).
DT matmul_d(const DT& a0, const DT& b0, const std::string& op) {
  if (a0.shape.empty() || b0.shape.empty()) fail(op, "matmul operands must have rank >= 1");
  Shape as = a0.shape, bs = b0.shape;
  const bool a1 = as.size() == 1, b1 = bs.size() == 1;
  if (a1) as.insert(as.begin(), 1);
  if (b1) bs.push_back(1);
  const int64_t m = as[as.size() - 2], k = as.back(), kb = bs[bs.size() - 2], n = bs.back();
  if (k != kb) fail(op, "matmul shapes " + shape_str(a0.shape) + " and " + shape_str(b0.shape) + " do not match");
  const Shape ab(as.begin(), as.end() - 2), bb(bs.begin(), bs.end() - 2);
  const Shape batch = broadcast({&ab, &bb}, op);
  Shape out_shape = batch;
  if (!a1) out_shape.push_back(m);
  if (!b1) out_shape.push_back(n);
  DT out;
  out.shape = out_shape;
  Shape full = batch;
  full.push_back(m);
  full.push_back(n);
  out.v.assign(static_cast<size_t>(count(full, op)), 0.0);
  size_t bi = 0;
  bcast_loop(batch, {&ab, &bb}, [&](size_t, const std::vector<int64_t>& off) {
    const double* pa = a0.v.data() + off[0] * m * k;
    const double* pb = b0.v.data() + off[1] * k * n;
    double* po = out.v.data() + bi * static_cast<size_t>(m * n);
    for (int64_t r = 0; r < m; ++r)
      for (int64_t c = 0; c < n; ++c) {
        double acc = 0;
        for (int64_t j = 0; j < k; ++j) acc += pa[r * k + j] * pb[j * n + c];
        po[r * n + c] = acc;
      }
    ++bi;
  });
  return out;
}

// a (op) b with b broadcast to a's shape (a's shape must not grow).
template <class F>
void apply_onto(DT& a, const Tensor& b, F f, const std::string& op) {
  const Shape s = broadcast({&a.shape, &b.shape}, op);
  if (s != a.shape) fail(op, "operand of shape " + shape_str(b.shape) + " does not broadcast to " + shape_str(a.shape));
  bcast_loop(s, {&a.shape, &b.shape}, [&](size_t k, const std::vector<int64_t>& off) {
    a.v[k] = f(a.v[k], getd(b, static_cast<size_t>(off[1])));
  });
}

int64_t pool_out_size(int64_t size, int64_t kernel, int64_t stride, int64_t pad, int64_t dilation, bool ceil_mode,
                      const std::string& op) {
  if (stride <= 0 || kernel <= 0 || dilation <= 0 || pad < 0) fail(op, "kernel, stride and dilation must be positive");
  const int64_t span = size + 2 * pad - dilation * (kernel - 1) - 1;
  auto floordiv = [](int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); };
  int64_t out = (ceil_mode ? -floordiv(-span, stride) : floordiv(span, stride)) + 1;
  if (ceil_mode && (out - 1) * stride >= size + pad) --out;
  if (out < 0) fail(op, "the window does not fit the input");
  return out;
}

void check_pool_args(const Tensor& x, const std::vector<const std::vector<int64_t>*>& pairs, const std::string& op) {
  check_tensor(x, op.c_str());
  if (x.shape.size() != 4) fail(op, "the C++ kernel takes a 4-D [N, C, H, W] input, not " + shape_str(x.shape));
  for (const auto* p : pairs)
    if (p->size() != 2) fail(op, "kernel, stride, padding and dilation must have 2 values");
}

}  // namespace

int64_t Tensor::numel() const { return count(shape, "tensor"); }

void check_tensor(const Tensor& t, const char* op) {
  const int64_t n = count(t.shape, op);
  const size_t have = t.is_int ? t.i.size() : t.f.size();
  if (have != static_cast<size_t>(n))
    fail(op, "an operand of shape " + shape_str(t.shape) + " holds " + std::to_string(have) + " elements");
}

Tensor scalar_float(double v) {
  Tensor t;
  t.f.push_back(static_cast<float>(v));
  return t;
}

Tensor scalar_int(int64_t v) {
  Tensor t;
  t.is_int = true;
  t.i.push_back(v);
  return t;
}

Tensor cast(const Tensor& x, DType to) {
  check_tensor(x, "cast");
  return x.is_int ? from_int(x.shape, x.i, to) : from_float(x.shape, x.f, to);
}

Tensor unary(const char* op_name, const Tensor& x, DType out) {
  const std::string op(op_name);
  check_tensor(x, op.c_str());
  const size_t n = x.is_int ? x.i.size() : x.f.size();
  if (!is_float(out)) {
    std::vector<int64_t> r(n);
    for (size_t k = 0; k < n; ++k) {
      const int64_t v = geti(x, k, out);
      const uint64_t u = static_cast<uint64_t>(v);
      if (op == "neg") r[k] = static_cast<int64_t>(0ull - u);
      else if (op == "abs") r[k] = v < 0 ? static_cast<int64_t>(0ull - u) : v;
      else if (op == "relu") r[k] = v > 0 ? v : 0;
      else if (op == "sign") r[k] = (v > 0) - (v < 0);
      else if (op == "floor" || op == "ceil") r[k] = v;
      else if (op == "bitwise_not") r[k] = out == DType::kBool ? !v : ~v;
      else fail(op, "the C++ kernel computes it on floats only");
    }
    return from_int(x.shape, r, out);
  }
  if (op == "erf" || op == "gelu" || op == "gelu_tanh") {
    // numpy computes these in float64: _erf via math.erf; gelu mixes in np.sqrt(...) (a float64 scalar)
    std::vector<double> r(n);
    for (size_t k = 0; k < n; ++k) {
      const float v = getf(x, k);
      if (op == "erf") r[k] = std::erf(static_cast<double>(v));
      else if (op == "gelu")
        r[k] = static_cast<double>(0.5f * v) * (1.0 + std::erf(static_cast<double>(v) / std::sqrt(2.0)));
      else {
        const float inner = v + 0.044715f * std::pow(v, 3.0f);
        r[k] = static_cast<double>(0.5f * v) *
               (1.0 + std::tanh(std::sqrt(2.0 / 3.141592653589793) * static_cast<double>(inner)));
      }
    }
    return from_double(x.shape, r, out);
  }
  float (*fn)(float) = nullptr;
  if (op == "neg") fn = [](float v) { return -v; };
  else if (op == "exp") fn = [](float v) { return std::exp(v); };
  else if (op == "log") fn = [](float v) { return std::log(v); };
  else if (op == "sqrt") fn = [](float v) { return std::sqrt(v); };
  else if (op == "rsqrt") fn = [](float v) { return 1.0f / std::sqrt(v); };
  else if (op == "tanh") fn = [](float v) { return std::tanh(v); };
  else if (op == "sigmoid") fn = [](float v) { return 1.0f / (1.0f + std::exp(-v)); };
  else if (op == "relu") fn = [](float v) { return fmaxnp(v, 0.0f); };
  else if (op == "abs") fn = [](float v) { return std::fabs(v); };
  else if (op == "sin") fn = [](float v) { return std::sin(v); };
  else if (op == "cos") fn = [](float v) { return std::cos(v); };
  else if (op == "silu") fn = [](float v) { return v / (1.0f + std::exp(-v)); };
  else if (op == "reciprocal") fn = [](float v) { return 1.0f / v; };
  else if (op == "floor") fn = [](float v) { return std::floor(v); };
  else if (op == "ceil") fn = [](float v) { return std::ceil(v); };
  else if (op == "sign") fn = [](float v) { return std::isnan(v) ? v : v > 0 ? 1.0f : v < 0 ? -1.0f : 0.0f; };
  else fail(op, "no C++ kernel for this unary op on floats");
  std::vector<float> r(n);
  for (size_t k = 0; k < n; ++k) r[k] = fn(getf(x, k));
  return from_float(x.shape, r, out);
}

Tensor binary(const char* op_name, const Tensor& a, const Tensor& b, DType out) {
  const std::string op(op_name);
  check_tensor(a, op.c_str());
  check_tensor(b, op.c_str());
  const Shape s = broadcast({&a.shape, &b.shape}, op);
  if (is_float(out)) {
    float (*fn)(float, float) = nullptr;
    if (op == "add") fn = [](float x, float y) { return x + y; };
    else if (op == "sub") fn = [](float x, float y) { return x - y; };
    else if (op == "mul") fn = [](float x, float y) { return x * y; };
    else if (op == "div") fn = [](float x, float y) { return x / y; };
    else if (op == "div_trunc") fn = [](float x, float y) { return std::trunc(x / y); };
    else if (op == "div_floor" || op == "floor_divide") fn = floor_dividef;
    else if (op == "remainder") fn = remainderf;
    else if (op == "maximum") fn = fmaxnp;
    else if (op == "minimum") fn = fminnp;
    else if (op == "pow") fn = [](float x, float y) { return std::pow(x, y); };
    else fail(op, "no C++ kernel for this binary op on floats");
    std::vector<float> r(static_cast<size_t>(count(s, op)));
    bcast_loop(s, {&a.shape, &b.shape}, [&](size_t k, const std::vector<int64_t>& off) {
      r[k] = fn(getf(a, static_cast<size_t>(off[0])), getf(b, static_cast<size_t>(off[1])));
    });
    return from_float(s, r, out);
  }
  std::vector<int64_t> r(static_cast<size_t>(count(s, op)));
  if (op == "div") {  // true division of integers is a float64 result, cast back
    std::vector<double> d(r.size());
    bcast_loop(s, {&a.shape, &b.shape}, [&](size_t k, const std::vector<int64_t>& off) {
      d[k] = static_cast<double>(geti(a, static_cast<size_t>(off[0]), out)) /
             static_cast<double>(geti(b, static_cast<size_t>(off[1]), out));
    });
    return from_double(s, d, out);
  }
  int64_t (*fn)(int64_t, int64_t) = nullptr;
  // wrapping arithmetic, as numpy's integers (in unsigned: signed overflow is undefined in C++)
  if (op == "add") fn = [](int64_t x, int64_t y) { return int64_t(uint64_t(x) + uint64_t(y)); };
  else if (op == "sub") fn = [](int64_t x, int64_t y) { return int64_t(uint64_t(x) - uint64_t(y)); };
  else if (op == "mul") fn = [](int64_t x, int64_t y) { return int64_t(uint64_t(x) * uint64_t(y)); };
  else if (op == "div_floor" || op == "floor_divide") fn = ifloordiv;
  else if (op == "div_trunc") fn = [](int64_t x, int64_t y) {
    const int64_t q = ifloordiv(x, y);
    return q + ((iremainder(x, y) != 0) && ((x < 0) != (y < 0)));
  };
  else if (op == "remainder") fn = iremainder;
  else if (op == "maximum") fn = [](int64_t x, int64_t y) { return std::max(x, y); };
  else if (op == "minimum") fn = [](int64_t x, int64_t y) { return std::min(x, y); };
  else if (op == "pow") fn = ipow;
  else if (op == "bitwise_and") fn = [](int64_t x, int64_t y) { return x & y; };
  else if (op == "bitwise_or") fn = [](int64_t x, int64_t y) { return x | y; };
  else if (op == "bitwise_xor") fn = [](int64_t x, int64_t y) { return x ^ y; };
  else fail(op, "no C++ kernel for this binary op on integers");
  bcast_loop(s, {&a.shape, &b.shape}, [&](size_t k, const std::vector<int64_t>& off) {
    r[k] = fn(geti(a, static_cast<size_t>(off[0]), out), geti(b, static_cast<size_t>(off[1]), out));
  });
  return from_int(s, r, out);
}

Tensor predicate(const char* op_name, const Tensor& a, const Tensor& b) {
  const std::string op(op_name);
  check_tensor(a, op.c_str());
  check_tensor(b, op.c_str());
  const Shape s = broadcast({&a.shape, &b.shape}, op);
  std::vector<int64_t> r(static_cast<size_t>(count(s, op)));
  const bool ints = a.is_int && b.is_int;
  int which = -1;
  const char* names[] = {"lt", "le", "gt", "ge", "eq", "ne", "logical_and", "logical_or", "logical_xor"};
  for (int k = 0; k < 9; ++k)
    if (op == names[k]) which = k;
  if (which < 0) fail(op, "no C++ kernel for this predicate");
  bcast_loop(s, {&a.shape, &b.shape}, [&](size_t k, const std::vector<int64_t>& off) {
    const size_t i = static_cast<size_t>(off[0]), j = static_cast<size_t>(off[1]);
    if (which >= 6) {
      const bool x = truth(a, i), y = truth(b, j);
      r[k] = which == 6 ? (x && y) : which == 7 ? (x || y) : (x != y);
      return;
    }
    int c;  // -1, 0, 1, or 2 for unordered (a NaN)
    if (ints) c = a.i[i] < b.i[j] ? -1 : a.i[i] > b.i[j] ? 1 : 0;
    else {
      const double x = getd(a, i), y = getd(b, j);
      c = x < y ? -1 : x > y ? 1 : x == y ? 0 : 2;
    }
    switch (which) {
      case 0: r[k] = c == -1; break;
      case 1: r[k] = c == -1 || c == 0; break;
      case 2: r[k] = c == 1; break;
      case 3: r[k] = c == 1 || c == 0; break;
      case 4: r[k] = c == 0; break;
      default: r[k] = c != 0; break;
    }
  });
  return from_int(s, r, DType::kBool);
}

Tensor logical_not(const Tensor& x) {
  check_tensor(x, "logical_not");
  std::vector<int64_t> r(x.is_int ? x.i.size() : x.f.size());
  for (size_t k = 0; k < r.size(); ++k) r[k] = !truth(x, k);
  return from_int(x.shape, r, DType::kBool);
}

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b, DType out) {
  check_tensor(cond, "where");
  check_tensor(a, "where");
  check_tensor(b, "where");
  const Shape s = broadcast({&cond.shape, &a.shape, &b.shape}, "where");
  const size_t n = static_cast<size_t>(count(s, "where"));
  if (a.is_int && b.is_int) {
    std::vector<int64_t> r(n);
    bcast_loop(s, {&cond.shape, &a.shape, &b.shape}, [&](size_t k, const std::vector<int64_t>& off) {
      const size_t i = static_cast<size_t>(off[1]), j = static_cast<size_t>(off[2]);
      r[k] = truth(cond, static_cast<size_t>(off[0])) ? a.i[i] : b.i[j];
    });
    return from_int(s, r, out);
  }
  std::vector<double> r(n);
  bcast_loop(s, {&cond.shape, &a.shape, &b.shape}, [&](size_t k, const std::vector<int64_t>& off) {
    const size_t i = static_cast<size_t>(off[1]), j = static_cast<size_t>(off[2]);
    r[k] = truth(cond, static_cast<size_t>(off[0])) ? getd(a, i) : getd(b, j);
  });
  return from_double(s, r, out);
}

Tensor clamp(const Tensor& x, const Tensor& lo, const Tensor& hi, DType out) {
  check_tensor(x, "clamp");
  check_tensor(lo, "clamp");
  check_tensor(hi, "clamp");
  const Shape s = broadcast({&x.shape, &lo.shape, &hi.shape}, "clamp");
  const size_t n = static_cast<size_t>(count(s, "clamp"));
  if (is_float(out)) {
    std::vector<float> r(n);
    bcast_loop(s, {&x.shape, &lo.shape, &hi.shape}, [&](size_t k, const std::vector<int64_t>& off) {
      float v = getf(x, static_cast<size_t>(off[0]));
      const float l = getf(lo, static_cast<size_t>(off[1])), h = getf(hi, static_cast<size_t>(off[2]));
      if (!std::isnan(v)) {
        if (v < l) v = l;
        if (v > h) v = h;
      }
      r[k] = v;
    });
    return from_float(s, r, out);
  }
  std::vector<int64_t> r(n);
  bcast_loop(s, {&x.shape, &lo.shape, &hi.shape}, [&](size_t k, const std::vector<int64_t>& off) {
    int64_t v = geti(x, static_cast<size_t>(off[0]), out);
    v = std::max(v, geti(lo, static_cast<size_t>(off[1]), out));
    r[k] = std::min(v, geti(hi, static_cast<size_t>(off[2]), out));
  });
  return from_int(s, r, out);
}

Tensor reduce(const char* op_name, const Tensor& x, std::vector<int64_t> axes, bool keepdim, DType out) {
  const std::string op(op_name);
  check_tensor(x, op.c_str());
  const size_t nd = x.shape.size();
  std::vector<bool> red(nd, axes.empty());
  for (int64_t a : axes) {
    const size_t d = norm_axis(a, nd, op);
    if (red[d]) fail(op, "duplicate axis " + std::to_string(a));
    red[d] = true;
  }
  Shape os, kept(nd);  // kept: x.shape with reduced dims 1 (the keepdim shape)
  int64_t group = 1;
  for (size_t d = 0; d < nd; ++d) {
    kept[d] = red[d] ? 1 : x.shape[d];
    if (red[d]) group *= x.shape[d];
    if (!red[d] || keepdim) os.push_back(kept[d]);
  }
  const size_t n_out = static_cast<size_t>(count(kept, op));
  const bool extremum = op == "amax" || op == "amin";
  if (group == 0 && extremum) fail(op, "zero-size reduction has no identity");
  // accumulate in input order (row-major): output offset of each input element via broadcast strides
  std::vector<double> acc(n_out, op == "prod" || op == "all" ? 1.0 : 0.0);
  std::vector<int64_t> iacc(n_out, op == "prod" || op == "all" ? 1 : 0);
  std::vector<bool> seen(n_out, false);
  const bool fl = is_float(out) && op != "any" && op != "all";
  Shape st_out = strides_of(kept);
  for (size_t d = 0; d < nd; ++d)
    if (red[d]) st_out[d] = 0;
  const Shape in_shape = x.shape;
  Shape idx(nd, 0);
  int64_t o = 0;
  const int64_t total = count(in_shape, op);
  for (int64_t k = 0; k < total; ++k) {
    const size_t ks = static_cast<size_t>(k), os_ = static_cast<size_t>(o);
    if (fl) {
      const double v = getf(x, ks);
      if (op == "sum" || op == "mean") acc[os_] += v;
      else if (op == "prod") acc[os_] *= v;
      else if (!seen[os_]) acc[os_] = v;
      else if (op == "amax") acc[os_] = fmaxnp(static_cast<float>(acc[os_]), static_cast<float>(v));
      else if (op == "amin") acc[os_] = fminnp(static_cast<float>(acc[os_]), static_cast<float>(v));
      else fail(op, "no C++ kernel for this reduction");
    } else {
      const int64_t v = (op == "any" || op == "all") ? truth(x, ks) : geti(x, ks, out);
      const uint64_t u = static_cast<uint64_t>(v);
      if (op == "sum") iacc[os_] = static_cast<int64_t>(static_cast<uint64_t>(iacc[os_]) + u);
      else if (op == "mean") acc[os_] += static_cast<double>(v);
      else if (op == "prod") iacc[os_] = static_cast<int64_t>(static_cast<uint64_t>(iacc[os_]) * u);
      else if (op == "any") iacc[os_] = iacc[os_] || v;
      else if (op == "all") iacc[os_] = iacc[os_] && v;
      else if (!seen[os_]) iacc[os_] = v;
      else if (op == "amax") iacc[os_] = std::max(iacc[os_], v);
      else if (op == "amin") iacc[os_] = std::min(iacc[os_], v);
      else fail(op, "no C++ kernel for this reduction");
    }
    seen[os_] = true;
    for (size_t d = nd; d-- > 0;) {
      if (++idx[d] < in_shape[d]) { o += st_out[d]; break; }
      o -= st_out[d] * (in_shape[d] - 1);
      idx[d] = 0;
    }
  }
  if (op == "mean") {
    for (double& v : acc) v /= static_cast<double>(group);
    return from_double(os, acc, out);
  }
  if (fl) return from_double(os, acc, out);
  return from_int(os, iacc, out);
}

Tensor cumsum(const Tensor& x, int64_t axis, DType out) {
  check_tensor(x, "cumsum");
  const size_t d = norm_axis(axis, x.shape.size(), "cumsum");
  const int64_t len = x.shape[d];
  const int64_t inner = strides_of(x.shape)[d];
  const int64_t outer = len * inner == 0 ? 0 : x.numel() / (len * inner);
  const size_t n = static_cast<size_t>(x.numel());
  if (is_float(out)) {  // numpy accumulates in order, in float32
    std::vector<float> r(n);
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t i = 0; i < inner; ++i) {
        float acc = 0;
        for (int64_t j = 0; j < len; ++j) {
          const size_t k = static_cast<size_t>((o * len + j) * inner + i);
          acc = j == 0 ? getf(x, k) : acc + getf(x, k);
          r[k] = acc;
        }
      }
    return from_float(x.shape, r, out);
  }
  std::vector<int64_t> r(n);
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t i = 0; i < inner; ++i) {
      uint64_t acc = 0;
      for (int64_t j = 0; j < len; ++j) {
        const size_t k = static_cast<size_t>((o * len + j) * inner + i);
        acc += static_cast<uint64_t>(geti(x, k, out));
        r[k] = static_cast<int64_t>(acc);
      }
    }
  return from_int(x.shape, r, out);
}

Tensor softmax(const Tensor& x, int64_t axis, bool log, DType out) {
  const std::string op = log ? "log_softmax" : "softmax";
  check_tensor(x, op.c_str());
  if (!is_float(out)) fail(op, "the C++ kernel computes it on floats only");
  const size_t d = norm_axis(axis, x.shape.size(), op);
  const int64_t len = x.shape[d], inner = strides_of(x.shape)[d];
  const int64_t outer = len * inner == 0 ? 0 : x.numel() / (len * inner);
  std::vector<float> r(static_cast<size_t>(x.numel()));
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t i = 0; i < inner; ++i) {
      auto at = [&](int64_t j) { return static_cast<size_t>((o * len + j) * inner + i); };
      float m = getf(x, at(0));
      for (int64_t j = 1; j < len; ++j) m = fmaxnp(m, getf(x, at(j)));
      double s = 0;
      for (int64_t j = 0; j < len; ++j) s += std::exp(getf(x, at(j)) - m);
      const float sf = static_cast<float>(s);
      for (int64_t j = 0; j < len; ++j) {
        const float z = getf(x, at(j)) - m;
        r[at(j)] = log ? z - std::log(sf) : std::exp(z) / sf;
      }
    }
  return from_float(x.shape, r, out);
}

Tensor argmax(const Tensor& x, bool has_axis, int64_t axis, bool keepdim, DType out) {
  check_tensor(x, "argmax");
  Shape shape = x.shape;
  size_t d = 0;
  if (!has_axis) shape = {x.numel()};
  else d = norm_axis(axis, shape.size(), "argmax");
  if (shape.empty()) shape = {1};  // a 0-d input: one element
  const int64_t len = shape[d], inner = strides_of(shape)[d];
  if (len == 0) fail("argmax", "attempt to get argmax of an empty sequence");
  const int64_t outer = count(shape, "argmax") / (len * (inner ? inner : 1));
  std::vector<int64_t> r;
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t i = 0; i < inner; ++i) {
      int64_t best = 0;
      for (int64_t j = 1; j < len; ++j) {
        const size_t kb = static_cast<size_t>((o * len + best) * inner + i);
        const size_t kj = static_cast<size_t>((o * len + j) * inner + i);
        if (x.is_int) {
          if (x.i[kj] > x.i[kb]) best = j;
        } else {
          if (std::isnan(x.f[kb])) break;  // the first NaN is the maximum
          if (std::isnan(x.f[kj]) || x.f[kj] > x.f[kb]) best = j;
        }
      }
      r.push_back(best);
    }
  Shape os;
  if (!has_axis) {
    if (keepdim) os.assign(x.shape.size(), 1);
  } else {
    for (size_t k = 0; k < x.shape.size(); ++k)
      if (k != d) os.push_back(x.shape[k]);
      else if (keepdim) os.push_back(1);
  }
  return from_int(os, r, out);
}

Tensor norm(const Tensor& x, const Tensor* weight, const Tensor* bias, int64_t ndim, double eps, bool rms, DType out) {
  const std::string op = rms ? "rms_norm" : "layer_norm";
  check_tensor(x, op.c_str());
  if (ndim < 0 || static_cast<size_t>(ndim) > x.shape.size())
    fail(op, "ndim " + std::to_string(ndim) + " exceeds the rank");
  DT y = to_dt(x);
  int64_t group = 1;
  for (size_t k = x.shape.size() - static_cast<size_t>(ndim); k < x.shape.size(); ++k) group *= x.shape[k];
  const size_t g = static_cast<size_t>(group);
  if (g > 0) {
    for (size_t base = 0; base < y.v.size(); base += g) {
      double* p = y.v.data() + base;
      if (rms) {
        double ss = 0;
        for (size_t k = 0; k < g; ++k) ss += p[k] * p[k];
        const double den = std::sqrt(ss / static_cast<double>(g) + eps);
        for (size_t k = 0; k < g; ++k) p[k] /= den;
      } else {
        double mu = 0, var = 0;
        for (size_t k = 0; k < g; ++k) mu += p[k];
        mu /= static_cast<double>(g);
        for (size_t k = 0; k < g; ++k) var += (p[k] - mu) * (p[k] - mu);
        const double den = std::sqrt(var / static_cast<double>(g) + eps);
        for (size_t k = 0; k < g; ++k) p[k] = (p[k] - mu) / den;
      }
    }
  }
  if (weight) {
    check_tensor(*weight, op.c_str());
    apply_onto(y, *weight, [](double a, double b) { return a * b; }, op);
  }
  if (bias) {
    check_tensor(*bias, op.c_str());
    apply_onto(y, *bias, [](double a, double b) { return a + b; }, op);
  }
  return from_double(y.shape, y.v, out);
}

Tensor linear(const Tensor& x, const Tensor& w, const Tensor* b, DType out) {
  check_tensor(x, "linear");
  check_tensor(w, "linear");
  if (w.shape.size() != 2) fail("linear", "the weight must be 2-D, not " + shape_str(w.shape));
  DT wt;  // w^T
  wt.shape = {w.shape[1], w.shape[0]};
  wt.v.resize(static_cast<size_t>(w.numel()));
  for (int64_t r = 0; r < w.shape[0]; ++r)
    for (int64_t c = 0; c < w.shape[1]; ++c)
      wt.v[static_cast<size_t>(c * w.shape[0] + r)] = getd(w, static_cast<size_t>(r * w.shape[1] + c));
  DT y = matmul_d(to_dt(x), wt, "linear");
  if (b) {
    check_tensor(*b, "linear");
    apply_onto(y, *b, [](double p, double q) { return p + q; }, "linear");
  }
  return from_double(y.shape, y.v, out);
}

Tensor matmul(const Tensor& a, const Tensor& b, DType out) {
  check_tensor(a, "matmul");
  check_tensor(b, "matmul");
  DT y = matmul_d(to_dt(a), to_dt(b), "matmul");
  return from_double(y.shape, y.v, out);
}

Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor* mask, bool mask_is_bool, bool causal,
                 bool has_scale, double scale, DType out) {
  const std::string op = "attention";
  check_tensor(q, "attention");
  check_tensor(k, "attention");
  check_tensor(v, "attention");
  if (q.shape.size() < 2 || k.shape.size() < 2 || v.shape.size() < 2) fail(op, "q, k and v must have rank >= 2");
  DT dq = to_dt(q), dk = to_dt(k), dv = to_dt(v);
  const size_t nq = q.shape.size();
  if (nq >= 3 && k.shape.size() >= 3 && k.shape[k.shape.size() - 3] != q.shape[nq - 3]) {  // GQA: np.repeat kv heads
    const int64_t hk = k.shape[k.shape.size() - 3];
    if (hk <= 0 || q.shape[nq - 3] % hk != 0) fail(op, "query heads are not a multiple of the kv heads");
    const int64_t rep = q.shape[nq - 3] / hk;
    for (DT* t : {&dk, &dv}) {
      if (t->shape.size() < 3) fail(op, "k and v must have the same rank");
      const size_t hd = t->shape.size() - 3;
      const int64_t inner = t->shape[hd + 1] * t->shape[hd + 2];
      int64_t outer = 1;
      for (size_t j = 0; j < hd; ++j) outer *= t->shape[j];
      std::vector<double> r;
      r.reserve(t->v.size() * static_cast<size_t>(rep));
      for (int64_t o = 0; o < outer; ++o)
        for (int64_t h = 0; h < t->shape[hd]; ++h)
          for (int64_t c = 0; c < rep; ++c) {
            const auto first = t->v.begin() + (o * t->shape[hd] + h) * inner;
            r.insert(r.end(), first, first + inner);
          }
      t->shape[hd] *= rep;
      t->v = std::move(r);
    }
  }
  const double sc = has_scale ? scale : 1.0 / std::sqrt(static_cast<double>(q.shape.back()));
  DT kt = dk;  // k^T over the last two dims
  const size_t kd = dk.shape.size();
  std::swap(kt.shape[kd - 1], kt.shape[kd - 2]);
  const int64_t rows = dk.shape[kd - 2], cols = dk.shape[kd - 1];
  for (size_t base = 0; rows * cols > 0 && base < dk.v.size(); base += static_cast<size_t>(rows * cols))
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c)
        kt.v[base + static_cast<size_t>(c * rows + r)] = dk.v[base + static_cast<size_t>(r * cols + c)];
  DT s = matmul_d(dq, kt, op);
  for (double& x : s.v) x *= sc;
  const int64_t lq = s.shape[s.shape.size() - 2], lk = s.shape.back();
  if (causal) {
    for (size_t base = 0; lq * lk > 0 && base < s.v.size(); base += static_cast<size_t>(lq * lk))
      for (int64_t i = 0; i < lq; ++i)
        for (int64_t j = 0; j < lk; ++j)
          if (j > i + lk - lq) s.v[base + static_cast<size_t>(i * lk + j)] = -std::numeric_limits<double>::infinity();
  }
  if (mask) {
    check_tensor(*mask, "attention");
    apply_onto(s, *mask, [mask_is_bool](double a, double m) {
      return mask_is_bool ? (m != 0 ? a : -std::numeric_limits<double>::infinity()) : a + m;
    }, op);
  }
  for (size_t base = 0; lk > 0 && base < s.v.size(); base += static_cast<size_t>(lk)) {
    double m = s.v[base];  // np.max: a NaN propagates
    for (int64_t j = 1; j < lk; ++j) {
      const double x = s.v[base + static_cast<size_t>(j)];
      if (!std::isnan(m) && (std::isnan(x) || x > m)) m = x;
    }
    double sum = 0;
    for (int64_t j = 0; j < lk; ++j) {
      double& e = s.v[base + static_cast<size_t>(j)];
      e = std::exp(e - m);
      sum += e;
    }
    for (int64_t j = 0; j < lk; ++j) s.v[base + static_cast<size_t>(j)] /= sum;
  }
  DT y = matmul_d(s, dv, op);
  return from_double(y.shape, y.v, out);
}

Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor* b, const std::vector<int64_t>& stride,
              const std::vector<int64_t>& padding, const std::vector<int64_t>& dilation, int64_t groups, DType out) {
  const std::string op = "conv2d";
  check_pool_args(x, {&stride, &padding, &dilation}, op);
  check_tensor(w, "conv2d");
  if (w.shape.size() != 4) fail(op, "the weight must be 4-D, not " + shape_str(w.shape));
  const int64_t n = x.shape[0], c = x.shape[1], h = x.shape[2], wd = x.shape[3];
  const int64_t o = w.shape[0], cg = w.shape[1], kh = w.shape[2], kw = w.shape[3];
  if (groups <= 0 || c != cg * groups || o % groups != 0)
    fail(op, "input " + shape_str(x.shape) + ", weight " + shape_str(w.shape) + " and groups " +
        std::to_string(groups) + " do not agree");
  const int64_t sh = stride[0], sw = stride[1], ph = padding[0], pw = padding[1], dh = dilation[0], dw = dilation[1];
  if (sh <= 0 || sw <= 0 || dh <= 0 || dw <= 0 || ph < 0 || pw < 0)
    fail(op, "stride and dilation must be positive, padding >= 0");
  const int64_t oh = (h + 2 * ph - dh * (kh - 1) - 1) / sh + 1, ow = (wd + 2 * pw - dw * (kw - 1) - 1) / sw + 1;
  if (h + 2 * ph - dh * (kh - 1) - 1 < 0 || wd + 2 * pw - dw * (kw - 1) - 1 < 0)
    fail(op, "the kernel does not fit the padded input");
  const Shape os = {n, o, oh, ow};
  std::vector<double> r(static_cast<size_t>(count(os, op)), 0.0);
  const int64_t og = o / groups;
  for (int64_t ni = 0; ni < n; ++ni)
    for (int64_t oc = 0; oc < o; ++oc) {
      const int64_t g = oc / og;
      for (int64_t y = 0; y < oh; ++y)
        for (int64_t xx = 0; xx < ow; ++xx) {
          double acc = 0;
          for (int64_t i = 0; i < kh; ++i)
            for (int64_t j = 0; j < kw; ++j) {
              const int64_t iy = y * sh - ph + i * dh, ix = xx * sw - pw + j * dw;
              if (iy < 0 || iy >= h || ix < 0 || ix >= wd) continue;
              for (int64_t ci = 0; ci < cg; ++ci)
                acc += getd(x, static_cast<size_t>(((ni * c + g * cg + ci) * h + iy) * wd + ix)) *
                       getd(w, static_cast<size_t>(((oc * cg + ci) * kh + i) * kw + j));
            }
          r[static_cast<size_t>(((ni * o + oc) * oh + y) * ow + xx)] = acc;
        }
    }
  DT y{os, std::move(r)};
  if (b) {
    check_tensor(*b, "conv2d");
    if (b->shape != Shape{o}) fail(op, "the bias must be [" + std::to_string(o) + "], not " + shape_str(b->shape));
    for (size_t k = 0; k < y.v.size(); ++k) y.v[k] += getd(*b,
        static_cast<size_t>((static_cast<int64_t>(k) / (oh * ow)) % o));
  }
  return from_double(y.shape, y.v, out);
}

Tensor im2col(const Tensor& x, const std::vector<int64_t>& kernel, const std::vector<int64_t>& stride,
              const std::vector<int64_t>& padding, const std::vector<int64_t>& dilation, DType out) {
  const std::string op = "im2col";
  check_pool_args(x, {&kernel, &stride, &padding, &dilation}, op);
  const int64_t n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3];
  const int64_t kh = kernel[0], kw = kernel[1], sh = stride[0], sw = stride[1];
  const int64_t ph = padding[0], pw = padding[1], dh = dilation[0], dw = dilation[1];
  if (kh <= 0 || kw <= 0 || sh <= 0 || sw <= 0 || dh <= 0 || dw <= 0 || ph < 0 || pw < 0)
    fail(op, "kernel, stride and dilation must be positive, padding >= 0");
  if (h + 2 * ph - dh * (kh - 1) - 1 < 0 || w + 2 * pw - dw * (kw - 1) - 1 < 0)
    fail(op, "the kernel does not fit the padded input " + shape_str(x.shape));
  const int64_t oh = (h + 2 * ph - dh * (kh - 1) - 1) / sh + 1, ow = (w + 2 * pw - dw * (kw - 1) - 1) / sw + 1;
  const Shape os = {n, oh, ow, c, kh, kw};   // viewed as [N*OH*OW, C*KH*KW] below
  const size_t total = static_cast<size_t>(count(os, op));
  std::vector<float> rf(x.is_int ? 0 : total, 0.0f);
  std::vector<int64_t> ri(x.is_int ? total : 0, 0);
  size_t k = 0;
  for (int64_t ni = 0; ni < n; ++ni)
    for (int64_t y = 0; y < oh; ++y)
      for (int64_t xx = 0; xx < ow; ++xx)
        for (int64_t ci = 0; ci < c; ++ci)
          for (int64_t i = 0; i < kh; ++i)
            for (int64_t j = 0; j < kw; ++j, ++k) {
              const int64_t iy = y * sh - ph + i * dh, ix = xx * sw - pw + j * dw;
              if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;   // zero padding
              const size_t at = static_cast<size_t>(((ni * c + ci) * h + iy) * w + ix);
              if (x.is_int) ri[k] = x.i[at]; else rf[k] = x.f[at];
            }
  const Shape shape = {n * oh * ow, c * kh * kw};
  return x.is_int ? from_int(shape, ri, out) : from_float(shape, rf, out);
}

Tensor max_pool2d(const Tensor& x, const std::vector<int64_t>& kernel, const std::vector<int64_t>& stride,
                  const std::vector<int64_t>& padding, const std::vector<int64_t>& dilation, bool ceil_mode,
                      DType out) {
  const std::string op = "max_pool2d";
  check_pool_args(x, {&kernel, &stride, &padding, &dilation}, op);
  const int64_t n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3];
  const int64_t oh = pool_out_size(h, kernel[0], stride[0], padding[0], dilation[0], ceil_mode, op);
  const int64_t ow = pool_out_size(w, kernel[1], stride[1], padding[1], dilation[1], ceil_mode, op);
  const Shape os = {n, c, oh, ow};
  const size_t total = static_cast<size_t>(count(os, op));
  std::vector<float> rf(x.is_int ? 0 : total);
  std::vector<int64_t> ri(x.is_int ? total : 0);
  size_t k = 0;
  for (int64_t p = 0; p < n * c; ++p)
    for (int64_t y = 0; y < oh; ++y)
      for (int64_t xx = 0; xx < ow; ++xx, ++k) {
        float mf = -std::numeric_limits<float>::infinity();
        int64_t mi = std::numeric_limits<int64_t>::min();
        bool first = true;
        for (int64_t i = 0; i < kernel[0]; ++i)
          for (int64_t j = 0; j < kernel[1]; ++j) {
            const int64_t iy = y * stride[0] - padding[0] + i * dilation[0];
            const int64_t ix = xx * stride[1] - padding[1] + j * dilation[1];
            const bool inside = iy >= 0 && iy < h && ix >= 0 && ix < w;
            const size_t at = static_cast<size_t>((p * h + iy) * w + ix);
            if (x.is_int) {
              if (inside) mi = std::max(mi, x.i[at]);
            } else {
              const float v = inside ? x.f[at] : -std::numeric_limits<float>::infinity();
              mf = first ? v : fmaxnp(mf, v);
              first = false;
            }
          }
        if (x.is_int) ri[k] = mi; else rf[k] = mf;
      }
  return x.is_int ? from_int(os, ri, out) : from_float(os, rf, out);
}

Tensor avg_pool2d(const Tensor& x, const std::vector<int64_t>& kernel, const std::vector<int64_t>& stride,
                  const std::vector<int64_t>& padding, bool ceil_mode, bool count_include_pad, DType out) {
  const std::string op = "avg_pool2d";
  check_pool_args(x, {&kernel, &stride, &padding}, op);
  const int64_t n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3];
  const int64_t oh = pool_out_size(h, kernel[0], stride[0], padding[0], 1, ceil_mode, op);
  const int64_t ow = pool_out_size(w, kernel[1], stride[1], padding[1], 1, ceil_mode, op);
  auto divisor = [&](int64_t o, int64_t size, int64_t k, int64_t s, int64_t p) {
    const int64_t start = o * s - p, end = std::min(start + k, size + p);
    return count_include_pad ? end - start : std::min(end, size) - std::max(start, int64_t(0));
  };
  const Shape os = {n, c, oh, ow};
  std::vector<double> r(static_cast<size_t>(count(os, op)));
  size_t k = 0;
  for (int64_t p = 0; p < n * c; ++p)
    for (int64_t y = 0; y < oh; ++y)
      for (int64_t xx = 0; xx < ow; ++xx, ++k) {
        double acc = 0;
        for (int64_t i = 0; i < kernel[0]; ++i)
          for (int64_t j = 0; j < kernel[1]; ++j) {
            const int64_t iy = y * stride[0] - padding[0] + i, ix = xx * stride[1] - padding[1] + j;
            if (iy >= 0 && iy < h && ix >= 0 && ix < w) acc += getd(x, static_cast<size_t>((p * h + iy) * w + ix));
            else acc += 0.0;
          }
        r[k] = acc / static_cast<double>(divisor(y, h, kernel[0], stride[0], padding[0]) *
                                         divisor(xx, w, kernel[1], stride[1], padding[1]));
      }
  return from_double(os, r, out);
}

Tensor reshape(const Tensor& x, std::vector<int64_t> shape, DType out) {
  check_tensor(x, "reshape");
  int64_t known = 1;
  size_t infer = shape.size();
  for (size_t k = 0; k < shape.size(); ++k) {
    if (shape[k] == -1 && infer == shape.size()) { infer = k; continue; }
    if (shape[k] < 0) fail("reshape", "bad target shape " + shape_str(shape));
    if (shape[k] != 0 && known > kMaxElements / shape[k])
      fail("reshape", "target shape " + shape_str(shape) + " is too large");
    known = known * shape[k];
  }
  if (infer < shape.size()) {
    if (known == 0 || x.numel() % known != 0)
      fail("reshape", "cannot reshape " + shape_str(x.shape) + " into " + shape_str(shape));
    shape[infer] = x.numel() / known;
  }
  if (count(shape, "reshape") != x.numel())
    fail("reshape", "cannot reshape " + shape_str(x.shape) + " into " + shape_str(shape));
  Tensor t = x.is_int ? from_int(shape, x.i, out) : from_float(shape, x.f, out);
  return t;
}

Tensor permute(const Tensor& x, const std::vector<int64_t>& dims, DType out) {
  check_tensor(x, "permute");
  const size_t nd = x.shape.size();
  if (dims.size() != nd) fail("permute", "dims do not match the rank " + std::to_string(nd));
  std::vector<size_t> p(nd);
  std::vector<bool> used(nd, false);
  for (size_t k = 0; k < nd; ++k) {
    p[k] = norm_axis(dims[k], nd, "permute");
    if (used[p[k]]) fail("permute", "repeated axis in dims");
    used[p[k]] = true;
  }
  const Shape st = strides_of(x.shape);
  Shape os(nd), ost(nd);
  for (size_t k = 0; k < nd; ++k) { os[k] = x.shape[p[k]]; ost[k] = st[p[k]]; }
  std::vector<int64_t> src(static_cast<size_t>(x.numel()));
  Shape idx(nd, 0);
  int64_t off = 0;
  for (size_t k = 0; k < src.size(); ++k) {
    src[k] = off;
    for (size_t d = nd; d-- > 0;) {
      if (++idx[d] < os[d]) { off += ost[d]; break; }
      off -= ost[d] * (os[d] - 1);
      idx[d] = 0;
    }
  }
  return gather(x, os, src, out);
}

Tensor expand(const Tensor& x, const std::vector<int64_t>& shape, DType out) {
  check_tensor(x, "expand");
  if (shape.size() < x.shape.size())
    fail("expand", "cannot broadcast " + shape_str(x.shape) + " to " + shape_str(shape));
  for (size_t k = 0; k < x.shape.size(); ++k) {
    const int64_t t = shape[shape.size() - x.shape.size() + k];
    if (x.shape[k] != t && x.shape[k] != 1)
      fail("expand", "cannot broadcast " + shape_str(x.shape) + " to " + shape_str(shape));
  }
  std::vector<int64_t> src(static_cast<size_t>(count(shape, "expand")));
  bcast_loop(shape, {&x.shape}, [&](size_t k, const std::vector<int64_t>& off) { src[k] = off[0]; });
  return gather(x, shape, src, out);
}

Tensor slice(const Tensor& x, int64_t axis, int64_t start, int64_t end, int64_t step, DType out) {
  check_tensor(x, "slice");
  const size_t d = norm_axis(axis, x.shape.size(), "slice");
  if (step == 0) fail("slice", "slice step cannot be zero");
  const int64_t len = x.shape[d];
  // Python's slice.indices(len)
  auto adjust = [&](int64_t v) {
    if (v < 0) { v += len; if (v < 0) v = step < 0 ? -1 : 0; }
    else if (v >= len) v = step < 0 ? len - 1 : len;
    return v;
  };
  const int64_t s = adjust(start), e = adjust(end);
  int64_t n = 0;
  if (step > 0 && s < e) n = (e - s - 1) / step + 1;
  if (step < 0 && s > e) n = (s - e - 1) / (-step) + 1;
  Shape os = x.shape;
  os[d] = n;
  const int64_t inner = strides_of(x.shape)[d];
  const int64_t outer = len * inner == 0 ? 0 : x.numel() / (len * inner);
  std::vector<int64_t> src;
  src.reserve(static_cast<size_t>(count(os, "slice")));
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t j = 0; j < n; ++j)
      for (int64_t i = 0; i < inner; ++i) src.push_back((o * len + s + j * step) * inner + i);
  return gather(x, os, src, out);
}

Tensor concat(const std::vector<const Tensor*>& xs, int64_t axis, DType out) {
  if (xs.empty()) fail("concat", "needs at least one tensor");
  for (const Tensor* t : xs) check_tensor(*t, "concat");
  const Shape& s0 = xs[0]->shape;
  const size_t d = norm_axis(axis, s0.size(), "concat");
  Shape os = s0;
  os[d] = 0;
  bool ints = true;
  for (const Tensor* t : xs) {
    if (t->shape.size() != s0.size()) fail("concat", "all inputs must have the same rank");
    for (size_t k = 0; k < s0.size(); ++k)
      if (k != d && t->shape[k] != s0[k])
        fail("concat", "shapes " + shape_str(s0) + " and " + shape_str(t->shape) + " differ off the axis");
    os[d] += t->shape[d];
    ints = ints && t->is_int;
  }
  const size_t total = static_cast<size_t>(count(os, "concat"));
  int64_t outer = 1;
  for (size_t k = 0; k < d; ++k) outer *= s0[k];
  std::vector<double> rd;
  std::vector<int64_t> ri;
  for (int64_t o = 0; o < outer; ++o)
    for (const Tensor* t : xs) {
      const int64_t chunk = t->shape[d] * strides_of(t->shape)[d];
      for (int64_t k = 0; k < chunk; ++k) {
        const size_t at = static_cast<size_t>(o * chunk + k);
        if (ints) ri.push_back(t->i[at]); else rd.push_back(getd(*t, at));
      }
    }
  if ((ints ? ri.size() : rd.size()) != total) fail("concat", "internal size mismatch");
  return ints ? from_int(os, ri, out) : from_double(os, rd, out);
}

namespace {
// Integer indices (numpy astype(int64): floats truncate), each checked against `len` (negative wraps).
std::vector<int64_t> indices_into(const Tensor& idx, int64_t len, const std::string& op) {
  check_tensor(idx, op.c_str());
  std::vector<int64_t> r(idx.is_int ? idx.i.size() : idx.f.size());
  for (size_t k = 0; k < r.size(); ++k) {
    int64_t v = geti(idx, k, DType::kInt64);
    if (v < -len || v >= len)
      fail(op, "index " + std::to_string(v) + " is out of bounds for an axis of size " + std::to_string(len));
    r[k] = v < 0 ? v + len : v;
  }
  return r;
}
}  // namespace

namespace {
Tensor take_along(const Tensor& x, const Tensor& indices, int64_t axis, DType out, const char* op) {
  check_tensor(x, op);
  const size_t d = norm_axis(axis, x.shape.size(), op);
  const int64_t len = x.shape[d], inner = strides_of(x.shape)[d];
  const std::vector<int64_t> ids = indices_into(indices, len, op);
  int64_t outer = 1;
  for (size_t k = 0; k < d; ++k) outer *= x.shape[k];
  Shape os(x.shape.begin(), x.shape.begin() + static_cast<std::ptrdiff_t>(d));
  os.insert(os.end(), indices.shape.begin(), indices.shape.end());
  os.insert(os.end(), x.shape.begin() + static_cast<std::ptrdiff_t>(d) + 1, x.shape.end());
  std::vector<int64_t> src;
  src.reserve(static_cast<size_t>(count(os, op)));
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t id : ids)
      for (int64_t i = 0; i < inner; ++i) src.push_back((o * len + id) * inner + i);
  return gather(x, os, src, out);
}
}  // namespace

Tensor take(const Tensor& x, const Tensor& indices, int64_t axis, DType out) {
  return take_along(x, indices, axis, out, "take");
}

Tensor embedding(const Tensor& table, const Tensor& indices, DType out) {
  check_tensor(table, "embedding");
  if (table.shape.empty()) fail("embedding", "the table must have rank >= 1");
  return take_along(table, indices, 0, out, "embedding");
}

Tensor index(const Tensor& x, const std::vector<int64_t>& axes, const std::vector<const Tensor*>& indices, DType out) {
  const std::string op = "index";
  check_tensor(x, "index");
  const size_t nd = x.shape.size();
  if (axes.size() != indices.size()) fail(op, "one index tensor per axis");
  std::vector<const Tensor*> at(nd, nullptr);  // as Python's idx list: a later index of an axis replaces an earlier one
  for (size_t k = 0; k < axes.size(); ++k) at[norm_axis(axes[k], nd, op)] = indices[k];
  std::vector<size_t> adv, rest;
  std::vector<const Shape*> ishapes;
  for (size_t d = 0; d < nd; ++d) {
    if (at[d]) { adv.push_back(d); ishapes.push_back(&at[d]->shape); check_tensor(*at[d], "index"); }
    else rest.push_back(d);
  }
  if (adv.empty()) return cast(x, out);
  const Shape b = broadcast(ishapes, op);
  std::vector<std::vector<int64_t>> ids;
  for (size_t d : adv) ids.push_back(indices_into(*at[d], x.shape[d], op));
  const bool adjacent = adv.back() - adv.front() + 1 == adv.size();
  // out dims: (rest before the first advanced axis) B (rest after) when adjacent, else B (rest)
  size_t n_before = 0;
  if (adjacent) while (n_before < rest.size() && rest[n_before] < adv.front()) ++n_before;
  Shape os;
  for (size_t k = 0; k < n_before; ++k) os.push_back(x.shape[rest[k]]);
  os.insert(os.end(), b.begin(), b.end());
  for (size_t k = n_before; k < rest.size(); ++k) os.push_back(x.shape[rest[k]]);
  // for each element of B, the offset of each index tensor's element
  std::vector<std::vector<int64_t>> boff(static_cast<size_t>(count(b, op)), std::vector<int64_t>(adv.size()));
  bcast_loop(b, ishapes, [&](size_t k, const std::vector<int64_t>& off) {
    for (size_t j = 0; j < adv.size(); ++j) boff[k][j] = off[j];
  });
  const Shape st = strides_of(x.shape);
  Shape rshape;
  for (size_t d : rest) rshape.push_back(x.shape[d]);
  const Shape rst = strides_of(rshape);
  const int64_t nrest = count(rshape, op);
  const int64_t after = n_before < rest.size() ? (n_before == 0 ? nrest : rst[n_before - 1]) : 1;
  // out element = (pre, bi, post): rest coordinates = pre * after + post
  const int64_t pre_n = after == 0 ? 0 : nrest / after;
  std::vector<int64_t> src;
  src.reserve(static_cast<size_t>(count(os, op)));
  for (int64_t pre = 0; pre < pre_n; ++pre)
    for (size_t bi = 0; bi < boff.size(); ++bi)
      for (int64_t post = 0; post < after; ++post) {
        int64_t r = pre * after + post, off = 0;
        for (size_t k = rest.size(); k-- > 0;) {
          off += (r % rshape[k]) * st[rest[k]];
          r /= rshape[k];
        }
        for (size_t j = 0; j < adv.size(); ++j) off += ids[j][static_cast<size_t>(boff[bi][j])] * st[adv[j]];
        src.push_back(off);
      }
  return gather(x, os, src, out);
}

Tensor gather(const Tensor& x, const Tensor& indices, int64_t axis, DType out) {
  check_tensor(x, "gather");
  check_tensor(indices, "gather");
  const size_t nd = x.shape.size();
  if (indices.shape.size() != nd)
    fail("gather", "indices " + shape_str(indices.shape) + " must have the rank of x " + shape_str(x.shape));
  const size_t ax = norm_axis(axis, nd, "gather");
  for (size_t d = 0; d < nd; ++d)
    if (d != ax && indices.shape[d] > x.shape[d])
      fail("gather", "indices " + shape_str(indices.shape) + " is larger than x " + shape_str(x.shape) + " in dim " +
          std::to_string(d));
  const std::vector<int64_t> ids = indices_into(indices, x.shape[ax], "gather");
  const Shape st = strides_of(x.shape);
  std::vector<int64_t> src(ids.size());
  Shape idx(nd, 0);
  for (size_t k = 0; k < ids.size(); ++k) {
    int64_t off = 0;
    for (size_t d = 0; d < nd; ++d) off += (d == ax ? ids[k] : idx[d]) * st[d];
    src[k] = off;
    for (size_t d = nd; d-- > 0;) {
      if (++idx[d] < indices.shape[d]) break;
      idx[d] = 0;
    }
  }
  return gather(x, indices.shape, src, out);
}

Tensor argsort(const Tensor& x, int64_t axis, bool descending, DType out) {
  check_tensor(x, "argsort");
  const size_t d = norm_axis(axis, x.shape.size(), "argsort");
  const int64_t len = x.shape[d], inner = strides_of(x.shape)[d];
  const int64_t outer = len * inner == 0 ? 0 : x.numel() / (len * inner);
  std::vector<int64_t> r(static_cast<size_t>(x.numel()));
  std::vector<int64_t> order(static_cast<size_t>(len));
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t i = 0; i < inner; ++i) {
      auto at = [&](int64_t j) { return static_cast<size_t>((o * len + j) * inner + i); };
      for (int64_t j = 0; j < len; ++j) order[static_cast<size_t>(j)] = j;
      // a < b in the sort order: NaN is above every number and equal to another NaN
      auto less = [&](int64_t a, int64_t b) {
        if (x.is_int) return x.i[at(a)] < x.i[at(b)];
        const float fa = x.f[at(a)], fb = x.f[at(b)];
        if (std::isnan(fa)) return false;
        return std::isnan(fb) || fa < fb;
      };
      if (descending) std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return less(b, a); });
      else std::stable_sort(order.begin(), order.end(), less);
      for (int64_t j = 0; j < len; ++j) r[at(j)] = order[static_cast<size_t>(j)];
    }
  return from_int(x.shape, r, out);
}

Tensor arange(int64_t start, int64_t end, int64_t step, DType out) {
  if (step == 0) fail("arange", "step must be nonzero");
  // ceil((end - start) / step), at least 0, in 128 bits: no int64 operation here can overflow
  const __int128 span = step > 0 ? static_cast<__int128>(end) - start : static_cast<__int128>(start) - end;
  const __int128 stride = step > 0 ? static_cast<__int128>(step) : -static_cast<__int128>(step);
  const __int128 n = span > 0 ? (span - 1) / stride + 1 : 0;
  if (n > kMaxElements) fail("arange", "more than 2^31 elements");
  std::vector<int64_t> v(static_cast<size_t>(n));
  for (size_t k = 0; k < v.size(); ++k) v[k] = static_cast<int64_t>(start + static_cast<__int128>(k) * step);
  return from_int({static_cast<int64_t>(n)}, v, out);
}

Tensor full(const std::vector<int64_t>& shape, const Tensor& value, DType out) {
  check_tensor(value, "full");
  if (!value.shape.empty()) fail("full", "the value must be a scalar");
  const size_t n = static_cast<size_t>(count(shape, "full"));
  Tensor one = value.is_int ? from_int({}, value.i, out) : from_float({}, value.f, out);
  Tensor t;
  t.shape = shape;
  t.is_int = one.is_int;
  if (t.is_int) t.i.assign(n, one.i[0]); else t.f.assign(n, one.f[0]);
  return t;
}

}  // namespace host
}  // namespace dlavm
