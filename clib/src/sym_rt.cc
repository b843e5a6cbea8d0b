// Checked symbolic-integer helpers: the inline ones of dlavm/sym_rt.h plus
// errors that name the operands, for host code that handles untrusted sizes.
#include "dlavm/sym_rt.h"

#include <limits>
#include <stdexcept>
#include <string>

namespace dlavm {
namespace {

void check(const char* op, int64_t a, int64_t b) {
  if (b == 0) {
    throw std::domain_error(std::string(op) + "(" + std::to_string(a) + ", 0): division by zero");
  }
}

bool quotient_overflows(int64_t a, int64_t b) {
  return a == std::numeric_limits<int64_t>::min() && b == -1;
}

}  // namespace

int64_t floordiv_checked(int64_t a, int64_t b) {
  check("floordiv", a, b);
  if (quotient_overflows(a, b)) {
    throw std::overflow_error("floordiv(" + std::to_string(a) + ", -1) overflows int64_t");
  }
  return dlavm_floordiv(a, b);
}

int64_t floormod_checked(int64_t a, int64_t b) {
  check("floormod", a, b);
  return dlavm_floormod(a, b);
}

int64_t ceildiv_checked(int64_t a, int64_t b) {
  check("ceildiv", a, b);
  if (quotient_overflows(a, b)) {
    throw std::overflow_error("ceildiv(" + std::to_string(a) + ", -1) overflows int64_t");
  }
  return dlavm_ceildiv(a, b);
}

}  // namespace dlavm
