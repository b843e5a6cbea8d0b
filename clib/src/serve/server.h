// dlavm-server (doc/serve.md): one compiled LLM artifact, one device, clients over TCP speaking the
// serving protocol. The model-specific part is the artifact's generated driver, linked in: it defines
// dlavm::make_llm_model (dlavm/llm.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace dlavm {
namespace serve {

struct ServerConfig {
  std::string artifact;
  std::string device;
  std::string host = "127.0.0.1";
  int port = 0;
  std::string port_file;
  std::string token;  // empty: none (--token-file, --token or $DLAVM_SERVE_TOKEN)
  int64_t max_queue = 64;
  int64_t max_clients = 64;
  uint32_t max_frame = 1u << 20;
  double frame_timeout_s = 10;
  double idle_timeout_s = 600;
  double send_timeout_s = 10;
};

// A refused command line or a failure before listening: one line, exit code 2.
class StartupError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The usage text (--help).
std::string usage();

// The largest --token-file accepted (bytes).
constexpr size_t kMaxTokenFileBytes = 4096;

// The options after the program name; throws StartupError naming the option and the rule. `help` is
// set (and nothing else checked) for -h / --help. The token is read from --token-file (which it reads
// here), else --token, else `env_token` (the value of $DLAVM_SERVE_TOKEN, kTokenEnv; null or empty:
// none); --token and --token-file together are refused.
ServerConfig parse_args(const std::vector<std::string>& args, bool& help, const char* env_token);

// Open the artifact, the device and the tokenizer, upload the weights, listen, and serve until
// SIGINT or SIGTERM; then returns 0. Throws (StartupError, or the runtime's errors) on any failure
// before it listens.
int run_server(const ServerConfig& cfg);

}  // namespace serve
}  // namespace dlavm
