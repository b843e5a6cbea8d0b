// The specified sampler (doc/serve.md, "Sampling is the same everywhere"): SplitMix64, exp_spec and
// sample_token, the same bits as dlavm/runtime/sampling.py. Built with -ffp-contract=off (clib/Makefile):
// every floating-point operation below is one IEEE double operation, rounded once, in the specified
// order. What is free is which values get computed (a weight is a function of its own z alone) and how
// the order of the kept ids is found: no full sort unless the top_p cut needs every id in order.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>

#include "dlavm/llm.h"
#include "sampling_internal.h"

namespace dlavm {
namespace {

// ln 2 in two parts (fdlibm's): kLn2Hi has 32 significant bits, so k * kLn2Hi is exact for |k| < 2^21.
constexpr double kLn2Hi = 0x1.62e42feep-1;
constexpr double kLn2Lo = 0x1.a39ef35793c76p-33;
constexpr double kInvLn2 = 0x1.71547652b82fep+0;
// Below this exp_spec is 0 (exp(-745.2) is under half the smallest subnormal double).
constexpr double kExpMin = -745.2;
// 1/n! for n = 0..13: each an exact integer divided once (the nearest double), as sampling.py's TAYLOR.
constexpr double kTaylor[14] = {1.0 / 1.0,          1.0 / 1.0,         1.0 / 2.0,         1.0 / 6.0,
                                1.0 / 24.0,         1.0 / 120.0,       1.0 / 720.0,       1.0 / 5040.0,
                                1.0 / 40320.0,      1.0 / 362880.0,    1.0 / 3628800.0,   1.0 / 39916800.0,
                                1.0 / 479001600.0,  1.0 / 6227020800.0};
// y + kRound - kRound is rint(y) for |y| < 2^51 (the sum lies in [2^52, 2^53), where the doubles are the
// integers; ties go to the even one, as rint's), and the sum's low bits hold the integer.
constexpr double kRound = 0x1.8p52;

#if defined(__GNUC__) || defined(__clang__)
#define DLAVM_INLINE inline __attribute__((always_inline))
#else
#define DLAVM_INLINE inline
#endif
// x86-64 CPUs with AVX2 run the loops below four doubles per instruction instead of SSE2's two (chosen
// when the program runs); both compute each lane with the same IEEE operations, so the same bits.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define DLAVM_SAMPLING_AVX2 1
#endif

// The sampler's loops over W doubles at a time (GCC/Clang vector extensions: SSE2 or AVX2 on x86-64, NEON
// on AArch64, plain code elsewhere). Each lane's arithmetic is the scalar IEEE operation; M and U view a
// lane's bits (a comparison gives all ones or zero per lane). No branch and no library call, so that
// kVecs vectors' Horner chains interleave.
typedef double V2 __attribute__((vector_size(16)));
typedef int64_t M2 __attribute__((vector_size(16)));
typedef uint64_t U2 __attribute__((vector_size(16)));
#ifdef DLAVM_SAMPLING_AVX2
typedef double V4 __attribute__((vector_size(32)));
typedef int64_t M4 __attribute__((vector_size(32)));
typedef uint64_t U4 __attribute__((vector_size(32)));
#endif
// The small functions below are always inlined: no AVX2 vector crosses a call, so the warning about how such a
// vector would be passed without AVX does not apply.
#if defined(__clang__)
#pragma clang diagnostic ignored "-Wunknown-warning-option"
#pragma clang diagnostic ignored "-Wpsabi"
#elif defined(__GNUC__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

template <typename V, typename M, typename U, int W>
struct Kernel {
  static constexpr int kVecs = 4;
  static constexpr size_t kBlock = static_cast<size_t>(W) * kVecs;

  static DLAVM_INLINE V splat(double d) {
    V v;
#pragma GCC unroll 8
    for (int l = 0; l < W; ++l) v[l] = d;
    return v;
  }
  static DLAVM_INLINE V select(const M& mask, const V& yes, const V& no) { return (V)(((M)yes & mask) | ((M)no & ~mask)); }

  // exp_spec (doc/serve.md) of kVecs vectors: k = rint(x / ln 2) as (y + kRound) - kRound; ldexp(p, k) as
  // p * 2^k, exact for a normal result and rounded once for a subnormal one, as ldexp; where 2^k is below
  // the normal doubles (k < -1022) as (p * 2^(k+200)) * 2^-200, the first product exact and the second
  // the one rounding. 2^e (e in [-1022, 0]) from its bits: e + 1023 in the exponent field, taken from
  // kRound + 1023 + e, whose bits are kRound's plus e + 1023 (kRound's own bits shift out).
  static DLAVM_INLINE void exp_block(const V* x, V* y) {
    M low[kVecs];
    V k[kVecs], r[kVecs], p[kVecs];
#pragma GCC unroll 8
    for (int l = 0; l < kVecs; ++l) {
      low[l] = ~(M)(x[l] >= splat(kExpMin));  // also -inf (and NaN, which the sampler never passes)
      const V xs = (V)((M)x[l] & ~low[l]);
      k[l] = (xs * splat(kInvLn2) + splat(kRound)) - splat(kRound);
      r[l] = (xs - k[l] * splat(kLn2Hi)) - k[l] * splat(kLn2Lo);
      p[l] = splat(kTaylor[13]);
    }
#pragma GCC unroll 16
    for (int n = 12; n >= 0; --n) {
#pragma GCC unroll 8
      for (int l = 0; l < kVecs; ++l) p[l] = p[l] * r[l] + splat(kTaylor[n]);
    }
#pragma GCC unroll 8
    for (int l = 0; l < kVecs; ++l) {
      const M tiny = (M)(k[l] < splat(-1022.0));
      const V e = (k[l] + select(tiny, splat(200.0), splat(0.0))) + splat(kRound + 1023.0);
      const V v = (p[l] * (V)((U)e << 52)) * select(tiny, splat(0x1p-200), splat(1.0));
      y[l] = (V)((M)v & ~low[l]);
    }
  }

  // y[i] = exp_spec(x[i]), or with `weights` the weight of x[i] against the maximum m: exp_spec(x[i] -
  // m), 1 where x[i] == m (also when both are infinite, where x[i] - m is NaN). A block at a time; the
  // tail padded with m. Returns the sum of the y[i], added one at a time in order (with `running`, y[i]
  // is that running sum instead): the additions, one chain, overlap the next block's arithmetic.
  static DLAVM_INLINE double exp(const double* x, double m, bool weights, bool running, double* y, size_t n) {
    V in[kVecs], out[kVecs];
    const V mv = splat(m);
    double sum = 0.0;
    for (size_t i = 0; i < n; i += kBlock) {
      double tail[kBlock];
      const double* src = x + i;
      if (i + kBlock > n) {
        for (size_t j = 0; j < kBlock; ++j) tail[j] = i + j < n ? x[i + j] : m;
        src = tail;
      }
#pragma GCC unroll 8
      for (int l = 0; l < kVecs; ++l) {
        std::memcpy(&in[l], src + l * W, sizeof(V));
        if (weights) in[l] = (V)((M)(in[l] - mv) & ~(M)(in[l] == mv));
      }
      exp_block(in, out);
      double values[kBlock];
      std::memcpy(values, out, sizeof out);
      const size_t count = std::min(kBlock, n - i);
      for (size_t j = 0; j < count; ++j) {
        sum = sum + values[j];
        y[i + j] = running ? sum : values[j];
      }
    }
    return sum;
  }

  // z[i] = double(x[i]) / temperature; returns the largest z, or NaN if some z is NaN (with no NaN any
  // grouping of the comparisons gives the maximum).
  static DLAVM_INLINE double divide(const float* x, double temperature, double* z, size_t n) {
    const V t = splat(temperature);
    M nan = {};
    V mv = splat(-INFINITY);
    size_t i = 0;
    for (; i + W <= n; i += W) {
      V v;
#pragma GCC unroll 8
      for (int l = 0; l < W; ++l) v[l] = static_cast<double>(x[i + l]);
      v = v / t;
      std::memcpy(z + i, &v, sizeof v);
      nan |= (M)(v != v);
      mv = select((M)(v > mv), v, mv);
    }
    double m = -INFINITY;
    bool any_nan = false;
    for (int l = 0; l < W; ++l) {
      m = std::max(m, mv[l]);
      any_nan = any_nan || nan[l] != 0;
    }
    for (; i < n; ++i) {
      z[i] = static_cast<double>(x[i]) / temperature;
      any_nan = any_nan || std::isnan(z[i]);
      m = std::max(m, z[i]);
    }
    return any_nan ? NAN : m;
  }
};

double exp_portable(const double* x, double m, bool weights, bool running, double* y, size_t n) {
  return Kernel<V2, M2, U2, 2>::exp(x, m, weights, running, y, n);
}
double divide_portable(const float* x, double temperature, double* z, size_t n) {
  return Kernel<V2, M2, U2, 2>::divide(x, temperature, z, n);
}

#ifdef DLAVM_SAMPLING_AVX2
__attribute__((target("avx2"))) double exp_avx2(const double* x, double m, bool weights, bool running, double* y,
                                                size_t n) {
  return Kernel<V4, M4, U4, 4>::exp(x, m, weights, running, y, n);
}
__attribute__((target("avx2"))) double divide_avx2(const float* x, double temperature, double* z, size_t n) {
  return Kernel<V4, M4, U4, 4>::divide(x, temperature, z, n);
}
#endif

std::atomic<bool> g_portable{false};

bool use_avx2() {
#ifdef DLAVM_SAMPLING_AVX2
  static const bool has = __builtin_cpu_supports("avx2");
  return has && !g_portable.load(std::memory_order_relaxed);
#else
  return false;
#endif
}

double exp_n(const double* x, double m, bool weights, bool running, double* y, size_t n) {
#ifdef DLAVM_SAMPLING_AVX2
  if (use_avx2()) return exp_avx2(x, m, weights, running, y, n);
#endif
  return exp_portable(x, m, weights, running, y, n);
}

double divide(const float* x, double temperature, double* z, size_t n) {
#ifdef DLAVM_SAMPLING_AVX2
  if (use_avx2()) return divide_avx2(x, temperature, z, n);
#endif
  return divide_portable(x, temperature, z, n);
}

// w[i] = the weight of z[i] against the maximum m (see Kernel::exp); returns their sum in id order.
double weights(const double* z, double m, double* w, size_t n) { return exp_n(z, m, true, false, w, n); }

// An id and its z; `before`: the sampler's order, z descending, equal values by smaller id (a total order:
// no z is NaN). `w`: its weight in float, an estimate that only guides how far nucleus() orders.
struct Item {
  Item() {}  // left uninitialized: growing a scratch vector writes nothing
  Item(double z_, int32_t id_, float w_) : z(z_), id(id_), w(w_) {}
  double z;
  int32_t id;
  float w;
};

struct Before {  // an object, not a function pointer, so that the standard algorithms inline it
  bool operator()(const Item& a, const Item& b) const { return a.z > b.z || (a.z == b.z && a.id < b.id); }
};
constexpr Before before{};

// Per-thread scratch space, so that a token allocates nothing once the vectors have grown.
struct Scratch {
  std::vector<double> z, c, w;
  std::vector<Item> order;
  std::vector<std::pair<int32_t, double>> by_id;
};

Scratch& scratch() {
  thread_local Scratch s;
  return s;
}

// The first k ids of the order, sorted (0 < k < n): a heap of the best k seen while z is read once,
// or for a large k a selection (nth_element) and a sort of the k.
void select_top(const double* z, size_t n, size_t k, std::vector<Item>& order) {
  order.clear();
  if (k > 4096 && k * 4 > n) {
    for (size_t i = 0; i < n; ++i) order.push_back({z[i], static_cast<int32_t>(i), 0.0f});
    std::nth_element(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(k), order.end(), before);
    order.resize(k);
  } else {
    for (size_t i = 0; i < k; ++i) order.push_back({z[i], static_cast<int32_t>(i), 0.0f});
    std::make_heap(order.begin(), order.end(), before);  // the front: the last of the k in the order
    for (size_t i = k; i < n; ++i) {
      // an equal z has a larger id than every id in the heap: it comes after them all
      if (z[i] > order.front().z) {
        std::pop_heap(order.begin(), order.end(), before);
        order.back() = {z[i], static_cast<int32_t>(i), 0.0f};
        std::push_heap(order.begin(), order.end(), before);
      }
    }
  }
  std::sort(order.begin(), order.end(), before);
}

// Moves to the front of `items` the first ids of the order whose estimated weights (Item::w) sum to at
// least `target`, in no particular order, and returns how many (a few more where the search stops): a
// quickselect that follows the mass instead of a count.
size_t weighted_prefix(std::vector<Item>& items, double target) {
  size_t lo = 0, hi = items.size();
  double need = target;
  while (hi - lo > 16) {
    const size_t a = lo, b = lo + (hi - lo) / 2, c = hi - 1;  // the pivot: the median of three
    const size_t med = before(items[a], items[b]) ? (before(items[b], items[c]) ? b : (before(items[a], items[c]) ? c : a))
                                                  : (before(items[a], items[c]) ? a : (before(items[b], items[c]) ? c : b));
    std::swap(items[med], items[hi - 1]);
    const Item pivot = items[hi - 1];
    size_t mid = lo;
    double mass = 0.0;
    for (size_t j = lo; j + 1 < hi; ++j)
      if (before(items[j], pivot)) {
        mass += items[j].w;
        std::swap(items[j], items[mid++]);
      }
    std::swap(items[mid], items[hi - 1]);  // the pivot between the two parts
    if (mass >= need) {
      hi = mid;
    } else if (mass + pivot.w >= need) {
      return mid + 1;
    } else {
      need -= mass + pivot.w;
      lo = mid + 1;
    }
  }
  return hi;
}

// top_p < 1 over every id: the ids in the order, as few as needed, with c[j] the running sum of their
// weights w[id] in that order; returns how many are kept (the first j + 1 with c[j] >= bound; all n if
// rounding leaves none). Only the ids with z >= tau are looked at first (a prefix of the order, so tau
// decides only the speed): a weighted selection guesses the kept ids, which are then sorted; if their
// running sum falls short (a guess from float weights), the order grows in chunks (the next 64, 256,
// 1024, ... ids: a selection of the rest, then a sort of the chunk), past tau if need be.
size_t nucleus(const double* z, const double* w, size_t n, double bound, double tau, std::vector<Item>& order,
               double* c) {
  order.resize(n);
  size_t m = 0;
  for (size_t i = 0; i < n; ++i) {  // no branch: most ids are left out, unpredictably
    order[m] = {z[i], static_cast<int32_t>(i), static_cast<float>(w[i])};
    m += z[i] >= tau;
  }
  order.resize(m);
  bool rest = m == n;
  size_t begin = 0, chunk = weighted_prefix(order, bound * (1.0 + 1e-6));
  double sum = 0.0;
  while (true) {
    if (begin == order.size()) {
      if (rest) return n;
      order.resize(n + 1);  // a candidate after the last of the rest is written one past them
      for (size_t i = 0; i < n; ++i) {
        order[m] = {z[i], static_cast<int32_t>(i), static_cast<float>(w[i])};
        m += !(z[i] >= tau);
      }
      order.resize(n);
      rest = true;
      continue;
    }
    const size_t end = std::min(order.size(), begin + chunk);
    const auto first = order.begin() + static_cast<std::ptrdiff_t>(begin);
    const auto last = order.begin() + static_cast<std::ptrdiff_t>(end);
    if (end < order.size() && begin > 0) std::nth_element(first, last, order.end(), before);
    std::sort(first, last, before);
    for (size_t j = begin; j < end; ++j) {
      sum = sum + w[order[j].id];
      c[j] = sum;
      if (sum >= bound) return j + 1;
    }
    begin = end;
    chunk = std::max<size_t>(64, chunk * 4);
  }
}

// The first of the n kept ids whose running sum c[j] exceeds t = u * c[n-1] (the last if rounding leaves
// none): c never decreases (w >= 0), so a binary search finds it.
size_t pick(const double* c, size_t n, SplitMix64& rng) {
  const double t = rng.uniform() * c[n - 1];
  const size_t j = static_cast<size_t>(std::upper_bound(c, c + n, t) - c);
  return j < n ? j : n - 1;
}

}  // namespace

namespace detail {

void sampling_portable_vectors(bool on) { g_portable.store(on, std::memory_order_relaxed); }

const char* sampling_vectors() { return use_avx2() ? "avx2" : "portable"; }

std::string py_number(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[32] = {0};
  for (int prec = 1; prec <= 17; ++prec) {  // the shortest text that reads back as v
    std::snprintf(buf, sizeof buf, "%.*g", prec, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  std::string s = buf;
  if (s.find_first_of(".e") == std::string::npos) s += ".0";
  return s;
}

}  // namespace detail

uint64_t SplitMix64::next() {
  s_ += 0x9E3779B97F4A7C15ull;
  uint64_t z = s_;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

double SplitMix64::uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

double exp_spec(double x) {
  double y;
  exp_n(&x, 0.0, false, false, &y, 1);
  return y;
}

void exp_spec(const double* x, double* y, size_t n) { exp_n(x, 0.0, false, false, y, n); }

int32_t sample_token(const std::vector<float>& logits, const SamplingParams& p, SplitMix64& rng) {
  const size_t n = logits.size();
  if (n == 0) throw std::invalid_argument("logits must be a non-empty vector, got 0 values");
  if (n > static_cast<size_t>(INT32_MAX)) throw std::invalid_argument("logits: more than 2^31-1 values");
  if (!(std::isfinite(p.temperature) && p.temperature > 0))
    throw std::invalid_argument("temperature=" + detail::py_number(p.temperature) + ": sampling needs a finite number > 0");
  if (p.top_k < 0 || static_cast<uint64_t>(p.top_k) > n)
    throw std::invalid_argument("top_k=" + std::to_string(p.top_k) + ": must be an integer in [0, " +
                                std::to_string(n) + "] (0: all tokens)");
  if (!(p.top_p > 0 && p.top_p <= 1))
    throw std::invalid_argument("top_p=" + detail::py_number(p.top_p) + ": must be a number in (0, 1]");

  Scratch& s = scratch();
  s.z.resize(n);
  s.c.resize(n);
  double* z = s.z.data();
  double* c = s.c.data();
  // 1. z = logit / temperature, NaN exactly where the logit is NaN (the temperature is finite and > 0);
  //    m = the largest z
  const double m = divide(logits.data(), p.temperature, z, n);
  if (std::isnan(m)) {
    size_t j = 0;
    while (!std::isnan(z[j])) ++j;
    throw std::invalid_argument("logit " + std::to_string(j) + " is NaN: cannot sample");
  }

  // 2. the kept ids and their order
  const size_t k = p.top_k > 0 && static_cast<size_t>(p.top_k) < n ? static_cast<size_t>(p.top_k) : n;
  if (k == n && p.top_p == 1.0) {  // every id, in id order: nothing to order
    exp_n(z, m, true, true, c, n);  // c: the running sums of the weights
    return static_cast<int32_t>(pick(c, n, rng));  // 3.
  }
  std::vector<Item>& order = s.order;
  size_t kept = k;
  if (k < n) {  // the first top_k of the order
    select_top(z, n, k, order);
    s.w.resize(k);
    double* w = s.w.data();
    for (size_t j = 0; j < k; ++j) c[j] = order[j].z;
    weights(c, m, w, k);  // w[j]: the weight of the j-th kept id
    double sum = 0.0;
    for (size_t j = 0; j < k; ++j) c[j] = sum = sum + w[j];
    if (p.top_p < 1.0) {  // S: the same weights summed in id order
      std::vector<std::pair<int32_t, double>>& by_id = s.by_id;
      by_id.resize(k);
      for (size_t j = 0; j < k; ++j) by_id[j] = {order[j].id, w[j]};
      std::sort(by_id.begin(), by_id.end());  // the ids are distinct
      double total = 0.0;
      for (size_t j = 0; j < k; ++j) total = total + by_id[j].second;
      const double bound = p.top_p * total;
      size_t j = 0;
      while (j + 1 < k && !(c[j] >= bound)) ++j;
      kept = j + 1;
    }
  } else {  // top_p < 1 over every id: S in id order, then the order only as far as the cut
    s.w.resize(n);
    double* w = s.w.data();
    const double total = weights(z, m, w, n);
    // tau (speed only): below it the weights, about exp(z - m) each, sum to at most about half the mass
    // the cut leaves out, so the cut usually falls among the ids with z >= tau
    const double tau = m + std::log((1.0 - p.top_p) * total / (2.0 * static_cast<double>(n)));
    kept = nucleus(z, w, n, p.top_p * total, std::isnan(tau) ? -INFINITY : tau, order, c);
  }
  // 3. the first kept id whose running sum exceeds u * (the kept ids' sum)
  return order[pick(c, kept, rng)].id;
}

}  // namespace dlavm
