// Fuzz harness for clib's parsers (driven by bench/fuzz_cpp_parsers.py; built by `make asan`).
//
//   parser_fuzz_harness MODE [WORKDIR] < FRAMES
//
// FRAMES: inputs as `u32 little-endian length` + bytes, until end of input. For each input the
// harness writes one status byte to stdout, unbuffered, so the driver knows which input a crash
// hit: 'A' accepted, 'R' refused with the parser's documented error, 'U' any other exception (its
// message goes to stderr as "UNEXPECTED <index>: ..."): a parser must refuse bad input with its
// own error type, never with std::bad_alloc, std::out_of_range or the like.
//
// MODE:
//   json       dlavm::json::parse, then parse(dump(v)) must dump the same text
//   tokenizer  dlavm::Tokenizer::from_json, then encode/decode/stream a few texts and every id
//   manifest   the input becomes WORKDIR/manifest.json (sealed in manifest.sha256), then
//              dlavm::Artifact::open(WORKDIR) and
//              read_file of every listed file (WORKDIR holds the files of a real artifact)
//   socket     the input is what a device server sends after the client's HELLO request: a
//              server thread on 127.0.0.1 replies with it, while the "sim://" client performs
//              target, read_reg, cycles, read_mem, stats, trace, wait, write_mem and reset
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "dlavm/artifact.h"
#include "dlavm/sha256.h"
#include "dlavm/device.h"
#include "dlavm/json.h"
#include "dlavm/tokenizer.h"

namespace {

bool read_frame(std::string& out) {
  unsigned char len[4];
  if (std::fread(len, 1, 4, stdin) != 4) return false;
  const uint32_t n = static_cast<uint32_t>(len[0]) | static_cast<uint32_t>(len[1]) << 8 |
                     static_cast<uint32_t>(len[2]) << 16 | static_cast<uint32_t>(len[3]) << 24;
  out.resize(n);
  return n == 0 || std::fread(out.data(), 1, n, stdin) == n;
}

void status(char c) {
  while (::write(1, &c, 1) < 0) {
  }
}

// ---- json ------------------------------------------------------------------------------------

void run_json(const std::string& text) {
  const dlavm::json::Value v = dlavm::json::parse(text);
  const std::string once = v.dump();
  if (dlavm::json::parse(once).dump() != once) throw std::logic_error("parse(dump(v)).dump() != dump(v)");
}

// ---- tokenizer -------------------------------------------------------------------------------

void run_tokenizer(const std::string& text) {
  const dlavm::Tokenizer tok = dlavm::Tokenizer::from_json(text, "<fuzz>");
  for (const char* s : {"Hello, world!", "  x\n\ny 12 it's \xF0\x9F\x98\x80", "<s>a</s><unk>", "\xFF\xC3"}) {
    const std::vector<int32_t> ids = tok.encode(s);
    tok.decode(ids);
    tok.decode(ids, false);
    dlavm::TokenizerDecodeStream stream(tok);
    for (int32_t id : ids) stream.step(id);
    stream.flush();
  }
  std::vector<int32_t> all;
  for (size_t id = 0; id < tok.vocab_size(); ++id) {
    all.push_back(static_cast<int32_t>(id));
    tok.token_to_id(tok.id_to_token(static_cast<int32_t>(id)));
  }
  tok.decode(all, false);
}

// ---- manifest --------------------------------------------------------------------------------

void run_manifest(const std::string& text, const std::string& dir) {
  {
    std::ofstream f(dir + "/manifest.json", std::ios::binary | std::ios::trunc);
    f.write(text.data(), static_cast<std::streamsize>(text.size()));
    if (!f) throw std::logic_error("cannot write " + dir + "/manifest.json");
  }
  {  // sealed as the writer seals it, so the input reaches the schema's rules, not only the checksum's
    std::ofstream f(dir + "/" + dlavm::kManifestSum, std::ios::binary | std::ios::trunc);
    f << dlavm::sha256_hex(text.data(), text.size()) << "  manifest.json\n";
    if (!f) throw std::logic_error("cannot write " + dir + "/" + dlavm::kManifestSum);
  }
  const dlavm::Artifact art = dlavm::Artifact::open(dir);
  for (const std::string& rel : art.files()) art.read_file(rel);
}

// ---- socket ----------------------------------------------------------------------------------

// Accepts one connection at a time; answers the client's first request (HELLO) with the current
// script, stops sending, and drains the client's further requests until it hangs up.
class ScriptedServer {
 public:
  ScriptedServer() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd_, 16) != 0 ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0)
      throw std::runtime_error("cannot listen on 127.0.0.1");
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~ScriptedServer() {
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    thread_.join();
  }
  int port() const { return port_; }
  void set_script(std::string s) {
    std::lock_guard<std::mutex> lock(mu_);
    script_ = std::move(s);
  }

 private:
  static bool recv_exact(int c, void* p, size_t n) {
    auto* b = static_cast<uint8_t*>(p);
    while (n) {
      const ssize_t k = ::recv(c, b, n, 0);
      if (k <= 0) return false;
      b += k;
      n -= static_cast<size_t>(k);
    }
    return true;
  }
  void serve() {
    for (;;) {
      const int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) return;  // the listening socket was shut down
      std::string script;
      {
        std::lock_guard<std::mutex> lock(mu_);
        script = script_;
      }
      uint8_t len[4];
      if (recv_exact(c, len, 4)) {
        std::vector<uint8_t> hello(static_cast<size_t>(len[0] | len[1] << 8 | len[2] << 16) | size_t{len[3]} << 24);
        if (hello.size() < 4096 && recv_exact(c, hello.data(), hello.size())) {
          size_t sent = 0;
          while (sent < script.size()) {
            const ssize_t k = ::send(c, script.data() + sent, script.size() - sent, MSG_NOSIGNAL);
            if (k <= 0) break;
            sent += static_cast<size_t>(k);
          }
          ::shutdown(c, SHUT_WR);
          char sink[4096];
          while (::recv(c, sink, sizeof sink, 0) > 0) {
          }
        }
      }
      ::close(c);
    }
  }
  int fd_ = -1;
  int port_ = 0;
  std::mutex mu_;
  std::string script_;
  std::thread thread_;
};

void run_socket(const std::string& script, ScriptedServer& server) {
  server.set_script(script);
  auto dev = dlavm::open_device("sim://127.0.0.1:" + std::to_string(server.port()) + "?timeout_s=5");
  dev->target();
  dev->read_reg(dlavm::reg::STATUS);
  dev->cycles();
  std::vector<uint8_t> buf = dev->read_mem(0x1800000000ull, 24);
  dev->stats_json();
  dev->trace_json();
  dev->wait(100);
  dev->write_mem(0x1800000000ull, buf);
  dev->reset();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: parser_fuzz_harness json|tokenizer|manifest|socket [WORKDIR] < FRAMES\n";
    return 2;
  }
  const std::string mode = argv[1];
  if (mode == "manifest" && argc < 3) {
    std::cerr << "manifest mode needs WORKDIR\n";
    return 2;
  }
  if (mode != "json" && mode != "tokenizer" && mode != "manifest" && mode != "socket") {
    std::cerr << "unknown mode " << mode << "\n";
    return 2;
  }
  std::unique_ptr<ScriptedServer> server;
  if (mode == "socket") server = std::make_unique<ScriptedServer>();
  std::string input;
  for (uint64_t index = 0; read_frame(input); ++index) {
    try {
      if (mode == "json") run_json(input);
      else if (mode == "tokenizer") run_tokenizer(input);
      else if (mode == "manifest") run_manifest(input, argv[2]);
      else run_socket(input, *server);
      status('A');
    } catch (const std::exception& e) {
      // Each reader's own error type is a refusal; anything else escaping it is a finding.
      const bool refused = (mode == "json" && dynamic_cast<const dlavm::json::ParseError*>(&e)) ||
                           (mode == "tokenizer" && dynamic_cast<const dlavm::TokenizerError*>(&e)) ||
                           (mode == "manifest" && dynamic_cast<const dlavm::ArtifactError*>(&e)) ||
                           (mode == "socket" && dynamic_cast<const dlavm::DeviceError*>(&e));
      if (!refused) std::cerr << "UNEXPECTED " << index << ": " << e.what() << "\n";
      status(refused ? 'R' : 'U');
    }
  }
  return 0;
}
