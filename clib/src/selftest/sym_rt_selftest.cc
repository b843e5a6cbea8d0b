// Self-test of dlavm/sym_rt.h and the checked variants. Every expectation is
// a defining property (floor division bracket, remainder identity and sign),
// checked exhaustively on a small range and at the int64_t extremes; the
// Python-equivalence of whole expressions is tested from tests/sym.
#include <cstdio>
#include <limits>
#include <stdexcept>

#include "dlavm/sym_rt.h"

static int failures = 0;

#define EXPECT(cond, a, b)                                                                 \
  do {                                                                                     \
    if (!(cond)) {                                                                         \
      std::fprintf(stderr, "FAIL %s at a=%lld b=%lld\n", #cond, (long long)(a),            \
                   (long long)(b));                                                        \
      ++failures;                                                                          \
    }                                                                                      \
  } while (0)

static void check_pair(int64_t a, int64_t b) {
  const int64_t q = dlavm_floordiv(a, b);
  const int64_t r = dlavm_floormod(a, b);
  const int64_t c = dlavm_ceildiv(a, b);
  // a == q*b + r (computed mod 2^64: q*b may leave int64_t at the extremes),
  // and r lies in [0, b) for b > 0, in (b, 0] for b < 0.
  EXPECT(uint64_t(q) * uint64_t(b) + uint64_t(r) == uint64_t(a), a, b);
  EXPECT(b > 0 ? (0 <= r && r < b) : (b < r && r <= 0), a, b);
  // ceil is floor, or floor + 1 when b does not divide a.
  EXPECT(c == (r == 0 ? q : q + 1), a, b);
  EXPECT(dlavm::floordiv_checked(a, b) == q && dlavm::floormod_checked(a, b) == r &&
             dlavm::ceildiv_checked(a, b) == c,
         a, b);
}

int main() {
  for (int64_t a = -300; a <= 300; ++a) {
    for (int64_t b = -17; b <= 17; ++b) {
      if (b != 0) check_pair(a, b);
    }
  }
  const int64_t lo = std::numeric_limits<int64_t>::min();
  const int64_t hi = std::numeric_limits<int64_t>::max();
  const int64_t edges_a[] = {lo, lo + 1, -1, 0, 1, hi - 1, hi};
  const int64_t edges_b[] = {lo, lo + 1, -7, -2, 2, 7, hi - 1, hi};
  for (int64_t a : edges_a) {
    for (int64_t b : edges_b) check_pair(a, b);
    EXPECT(dlavm_floormod(a, -1) == 0 && dlavm_floormod(a, 1) == 0, a, 1);
    EXPECT(dlavm_floordiv(a, 1) == a, a, 1);
  }
  for (int64_t x = -6; x <= 6; ++x) {
    int64_t p = 1;
    for (int64_t e = 0; e <= 12; ++e) {
      EXPECT(dlavm_ipow(x, e) == p, x, e);
      p *= x;
    }
    EXPECT(dlavm_min(x, 2) == (x < 2 ? x : 2) && dlavm_max(x, 2) == (x < 2 ? 2 : x), x, 2);
  }
  static_assert(dlavm_floordiv(-7, 2) == -4 && dlavm_floormod(-7, 2) == 1, "constexpr helpers");
  int thrown = 0;
  try { dlavm::floordiv_checked(5, 0); } catch (const std::domain_error&) { ++thrown; }
  try { dlavm::floormod_checked(5, 0); } catch (const std::domain_error&) { ++thrown; }
  try { dlavm::ceildiv_checked(5, 0); } catch (const std::domain_error&) { ++thrown; }
  try { dlavm::floordiv_checked(lo, -1); } catch (const std::overflow_error&) { ++thrown; }
  EXPECT(thrown == 4, thrown, 4);
  EXPECT(dlavm::floormod_checked(lo, -1) == 0, lo, -1);
  if (failures) {
    std::fprintf(stderr, "sym_rt_selftest: %d failure(s)\n", failures);
    return 1;
  }
  std::printf("sym_rt_selftest: ok\n");
  return 0;
}
