// Wire constants of the device socket protocol (doc/socket.md). Shared by the
// C++ client; dlavm/devlink/protocol.py (used by hw_models/server.py and the
// Python client) carries the same numbers (a test compares them).
#pragma once

#include <cstdint>

namespace dlavm {
namespace protocol {

constexpr uint32_t kMagic = 0x4D564C44u;  // "DLVM" little-endian
constexpr uint16_t kVersion = 2;  // 2: BUSY status, per-frame deadline, concurrent clients
constexpr uint32_t kDefaultMaxMessage = 64u << 20;  // bytes after the length field

enum Op : uint8_t {
  HELLO = 1,
  WRITE_REG = 2,
  READ_REG = 3,
  WRITE_MEM = 4,
  READ_MEM = 5,
  WAIT = 6,
  STATS = 7,
  RESET = 8,
  TRACE = 9,
};

enum Status : uint8_t {
  OK = 0,
  DEVICE_ERROR = 1,  // the device refused the operation (address, register, hazard, ...)
  BAD_REQUEST = 2,   // malformed message, unknown op, wrong size, version mismatch
  TIMEOUT = 3,       // WAIT exceeded its timeout
  INTERNAL = 4,      // the server failed unexpectedly (a bug there)
  BUSY = 5,          // the device is taken by other clients; the request did not run (send it again)
};

}  // namespace protocol
}  // namespace dlavm
