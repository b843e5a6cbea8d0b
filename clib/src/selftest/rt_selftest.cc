// Quick checks of the runtime pieces that need no device (run by `make`).
// The exhaustive ones (fp16 vs numpy, artifacts, the socket device) are in
// tests/clib/.
#include <cstdio>
#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "dlavm/fp16.h"
#include "dlavm/json.h"
#include "dlavm/sha256.h"
#include "dlavm/stream.h"

namespace {

int failures = 0;

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "FAIL: %s\n", what);
    ++failures;
  }
}

}  // namespace

int main() {
  check(dlavm::sha256_hex("", 0) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "sha256('')");
  check(dlavm::sha256_hex("abc", 3) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", "sha256(abc)");

  check(dlavm::float_to_fp16(1.0f) == 0x3C00, "fp16(1)");
  check(dlavm::float_to_fp16(65520.0f) == 0x7C00, "fp16(65520) = inf");
  check(dlavm::fp16_to_float(0x0001) == 5.960464477539063e-08f, "smallest subnormal");

  const dlavm::json::Value v = dlavm::json::parse(R"({"a": [1, -2.5, "x\u00e9"], "b": null})");
  check(v["a"][0].as_int() == 1 && v["a"][1].as_double() == -2.5 && v["a"][2].as_string() == "x\xc3\xa9", "json");
  check(v["b"].is_null() && v.size() == 2, "json null");
  try {
    dlavm::json::parse("[1,]");
    check(false, "json error");
  } catch (const dlavm::json::ParseError& e) {
    check(e.offset() == 3, "json error offset");
  }

  dlavm::Stream s(std::vector<uint8_t>(128, 0));
  s.patch(1, 5, 0xA1B2C3D4u);
  check(s.count() == 2 && s.word(1, 5) == 0xA1B2C3D4u && s.bytes()[64 + 20] == 0xD4, "stream patch");
  s.set_bits(1, 5, 8, 8, 0x55);
  check(s.word(1, 5) == 0xA1B255D4u, "stream set_bits keeps the other bits");
  s.patch(0, 0, 0x0000A310u);  // mvm with wait bits 0xA3
  s.patch(0, 7, 9);
  s.disable(0);
  check(s.word(0, 0) == 0x0000A300u && s.word(0, 7) == 0, "stream disable keeps the wait mask only");
  // An index from an artifact outside the stream, word or field: an exception, never a write past the buffer.
  const auto refused = [&](auto&& call) {
    try {
      call();
    } catch (const std::out_of_range&) {
      return true;
    }
    return false;
  };
  check(refused([&] { s.set_bits(2, 0, 0, 8, 1); }), "set_bits past the last entry");
  check(refused([&] { s.set_bits(0, 16, 0, 8, 1); }), "set_bits past the last word");
  check(refused([&] { s.set_bits(0, 1, 20, 16, 1); }), "set_bits past bit 31");
  check(refused([&] { s.set_bits(0, 1, 0, 0, 0); }), "set_bits of no bits");
  check(refused([&] { s.set_bits(0, 1, 0, 4, 16); }), "set_bits of a value wider than the field");
  check(refused([&] { s.disable(2); }), "disable past the last entry");
  check(refused([&] { s.disable(SIZE_MAX / 64 + 1); }), "disable of an entry whose offset wraps");
  check(s.word(1, 5) == 0xA1B255D4u && s.bytes().size() == 128, "refused calls change nothing");

  if (failures) return EXIT_FAILURE;
  std::printf("rt_selftest: ok\n");
  return EXIT_SUCCESS;
}
