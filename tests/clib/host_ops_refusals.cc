// Feeds clib's host-op kernels (dlavm/host_ops.h) malformed operands: each call must throw one
// std::runtime_error naming the op, never read or write out of bounds (the asan flavour of this
// program turns such an access into a failure). Prints one line per case, "NAME: MESSAGE"; exit 1
// if a case did not throw. Driven by tests/clib/test_cpp_driver_host_ops.py.
#include <cmath>
#include <cstdio>
#include <functional>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "dlavm/host_ops.h"

using dlavm::host::DType;
using dlavm::host::Tensor;

static Tensor floats(std::vector<int64_t> shape, size_t n) {
  Tensor t;
  t.shape = std::move(shape);
  t.f.assign(n, 1.0f);
  return t;
}

static Tensor ints(std::vector<int64_t> shape, std::vector<int64_t> v) {
  Tensor t;
  t.shape = std::move(shape);
  t.is_int = true;
  t.i = std::move(v);
  return t;
}

int main() {
  namespace h = dlavm::host;
  const DType f32 = DType::kFloat32;
  const Tensor a23 = floats({2, 3}, 6), a4 = floats({4}, 4), table = floats({3, 2}, 6), ids = ints({2}, {0, 5});
  const Tensor w2233 = floats({2, 2, 3, 3}, 36), kv = floats({1, 2, 2, 4}, 16), q3 = floats({1, 3, 2, 4}, 24);
  const std::vector<int64_t> one = {1, 1}, zero = {0, 0};
  const std::vector<std::pair<const char*, std::function<void()>>> cases = {
      {"short storage", [&] { h::unary("exp", floats({2, 3}, 5), f32); }},
      {"long storage", [&] { h::binary("add", floats({2}, 3), a4, f32); }},
      {"int storage", [&] { Tensor t = ints({2}, {1}); h::cast(t, f32); }},
      {"negative dim", [&] { h::reshape(floats({-1}, 0), {1}, f32); }},
      {"huge shape", [&] { h::full({1 << 20, 1 << 20}, h::scalar_float(0), f32); }},
      {"huge arange", [&] { h::arange(0, std::numeric_limits<int64_t>::max(), 1, DType::kInt64); }},
      {"broadcast", [&] { h::binary("add", a23, a4, f32); }},
      {"embedding index", [&] { h::embedding(table, ints({2}, {1, 3}), f32); }},
      {"embedding negative", [&] { h::embedding(table, ints({1}, {-4}), f32); }},
      {"take nan index", [&] { h::take(table, h::scalar_float(std::nan("")), 0, f32); }},
      {"index", [&] { h::index(a23, {1}, {&ids}, f32); }},
      {"gather larger", [&] { h::gather(a23, ints({3, 1}, {0, 0, 0}), 1, f32); }},
      {"gather index", [&] { h::gather(a23, ints({1, 1}, {7}), 1, f32); }},
      {"permute", [&] { h::permute(a23, {0, 0}, f32); }},
      {"reshape", [&] { h::reshape(a23, {4}, f32); }},
      {"reshape huge", [&] { h::reshape(a23, {-1, int64_t(1) << 40, int64_t(1) << 40}, f32); }},
      {"expand", [&] { h::expand(a23, {2, 4}, f32); }},
      {"slice axis", [&] { h::slice(a23, 2, 0, 1, 1, f32); }},
      {"slice step", [&] { h::slice(a23, 0, 0, 1, 0, f32); }},
      {"concat", [&] { h::concat({&a23, &a4}, 0, f32); }},
      {"matmul", [&] { h::matmul(a23, a23, f32); }},
      {"linear", [&] { h::linear(a23, a4, nullptr, f32); }},
      {"conv2d", [&] { h::conv2d(floats({1, 3, 4, 4}, 48), w2233, nullptr, one, zero, one, 1, f32); }},
      {"conv2d bias", [&] { h::conv2d(floats({1, 2, 4, 4}, 32), w2233, &a4, one, zero, one, 1, f32); }},
      {"im2col rank", [&] { h::im2col(a23, {1, 1}, one, zero, one, f32); }},
      {"im2col short storage", [&] { h::im2col(floats({1, 1, 2, 2}, 3), {1, 1}, one, zero, one, f32); }},
      {"im2col huge", [&] { h::im2col(floats({1, 1, 1, 1}, 1), {1, 1}, one, {40000, 40000}, one, f32); }},
      {"im2col kernel", [&] { h::im2col(floats({1, 1, 2, 2}, 4), {3, 3}, one, zero, one, f32); }},
      {"im2col stride", [&] { h::im2col(floats({1, 1, 2, 2}, 4), {1, 1}, {0, 1}, zero, one, f32); }},
      {"max_pool2d", [&] { h::max_pool2d(a23, {2, 2}, {1, 1}, {0, 0}, {1, 1}, false, f32); }},
      {"avg_pool2d stride", [&] { h::avg_pool2d(floats({1, 1, 2, 2}, 4), {2, 2}, {0, 1}, {0, 0}, false, true, f32); }},
      {"attention heads", [&] { h::attention(q3, kv, kv, nullptr, false, false, false, 0, f32); }},
      {"reduce axis", [&] { h::reduce("sum", a23, {0, -2}, false, f32); }},
      {"argmax empty", [&] { h::argmax(floats({0}, 0), true, 0, false, DType::kInt64); }},
      {"norm ndim", [&] { h::norm(a23, nullptr, nullptr, 3, 1e-5, false, f32); }},
      {"where", [&] { h::where(ints({3}, {1, 0, 1}), a23, a4, f32); }},
      {"unknown unary", [&] { h::unary("frobnicate", a23, f32); }},
  };
  int failures = 0;
  for (const auto& c : cases) {
    try {
      c.second();
      std::printf("NO THROW: %s\n", c.first);
      ++failures;
    } catch (const std::runtime_error& e) {
      std::printf("%s: %s\n", c.first, e.what());
    }
  }
  return failures ? 1 : 0;
}
