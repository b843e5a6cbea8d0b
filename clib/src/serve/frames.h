// Frames of the serving protocol on a socket (doc/serve.md): reading with deadlines, writing with a
// deadline, and the checks every JSON payload passes (UTF-8, one JSON object, nesting, no duplicate key).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>

#include "dlavm/json.h"

namespace dlavm {
namespace serve {

using Clock = std::chrono::steady_clock;

// One frame as it goes on the wire: u32 length, type, payload.
std::string encode_frame(uint8_t type, const std::string& payload);

enum class ReadStatus {
  kOk,
  kClosed,    // the peer closed (or reset) the connection, or `stop` was set
  kTimeout,   // the deadline passed
  kZero,      // a length field of 0 (the body was not read)
  kTooLarge,  // a length field above the limit (the body was not read)
};

struct Frame {
  uint8_t type = 0;
  std::string payload;
  uint32_t length = 0;  // the length field (also set for kZero / kTooLarge)
};

// Wait until `fd` has a byte to read: kOk, kClosed (also when `stop` is set or the peer closed),
// kTimeout at `deadline`.
ReadStatus wait_readable(int fd, Clock::time_point deadline, const std::atomic<bool>& stop);

// Read one frame whose first byte is due now: the whole frame must arrive before `deadline`. A length
// field of 0 or above `max_frame` is reported before any byte of the body is read. The body grows
// with the bytes that arrived, never allocated ahead from the length field alone.
ReadStatus read_frame(int fd, uint32_t max_frame, Clock::time_point deadline, const std::atomic<bool>& stop,
                      Frame& out);

// Send all of `data` before `deadline`; false when the peer is gone or too slow.
bool send_all(int fd, const std::string& data, Clock::time_point deadline);

// True when `s` is well-formed UTF-8 (no overlong form, surrogate or code point above U+10FFFF).
bool valid_utf8(const std::string& s);
// `s` with every byte that does not begin a well-formed sequence replaced by U+FFFD.
std::string utf8_or_replaced(const std::string& s);

// The JSON object of a payload, or false with `err` one line saying why not (not UTF-8, not JSON, a
// duplicate key, not an object, nested deeper than kMaxJsonDepth).
bool parse_object(const std::string& payload, json::Value& out, std::string& err);

// `v` as compact JSON for a message, cut to about `max` bytes (at a character boundary) with "...".
std::string shown(const json::Value& v, size_t max = 60);
// A string quoted and escaped as JSON for a message, cut like shown().
std::string quoted(const std::string& s, size_t max = 60);

}  // namespace serve
}  // namespace dlavm
