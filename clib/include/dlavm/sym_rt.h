// Runtime helpers for expressions exported by dlavm.sym.to_cpp (C++17).
//
// Integer division and modulo follow Python, not C++: floordiv rounds toward
// negative infinity and floormod takes the sign of the divisor, for every
// combination of signs. Together with + - * on int64_t this gives the exported
// expressions the value dlavm.sym.evaluate computes, whenever every
// intermediate value fits in int64_t (overflow and division by zero are
// outside the domain, as for built-in int64_t arithmetic; the *_checked
// variants in namespace dlavm, built into libdlavm_rt.a, throw instead).
#pragma once

#include <cstdint>

// floor(a / b), b != 0.
static inline constexpr int64_t dlavm_floordiv(int64_t a, int64_t b) {
  // C++ '/' truncates toward zero; step down when the exact quotient is a
  // negative non-integer.
  return (a % b != 0 && ((a < 0) != (b < 0))) ? a / b - 1 : a / b;
}

// a - b * floor(a / b): 0 or the sign of b, |result| < |b|; b != 0.
static inline constexpr int64_t dlavm_floormod(int64_t a, int64_t b) {
  if (b == -1) return 0;  // INT64_MIN % -1 traps on x86 although the result is 0
  const int64_t r = a % b;
  return (r != 0 && ((r < 0) != (b < 0))) ? r + b : r;
}

// ceil(a / b), b != 0.
static inline constexpr int64_t dlavm_ceildiv(int64_t a, int64_t b) {
  return (a % b != 0 && ((a < 0) == (b < 0))) ? a / b + 1 : a / b;
}

// Helpers rather than std::min/max: their arguments convert to int64_t, so a
// literal operand (int) never breaks template argument deduction.
static inline constexpr int64_t dlavm_min(int64_t a, int64_t b) { return a < b ? a : b; }
static inline constexpr int64_t dlavm_max(int64_t a, int64_t b) { return a < b ? b : a; }

// base ** exp for exp >= 0 (exponentiation by squaring).
static inline constexpr int64_t dlavm_ipow(int64_t base, int64_t exp) {
  int64_t out = 1;
  while (exp > 0) {
    if (exp & 1) out *= base;
    exp >>= 1;
    if (exp) base *= base;
  }
  return out;
}

namespace dlavm {
// Checked variants (clib/src/sym_rt.cc): std::domain_error on a zero divisor,
// std::overflow_error when the result does not fit int64_t.
int64_t floordiv_checked(int64_t a, int64_t b);
int64_t floormod_checked(int64_t a, int64_t b);
int64_t ceildiv_checked(int64_t a, int64_t b);
}  // namespace dlavm
