// Exact IEEE binary16 <-> binary32 conversions (C++17, header only).
//
// float_to_fp16 rounds to nearest, ties to even, and gives the same bits as
// numpy's float32.astype(float16) for every input: overflow to infinity at
// 65520 and above, gradual underflow to subnormals, NaN kept as NaN with the
// top 10 payload bits (a payload that would vanish becomes 1). fp16_to_float
// is exact (every half is a float). doc/isa.md section 1 fixes these rules.
#pragma once

#include <cstdint>
#include <cstring>

namespace dlavm {

inline float fp16_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1Fu;
  uint32_t mant = h & 0x3FFu;
  uint32_t bits;
  if (exp == 0x1F) {
    bits = sign | 0x7F800000u | (mant << 13);  // inf, NaN with its payload
  } else if (exp != 0) {
    bits = sign | ((exp + 112) << 23) | (mant << 13);
  } else if (mant == 0) {
    bits = sign;  // signed zero
  } else {
    // Subnormal half: normalise; value = mant * 2^-24.
    uint32_t e = 113;
    while (!(mant & 0x400u)) {
      mant <<= 1;
      --e;
    }
    bits = sign | (e << 23) | ((mant & 0x3FFu) << 13);
  }
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

inline uint16_t float_to_fp16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, sizeof x);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  const uint32_t ax = x & 0x7FFFFFFFu;
  if (ax >= 0x7F800000u) {  // inf or NaN
    if (ax == 0x7F800000u) return sign | 0x7C00u;
    uint16_t h = static_cast<uint16_t>(0x7C00u + ((ax & 0x7FFFFFu) >> 13));
    if (h == 0x7C00u) ++h;  // keep it a NaN
    return sign | h;
  }
  if (ax >= 0x477FF000u) return sign | 0x7C00u;  // >= 65520 rounds to infinity
  if (ax <= 0x33000000u) return sign;             // <= 2^-25: ties to even zero
  const uint32_t exp = ax >> 23;
  const uint32_t mant = ax & 0x7FFFFFu;
  if (exp < 113) {
    // Half subnormal: result = round(full * 2^(exp-126)) in units of 2^-24.
    const uint32_t full = mant | 0x800000u;
    const uint32_t shift = 126 - exp;  // 14..24 here
    uint32_t h = full >> shift;
    const uint32_t rem = full & ((1u << shift) - 1);
    const uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (h & 1u))) ++h;  // may carry into the smallest normal
    return sign | static_cast<uint16_t>(h);
  }
  uint32_t h = ((exp - 112) << 10) | (mant >> 13);
  const uint32_t rem = mant & 0x1FFFu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;  // carry into the exponent is correct
  return sign | static_cast<uint16_t>(h);
}

}  // namespace dlavm
