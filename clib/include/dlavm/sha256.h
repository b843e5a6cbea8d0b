// SHA-256 (FIPS 180-4), used to verify artifact files.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace dlavm {

class Sha256 {
 public:
  Sha256();
  // Feed bytes; may be called any number of times before digest().
  void update(const void* data, size_t n);
  // The 32-byte digest of everything fed so far. The object must not be
  // updated afterwards (construct a new one).
  std::array<uint8_t, 32> digest();
  // digest() as 64 lowercase hex characters.
  std::string hex_digest();

 private:
  void block(const uint8_t* p);
  std::array<uint32_t, 8> h_;
  std::array<uint8_t, 64> buf_;
  size_t buf_len_ = 0;
  uint64_t total_ = 0;
};

// Lowercase hex SHA-256 of n bytes.
std::string sha256_hex(const void* data, size_t n);

}  // namespace dlavm
