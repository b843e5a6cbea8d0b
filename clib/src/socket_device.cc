// The "sim://" backend: a client of the device socket protocol
// (doc/socket.md), served by hw_models/server.py.
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>
#include <vector>

#include "dlavm/device.h"
#include "dlavm/protocol.h"

namespace dlavm {
namespace {

using namespace protocol;

void put_u16(std::vector<uint8_t>& b, uint16_t v) {
  for (int i = 0; i < 2; ++i) b.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void put_u32(std::vector<uint8_t>& b, uint32_t v) {
  for (int i = 0; i < 4; ++i) b.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void put_u64(std::vector<uint8_t>& b, uint64_t v) {
  for (int i = 0; i < 8; ++i) b.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
uint64_t get_le(const uint8_t* p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = v << 8 | p[i];
  return v;
}

class SocketDevice final : public Device {
 public:
  SocketDevice(const std::string& host, const std::string& port, int timeout_s) : where_(host + ":" + port) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    const int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &res);
    if (rc != 0) throw DeviceError("ConnectionError", "cannot resolve " + where_ + ": " + gai_strerror(rc));
    std::string last = "no address";
    timeval tv{};
    tv.tv_sec = timeout_s;
    for (addrinfo* ai = res; ai; ai = ai->ai_next) {
      fd_ = ::socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
      if (fd_ < 0) {
        last = std::strerror(errno);
        continue;
      }
      // Set before connect: on Linux SO_SNDTIMEO also bounds connect().
      ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
      if (::connect(fd_, ai->ai_addr, ai->ai_addrlen) == 0) break;
      last = std::strerror(errno);
      ::close(fd_);
      fd_ = -1;
    }
    freeaddrinfo(res);
    if (fd_ < 0) throw DeviceError("ConnectionError", "cannot connect to device server " + where_ + ": " + last);
    const int one = 1;
    // Requests are small and strictly request/reply: Nagle would add 40 ms each.
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    timeout_s_ = timeout_s;
    try {
      hello();
    } catch (...) {
      // A throwing constructor runs no destructor: close here, or a refused handshake leaks the
      // connection and the server waits on it forever.
      if (fd_ >= 0) ::close(fd_);
      fd_ = -1;
      throw;
    }
  }

  ~SocketDevice() override {
    if (fd_ >= 0) ::close(fd_);
  }

  std::string target() const override { return target_; }

  void write_reg(uint32_t addr, uint32_t value) override {
    std::vector<uint8_t> p;
    put_u32(p, addr);
    put_u32(p, value);
    call(WRITE_REG, p);
  }

  uint32_t read_reg(uint32_t addr) override {
    std::vector<uint8_t> p;
    put_u32(p, addr);
    const std::vector<uint8_t> r = call(READ_REG, p);
    expect_size(r, 4, "READ_REG");
    return static_cast<uint32_t>(get_le(r.data(), 4));
  }

  void write_mem(uint64_t addr, const void* data, size_t nbytes) override {
    // Split at the server's message limit (a chunk is one WRITE_MEM).
    const size_t chunk = max_message_ - 9;
    const uint8_t* p = static_cast<const uint8_t*>(data);
    size_t done = 0;
    do {
      const size_t n = nbytes - done < chunk ? nbytes - done : chunk;
      std::vector<uint8_t> head;
      put_u32(head, static_cast<uint32_t>(1 + 8 + n));
      head.push_back(WRITE_MEM);
      put_u64(head, addr + done);
      send_all(head.data(), head.size());
      send_all(p + done, n);
      check_reply(WRITE_MEM, receive());
      done += n;
    } while (done < nbytes);
  }

  void read_mem(uint64_t addr, void* out, size_t nbytes) override {
    const size_t chunk = max_message_ - 1;
    uint8_t* o = static_cast<uint8_t*>(out);
    size_t done = 0;
    do {
      const size_t n = nbytes - done < chunk ? nbytes - done : chunk;
      std::vector<uint8_t> p;
      put_u64(p, addr + done);
      put_u64(p, n);
      const std::vector<uint8_t> r = call(READ_MEM, p);
      expect_size(r, n, "READ_MEM");
      if (n) std::memcpy(o + done, r.data(), n);
      done += n;
    } while (done < nbytes);
  }

  void wait(int64_t timeout_cycles) override {
    std::vector<uint8_t> p;
    put_u64(p, static_cast<uint64_t>(timeout_cycles < 0 ? -1 : timeout_cycles));
    call(WAIT, p);
  }

  std::string stats_json() override {
    const std::vector<uint8_t> r = call(STATS, {});
    return std::string(r.begin(), r.end());
  }

  std::string trace_json() override {
    const std::vector<uint8_t> r = call(TRACE, {});
    return std::string(r.begin(), r.end());
  }

  void reset() override { call(RESET, {}); }

 private:
  void hello() {
    std::vector<uint8_t> p;
    put_u32(p, kMagic);
    put_u16(p, kVersion);
    const std::vector<uint8_t> r = call(HELLO, p);
    if (r.size() < 6) throw DeviceError("ProtocolError", "short HELLO reply from " + where_);
    const uint16_t version = static_cast<uint16_t>(get_le(r.data(), 2));
    if (version != kVersion) {
      throw DeviceError("ProtocolError", "device server " + where_ + " speaks protocol version " +
                                             std::to_string(version) + ", this client " + std::to_string(kVersion));
    }
    const uint32_t server_max = static_cast<uint32_t>(get_le(r.data() + 2, 4));
    if (server_max < 64) throw DeviceError("ProtocolError", "device server " + where_ + " reports a tiny message limit");
    // The negotiated limit is the smaller of the server's and this client's: a server announcing
    // 4 GiB does not make the client allocate 4 GiB for a reply.
    max_message_ = server_max < kDefaultMaxMessage ? server_max : kDefaultMaxMessage;
    target_.assign(r.begin() + 6, r.end());
  }

  [[noreturn]] void lost(const std::string& what) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    throw DeviceError("ConnectionError", "device server " + where_ + ": " + what);
  }

  void send_all(const void* data, size_t n) {
    if (fd_ < 0) lost("connection already closed");
    const uint8_t* p = static_cast<const uint8_t*>(data);
    while (n) {
      const ssize_t k = ::send(fd_, p, n, MSG_NOSIGNAL);
      if (k < 0 && errno == EINTR) continue;
      if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) lost("send timed out after " + std::to_string(timeout_s_) + " s");
      if (k <= 0) lost(std::string("send failed: ") + std::strerror(errno));
      p += k;
      n -= static_cast<size_t>(k);
    }
  }

  using Clock = std::chrono::steady_clock;

  // Read n bytes. Each read waits at most timeout_s (SO_RCVTIMEO); with a deadline, the whole read
  // must also end before it, so a peer trickling one byte at a time cannot hold the client forever.
  void recv_all(void* data, size_t n, const Clock::time_point* deadline = nullptr) {
    uint8_t* p = static_cast<uint8_t*>(data);
    while (n) {
      if (deadline) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(*deadline - Clock::now()).count();
        pollfd pfd{fd_, POLLIN, 0};
        const int ready = left > 0 ? ::poll(&pfd, 1, static_cast<int>(left)) : 0;
        if (ready < 0 && errno == EINTR) continue;
        if (ready == 0) lost("reply not complete within " + std::to_string(timeout_s_) + " s of its first byte");
        if (ready < 0) lost(std::string("poll failed: ") + std::strerror(errno));
      }
      const ssize_t k = ::recv(fd_, p, n, 0);
      if (k < 0 && errno == EINTR) continue;
      if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) lost("no reply within " + std::to_string(timeout_s_) + " s");
      if (k == 0) lost("connection closed by the server");
      if (k < 0) lost(std::string("receive failed: ") + std::strerror(errno));
      p += k;
      n -= static_cast<size_t>(k);
    }
  }

  // One reply: its first byte may take up to timeout_s (the device may be computing); from then on
  // the whole reply must arrive within timeout_s (doc/socket.md, "Clients, deadlines and BUSY").
  std::vector<uint8_t> receive() {
    uint8_t len_bytes[4];
    recv_all(len_bytes, 1);
    const Clock::time_point deadline = Clock::now() + std::chrono::seconds(timeout_s_);
    recv_all(len_bytes + 1, 3, &deadline);
    const uint32_t len = static_cast<uint32_t>(get_le(len_bytes, 4));
    if (len == 0 || len > max_message_)
      lost("reply length " + std::to_string(len) + " is outside 1.." + std::to_string(max_message_) +
           " (the negotiated message limit); refusing to read it");
    std::vector<uint8_t> body(len);
    recv_all(body.data(), len, &deadline);
    return body;
  }

  // Throw the error a non-OK reply carries; return the payload of an OK one.
  std::vector<uint8_t> check_reply(uint8_t op, std::vector<uint8_t> body) {
    const uint8_t status = body[0];
    if (status == OK) return std::vector<uint8_t>(body.begin() + 1, body.end());
    std::string kind = "DeviceError", message;
    if (body.size() >= 3) {
      const size_t klen = static_cast<size_t>(get_le(body.data() + 1, 2));
      if (3 + klen <= body.size()) {
        kind.assign(body.begin() + 3, body.begin() + 3 + klen);
        message.assign(body.begin() + 3 + klen, body.end());
      }
    }
    if (message.empty()) message = "request " + std::to_string(op) + " failed with status " + std::to_string(status);
    throw DeviceError(kind, message);
  }

  std::vector<uint8_t> call(uint8_t op, const std::vector<uint8_t>& payload) {
    std::vector<uint8_t> msg;
    msg.reserve(5 + payload.size());
    put_u32(msg, static_cast<uint32_t>(1 + payload.size()));
    msg.push_back(op);
    msg.insert(msg.end(), payload.begin(), payload.end());
    send_all(msg.data(), msg.size());
    return check_reply(op, receive());
  }

  void expect_size(const std::vector<uint8_t>& r, size_t n, const char* what) {
    if (r.size() != n) {
      lost(std::string(what) + " reply has " + std::to_string(r.size()) + " bytes, expected " + std::to_string(n));
    }
  }

  std::string where_;
  std::string target_;
  int fd_ = -1;
  int timeout_s_ = 600;
  uint32_t max_message_ = kDefaultMaxMessage;
};

}  // namespace

// rest: "HOST:PORT[?timeout_s=N]"; HOST may be "[v6addr]".
std::unique_ptr<Device> open_socket_device(const std::string& rest) {
  const std::string uri = "sim://" + rest;
  std::string hostport = rest, query;
  const size_t q = rest.find('?');
  if (q != std::string::npos) {
    hostport = rest.substr(0, q);
    query = rest.substr(q + 1);
  }
  int timeout_s = 600;
  if (!query.empty()) {
    const std::string key = "timeout_s=";
    if (query.compare(0, key.size(), key) != 0 || query.size() == key.size() ||
        query.find_first_not_of("0123456789", key.size()) != std::string::npos || query.size() - key.size() > 6) {
      throw DeviceError("UriError", "device URI '" + uri + "': the only option is timeout_s=SECONDS");
    }
    timeout_s = std::stoi(query.substr(key.size()));
  }
  std::string host, port;
  if (!hostport.empty() && hostport[0] == '[') {
    const size_t close = hostport.find(']');
    if (close == std::string::npos || close + 1 >= hostport.size() || hostport[close + 1] != ':') {
      throw DeviceError("UriError", "device URI '" + uri + "' is not sim://HOST:PORT");
    }
    host = hostport.substr(1, close - 1);
    port = hostport.substr(close + 2);
  } else {
    const size_t colon = hostport.rfind(':');
    if (colon == std::string::npos) throw DeviceError("UriError", "device URI '" + uri + "' is not sim://HOST:PORT");
    host = hostport.substr(0, colon);
    port = hostport.substr(colon + 1);
  }
  if (host.empty() || port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos ||
      std::stoi(port) == 0 || std::stoi(port) > 65535) {
    throw DeviceError("UriError", "device URI '" + uri + "' is not sim://HOST:PORT with a port in 1..65535");
  }
  return std::make_unique<SocketDevice>(host, port, timeout_s);
}

}  // namespace dlavm
