// Quick checks of the runtime pieces that need no device (run by `make`).
// The exhaustive ones (fp16 vs numpy, artifacts, the socket device) are in
// tests/clib/.
#include <cstdio>
#include <cstdlib>
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

  if (failures) return EXIT_FAILURE;
  std::printf("rt_selftest: ok\n");
  return EXIT_SUCCESS;
}
