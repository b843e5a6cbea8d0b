// Host-fallback ops of the generated C++ driver (doc/runtime_cpp.md "Host ops").
//
// Each function computes one op of doc/ir.md the way the Python runtime's numpy kernel
// (dlavm/runtime/host_kernels.py) computes it, then converts the result to the value's dtype
// `out` as the Python runtime does (`astype`): the same compute dtype (float16 computes in
// float32; matrix products, normalisations, attention, convolution and average pooling in
// double), the same rounding of the result. A Tensor holds any dtype exactly: floats in `f`
// (float16 and float32 values are floats), integers and bool in `i`; the dtype is known to
// the generated code, which passes it as `out`. Every input is checked (its storage holds
// its shape's element count, shapes agree, every index read from data lies inside its axis)
// and a violation throws std::runtime_error naming the op: never an out-of-bounds access.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace dlavm {
namespace host {

enum class DType : uint8_t { kBool, kUInt8, kInt8, kInt16, kInt32, kInt64, kFloat16, kFloat32 };

// A host tensor, row-major: float data in f (is_int false), or integer / bool data in i.
struct Tensor {
  std::vector<int64_t> shape;
  std::vector<float> f;
  std::vector<int64_t> i;
  bool is_int = false;
  // The element count (throws for a negative dim or more than kMaxElements elements).
  int64_t numel() const;
};

// The most elements a host tensor may have (2^31): a size beyond it is an error, not an allocation.
constexpr int64_t kMaxElements = int64_t(1) << 31;

// Throws unless t's storage holds exactly numel() elements of the kind is_int says.
void check_tensor(const Tensor& t, const char* op);

// 0-d tensors for literal operands (already rounded to the dtype the op computes in).
Tensor scalar_float(double v);
Tensor scalar_int(int64_t v);

// numpy's x.astype(to) (float -> int truncates; int -> narrower int wraps; float16 rounds to nearest even).
Tensor cast(const Tensor& x, DType to);

// Elementwise, broadcasting. unary/binary: numpy's ufunc on the operands converted to `out`'s compute
// dtype (float16 -> float32; integers and bool -> int64 after wrapping to `out`). Op names as in doc/ir.md:
// unary neg exp log sqrt rsqrt tanh sigmoid relu abs sin cos erf silu reciprocal floor ceil sign bitwise_not
// gelu gelu_tanh; binary add sub mul div div_floor div_trunc maximum minimum pow floor_divide remainder
// bitwise_and bitwise_or bitwise_xor. predicate: lt le gt ge eq ne logical_and logical_or logical_xor
// (compared exactly: both integer -> int64, else double), result bool.
Tensor unary(const char* op_name, const Tensor& x, DType out);
Tensor binary(const char* op_name, const Tensor& a, const Tensor& b, DType out);
Tensor predicate(const char* op_name, const Tensor& a, const Tensor& b);
Tensor logical_not(const Tensor& x);
// cond ? a : b (each picked value converted to `out`).
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b, DType out);
// np.clip with both bounds (a value equal to a bound is kept); one bound: maximum / minimum.
Tensor clamp(const Tensor& x, const Tensor& lo, const Tensor& hi, DType out);

// Reductions over `axes` (empty: all; negative counted from the end): sum mean prod amax amin any all.
Tensor reduce(const char* op_name, const Tensor& x, std::vector<int64_t> axes, bool keepdim, DType out);
Tensor cumsum(const Tensor& x, int64_t axis, DType out);
Tensor softmax(const Tensor& x, int64_t axis, bool log, DType out);
// The first maximum's index along `axis` (a NaN is the maximum); has_axis false: of the flattened x.
Tensor argmax(const Tensor& x, bool has_axis, int64_t axis, bool keepdim, DType out);
// layer_norm (rms false) or rms_norm over the last `ndim` dims; weight and bias may be null.
Tensor norm(const Tensor& x, const Tensor* weight, const Tensor* bias, int64_t ndim, double eps, bool rms,
            DType out);

// x @ w^T + b; np.matmul (rank >= 1, broadcast batch dims); attention of doc/ir.md (mask may be null;
// mask_is_bool: keep True, else added); conv2d NCHW with groups; pooling NCHW as torch (ceil_mode, padding).
Tensor linear(const Tensor& x, const Tensor& w, const Tensor* b, DType out);
Tensor matmul(const Tensor& a, const Tensor& b, DType out);
Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor* mask, bool mask_is_bool, bool causal,
                 bool has_scale, double scale, DType out);
Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor* b, const std::vector<int64_t>& stride,
              const std::vector<int64_t>& padding, const std::vector<int64_t>& dilation, int64_t groups, DType out);
// The patch matrix of a 2-D convolution: NCHW x -> [N*OH*OW, C*KH*KW], rows (n, oh, ow), columns (c, kh, kw),
// zero outside the input (doc/ir.md "im2col"); a copy, bit-exact.
Tensor im2col(const Tensor& x, const std::vector<int64_t>& kernel, const std::vector<int64_t>& stride,
              const std::vector<int64_t>& padding, const std::vector<int64_t>& dilation, DType out);
Tensor max_pool2d(const Tensor& x, const std::vector<int64_t>& kernel, const std::vector<int64_t>& stride,
                  const std::vector<int64_t>& padding, const std::vector<int64_t>& dilation, bool ceil_mode,
                  DType out);
Tensor avg_pool2d(const Tensor& x, const std::vector<int64_t>& kernel, const std::vector<int64_t>& stride,
                  const std::vector<int64_t>& padding, bool ceil_mode, bool count_include_pad, DType out);

// Data movement and creation (numpy semantics: negative axes and indices count from the end).
Tensor reshape(const Tensor& x, std::vector<int64_t> shape, DType out);   // one -1 allowed
Tensor permute(const Tensor& x, const std::vector<int64_t>& dims, DType out);
Tensor expand(const Tensor& x, const std::vector<int64_t>& shape, DType out);
Tensor slice(const Tensor& x, int64_t axis, int64_t start, int64_t end, int64_t step, DType out);
Tensor concat(const std::vector<const Tensor*>& xs, int64_t axis, DType out);
Tensor take(const Tensor& x, const Tensor& indices, int64_t axis, DType out);
Tensor embedding(const Tensor& table, const Tensor& indices, DType out);
// x[..., i0, ..., i1, ...]: integer index tensors on `axes` (broadcast together); numpy's placement.
Tensor index(const Tensor& x, const std::vector<int64_t>& axes, const std::vector<const Tensor*>& indices,
             DType out);
// torch.gather: out[..., j, ...] = x[..., indices[..., j, ...], ...] along `axis` (indices of x's rank, at most
// x's size off the axis; the result has indices' shape).
Tensor gather(const Tensor& x, const Tensor& indices, int64_t axis, DType out);
// Stable argsort along `axis` (NaN above every number; descending keeps equal values in input order).
Tensor argsort(const Tensor& x, int64_t axis, bool descending, DType out);
Tensor arange(int64_t start, int64_t end, int64_t step, DType out);
Tensor full(const std::vector<int64_t>& shape, const Tensor& value, DType out);

}  // namespace host
}  // namespace dlavm
