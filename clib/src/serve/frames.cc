#include "frames.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <algorithm>
#include <cerrno>

#include "dlavm/serve_protocol.h"

namespace dlavm {
namespace serve {
namespace {

// poll() waits at most this long at a time, so that `stop` is seen promptly.
constexpr int kSliceMs = 100;

int ms_until(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  if (left <= 0) return 0;
  return static_cast<int>(std::min<int64_t>(left, kSliceMs));
}

// Read exactly n bytes into p before `deadline`.
ReadStatus read_exact(int fd, char* p, size_t n, Clock::time_point deadline, const std::atomic<bool>& stop) {
  while (n) {
    const ReadStatus w = wait_readable(fd, deadline, stop);
    if (w != ReadStatus::kOk) return w;
    const ssize_t k = ::recv(fd, p, n, MSG_DONTWAIT);
    if (k < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
    if (k <= 0) return ReadStatus::kClosed;
    p += k;
    n -= static_cast<size_t>(k);
  }
  return ReadStatus::kOk;
}

int depth(const json::Value& v, int level) {
  int d = level;
  if (v.is_array()) {
    for (const json::Value& x : v.as_array()) d = std::max(d, depth(x, level + 1));
  } else if (v.is_object()) {
    for (const auto& kv : v.as_object()) d = std::max(d, depth(kv.second, level + 1));
  }
  return d;
}

// Cut `s` to at most `max` bytes at a UTF-8 character boundary, adding "..." when cut.
std::string cut(const std::string& s, size_t max) {
  if (s.size() <= max) return utf8_or_replaced(s);
  size_t n = max;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return utf8_or_replaced(s.substr(0, n)) + "...";
}

}  // namespace

std::string encode_frame(uint8_t type, const std::string& payload) {
  const uint32_t len = static_cast<uint32_t>(1 + payload.size());
  std::string out;
  out.reserve(5 + payload.size());
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((len >> (8 * i)) & 0xFF));
  out.push_back(static_cast<char>(type));
  out += payload;
  return out;
}

ReadStatus wait_readable(int fd, Clock::time_point deadline, const std::atomic<bool>& stop) {
  for (;;) {
    if (stop.load()) return ReadStatus::kClosed;
    pollfd pfd{fd, POLLIN, 0};
    const int ms = ms_until(deadline);
    const int r = ::poll(&pfd, 1, ms);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return ReadStatus::kClosed;
    if (r > 0) {
      if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) return ReadStatus::kOk;  // recv tells EOF from data
      return ReadStatus::kClosed;                                             // POLLNVAL
    }
    if (Clock::now() >= deadline) return ReadStatus::kTimeout;
  }
}

ReadStatus read_frame(int fd, uint32_t max_frame, Clock::time_point deadline, const std::atomic<bool>& stop,
                      Frame& out) {
  unsigned char head[4];
  ReadStatus s = read_exact(fd, reinterpret_cast<char*>(head), 4, deadline, stop);
  if (s != ReadStatus::kOk) return s;
  out.length = static_cast<uint32_t>(head[0]) | static_cast<uint32_t>(head[1]) << 8 |
               static_cast<uint32_t>(head[2]) << 16 | static_cast<uint32_t>(head[3]) << 24;
  if (out.length == 0) return ReadStatus::kZero;
  if (out.length > max_frame) return ReadStatus::kTooLarge;
  char type = 0;
  s = read_exact(fd, &type, 1, deadline, stop);
  if (s != ReadStatus::kOk) return s;
  out.type = static_cast<uint8_t>(type);
  out.payload.clear();
  const size_t want = out.length - 1;
  constexpr size_t kChunk = 64 * 1024;
  while (out.payload.size() < want) {
    const size_t old = out.payload.size();
    const size_t n = std::min(kChunk, want - old);
    out.payload.resize(old + n);
    s = read_exact(fd, &out.payload[old], n, deadline, stop);
    if (s != ReadStatus::kOk) return s;
  }
  return ReadStatus::kOk;
}

bool send_all(int fd, const std::string& data, Clock::time_point deadline) {
  const char* p = data.data();
  size_t n = data.size();
  while (n) {
    const ssize_t k = ::send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (k > 0) {
      p += k;
      n -= static_cast<size_t>(k);
      continue;
    }
    if (k < 0 && errno == EINTR) continue;
    if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (left <= 0) return false;
      pollfd pfd{fd, POLLOUT, 0};
      const int r = ::poll(&pfd, 1, static_cast<int>(std::min<int64_t>(left, 1000)));
      if (r < 0 && errno != EINTR) return false;
      if (r > 0 && (pfd.revents & (POLLERR | POLLHUP | POLLNVAL))) return false;
      continue;
    }
    return false;
  }
  return true;
}

namespace {

// Length of the well-formed UTF-8 sequence at p[i] (no overlong form, surrogate or code point above
// U+10FFFF), 0 if there is none.
size_t utf8_seq(const unsigned char* p, size_t n, size_t i) {
  const unsigned char c = p[i];
  if (c < 0x80) return 1;
  size_t len;
  uint32_t cp;
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2;
    cp = c & 0x1F;
  } else if (c >= 0xE0 && c <= 0xEF) {
    len = 3;
    cp = c & 0x0F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4;
    cp = c & 0x07;
  } else {
    return 0;
  }
  if (i + len > n) return 0;
  for (size_t k = 1; k < len; ++k) {
    if ((p[i + k] & 0xC0) != 0x80) return 0;
    cp = cp << 6 | (p[i + k] & 0x3F);
  }
  if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF))) return 0;
  if (cp >= 0xD800 && cp <= 0xDFFF) return 0;
  return len;
}

}  // namespace

bool valid_utf8(const std::string& s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  for (size_t i = 0; i < s.size();) {
    const size_t k = utf8_seq(p, s.size(), i);
    if (k == 0) return false;
    i += k;
  }
  return true;
}

std::string utf8_or_replaced(const std::string& s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const size_t k = utf8_seq(p, s.size(), i);
    if (k == 0) {
      out += "\xEF\xBF\xBD";
      ++i;
    } else {
      out.append(s, i, k);
      i += k;
    }
  }
  return out;
}

bool parse_object(const std::string& payload, json::Value& out, std::string& err) {
  if (!valid_utf8(payload)) {
    err = "the payload is not UTF-8";
    return false;
  }
  try {
    out = json::parse(payload);
  } catch (const json::ParseError& e) {
    err = std::string("the payload is not JSON: ") + cut(e.what(), 200);
    return false;
  }
  if (!out.is_object()) {
    err = std::string("the payload is a JSON ") + json::type_name(out.type()) + ", not an object";
    return false;
  }
  if (depth(out, 1) > kMaxJsonDepth) {
    err = "the payload nests deeper than " + std::to_string(kMaxJsonDepth) + " levels";
    return false;
  }
  return true;
}

std::string shown(const json::Value& v, size_t max) { return cut(v.dump(), max); }

std::string quoted(const std::string& s, size_t max) { return "\"" + cut(json::escape(s), max) + "\""; }

}  // namespace serve
}  // namespace dlavm
