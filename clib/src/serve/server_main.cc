// dlavm-server: the model server of doc/serve.md for the one artifact whose generated driver is linked
// in (`make -C clib server ARTIFACT=DIR OUT=FILE`). Every failure before it listens is one line
// "error: ..." on stderr and exit code 2. The shared secret comes from --token-file FILE, --token SECRET
// or the environment ($DLAVM_SERVE_TOKEN), so that it need not be on the command line.
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <vector>

#include "dlavm/serve_protocol.h"
#include "server.h"

int main(int argc, char** argv) {
  try {
    bool help = false;
    const dlavm::serve::ServerConfig cfg =
        dlavm::serve::parse_args(std::vector<std::string>(argv + 1, argv + argc), help,
                                 std::getenv(dlavm::serve::kTokenEnv));
    if (help) {
      std::fputs(dlavm::serve::usage().c_str(), stdout);
      return 0;
    }
    return dlavm::serve::run_server(cfg);
  } catch (const std::exception& e) {
    std::string msg = e.what();
    for (char& c : msg)
      if (c == '\n' || c == '\r') c = ' ';
    std::fprintf(stderr, "error: %s\n", msg.c_str());
    return 2;
  } catch (...) {
    std::fprintf(stderr, "error: an unknown failure before listening\n");
    return 2;
  }
}
