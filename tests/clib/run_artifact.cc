// A host driver written the way the generated ones are (doc/runtime_cpp.md):
// open the artifact and the device, load weights, patch the dynamic words of
// the AUX stream, run, wait, read the result.
//
//   run_artifact URI DIR OUT NAME=VALUE...
//
// Manifest fields it reads (the test's own small schema):
//   "loads":   [{"file", "addr"}]                     blobs to preload
//   "stream":  {"file", "addr"}                       the AUX stream
//   "patches": [{"entry", "word", "dim"}]             word := value of dim
//   "output":  {"addr", "bytes_per", "dim"}           read bytes_per * dim bytes
// Prints "DeviceError KIND: message" and exits 3 when the device refuses.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <string>

#include "dlavm/artifact.h"
#include "dlavm/device.h"
#include "dlavm/stream.h"

int main(int argc, char** argv) {
  if (argc < 4) {
    std::cerr << "usage: run_artifact URI DIR OUT NAME=VALUE...\n";
    return 64;
  }
  std::map<std::string, int64_t> dims;
  for (int i = 4; i < argc; ++i) {
    const std::string kv = argv[i];
    const size_t eq = kv.find('=');
    dims[kv.substr(0, eq)] = std::stoll(kv.substr(eq + 1));
  }
  try {
    const dlavm::Artifact art = dlavm::Artifact::open(argv[2]);
    const dlavm::json::Value& m = art.manifest();
    auto dev = dlavm::open_device(argv[1]);

    for (const dlavm::json::Value& load : m["loads"].as_array()) {
      dev->write_mem(static_cast<uint64_t>(load["addr"].as_int()), art.read_file(load["file"].as_string()));
    }

    dlavm::Stream stream(art.read_file(m["stream"]["file"].as_string()));
    for (const dlavm::json::Value& p : m["patches"].as_array()) {
      stream.patch(static_cast<size_t>(p["entry"].as_int()), static_cast<size_t>(p["word"].as_int()),
                   static_cast<uint32_t>(dims.at(p["dim"].as_string())));
    }
    stream.run(*dev, static_cast<uint64_t>(m["stream"]["addr"].as_int()));
    dev->wait();

    const dlavm::json::Value& out = m["output"];
    const size_t nbytes = static_cast<size_t>(out["bytes_per"].as_int() * dims.at(out["dim"].as_string()));
    const std::vector<uint8_t> y = dev->read_mem(static_cast<uint64_t>(out["addr"].as_int()), nbytes);
    std::ofstream(argv[3], std::ios::binary).write(reinterpret_cast<const char*>(y.data()),
                                                  static_cast<std::streamsize>(y.size()));
    std::cout << "cycles " << dev->cycles() << "\n";
  } catch (const dlavm::DeviceError& e) {
    std::cout << "DeviceError " << e.kind() << ": " << e.what() << "\n";
    return 3;
  }
  return 0;
}
