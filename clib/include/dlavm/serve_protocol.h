// Wire constants of the serving protocol (doc/serve.md, "The serving protocol"), spoken by
// dlavm-server. dlavm/serve/protocol.py is the Python definition; this header repeats its numbers
// for C++ (a test compares the two).
//
// Every frame, both directions: u32 len (little-endian; the bytes that follow, 1 .. max_frame),
// u8 type, len - 1 bytes of payload (a UTF-8 JSON object, empty, or TOKEN's binary head + text).
#pragma once

#include <cstddef>
#include <cstdint>

namespace dlavm {
namespace serve {

constexpr int64_t kProtocolVersion = 1;
constexpr uint32_t kDefaultMaxFrame = 1u << 20;  // bytes after the length field (--max-frame default)
constexpr uint32_t kMinMaxFrame = 4096;          // the smallest --max-frame accepted
constexpr uint32_t kMaxMaxFrame = 1u << 30;      // the largest --max-frame accepted
constexpr int kMaxJsonDepth = 16;                // nesting of a JSON payload (a scalar counts as a level)
constexpr uint64_t kMaxId = 0xFFFFFFFFull;       // request ids and token ids are u32
constexpr uint64_t kMaxSeed = (1ull << 63) - 1;  // a seed is 0 .. 2^63-1
constexpr size_t kMaxStopStrings = 16;           // GENERATE "stop": at most this many strings ...
constexpr size_t kMaxStopBytes = 256;            // ... each of 1 .. this many UTF-8 bytes
constexpr int64_t kDefaultMaxNewTokens = 256;    // (at most the model's max_ctx)
constexpr int kDefaultPort = 7070;               // `dlavm serve`'s port when none is given
constexpr size_t kTokenHeadBytes = 8;            // TOKEN payload: u32 request id, u32 token id, then text
// The environment variable holding the server's shared secret (HELLO's token), read by dlavm-server,
// the gateway and the dlavm commands when no option gives it (a command line is visible to `ps`).
constexpr const char kTokenEnv[] = "DLAVM_SERVE_TOKEN";

enum FrameType : uint8_t {
  HELLO = 1,
  GENERATE = 2,
  CANCEL = 3,
  HEALTH = 4,
  STATS = 5,
  WELCOME = 129,
  TOKEN = 130,
  DONE = 131,
  ERROR = 132,
  HEALTH_OK = 133,
  STATS_OK = 134,
};

// ERROR kinds (doc/serve.md "ERROR kinds"), in the order of dlavm.serve.protocol.ERROR_KINDS.
constexpr const char* kErrorKinds[] = {"bad_frame", "too_large", "unauthorized", "bad_request",
                                       "context",   "busy",      "device",       "internal"};
constexpr size_t kNumErrorKinds = sizeof(kErrorKinds) / sizeof(kErrorKinds[0]);
// DONE stop reasons, in the order of dlavm.serve.protocol.STOP_REASONS.
constexpr const char* kStopReasons[] = {"max_new_tokens", "eos", "stop", "context", "cancelled"};
// HEALTH_OK status values.
constexpr const char* kHealthStatuses[] = {"ok", "device_down"};
// GENERATE's keys (no other key is accepted), in the order of dlavm.serve.protocol.GENERATE_KEYS.
constexpr const char* kGenerateKeys[] = {"id",     "prompt", "prompt_ids", "add_bos", "max_new_tokens", "temperature",
                                         "top_k",  "top_p",  "seed",       "stop",    "eos_ids"};

}  // namespace serve
}  // namespace dlavm
