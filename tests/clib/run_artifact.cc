// A host driver written the way the generated ones are (doc/runtime_cpp.md):
// open the artifact and the device, load weights, patch the dynamic words of
// the AUX stream, run, wait, read the result.
//
//   run_artifact URI DIR OUT NAME=VALUE...
//
// Manifest fields it reads (the artifact schema of doc/backend.md, checked by Artifact::open):
//   "weights":  [{"file", "addr"}]                         blobs to preload
//   "streams":  the first stream's "file", "addr" and "patches" [{"index", "word", "lo", "width", "expr"}],
//               where each patch is a whole word (lo 0, width 32) whose expression is a dim name
//   "entries":  the first entry's first output: the device value its to_host step reads ("addr" and
//               "shape": dim names or integers), read as float16
// Prints "DeviceError KIND: message" and exits 3 when the device refuses, "error: message" and exits 2
// for any other failure (a refused artifact, a patch outside the stream).
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <stdexcept>
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

    for (const dlavm::json::Value& blob : m["weights"].as_array()) {
      dev->write_mem(static_cast<uint64_t>(blob["addr"].as_int()), art.read_file(blob["file"].as_string()));
    }

    const dlavm::json::Value& s = m["streams"].as_object().at(0).second;
    dlavm::Stream stream(art.read_file(s["file"].as_string()));
    for (const dlavm::json::Value& p : s["patches"].as_array()) {
      if (p["lo"].as_int() != 0 || p["width"].as_int() != 32) throw std::runtime_error("only whole-word patches");
      stream.patch(static_cast<size_t>(p["index"].as_int()), static_cast<size_t>(p["word"].as_int()),
                   static_cast<uint32_t>(dims.at(p["expr"].as_string())));
    }
    stream.run(*dev, static_cast<uint64_t>(s["addr"].as_int()));
    dev->wait();

    const dlavm::json::Value& entry = m["entries"].as_object().at(0).second;
    const std::string& result = entry["outputs"][size_t{0}]["value"].as_string();
    const dlavm::json::Value* out = nullptr;  // the device value the to_host step producing `result` reads
    for (const dlavm::json::Value& step : entry["steps"].as_array()) {
      if (step["kind"].as_string() == "to_host" && step["dst"].as_string() == result) {
        out = &entry["values"][step["src"].as_string()];
      }
    }
    if (!out) throw std::runtime_error("no to_host step produces the output " + result);
    size_t nbytes = 2;  // float16
    for (const dlavm::json::Value& d : (*out)["shape"].as_array()) {
      const std::string& e = d.as_string();
      nbytes *= static_cast<size_t>(dims.count(e) ? dims.at(e) : std::stoll(e));
    }
    const std::vector<uint8_t> y = dev->read_mem(static_cast<uint64_t>((*out)["addr"].as_int()), nbytes);
    std::ofstream(argv[3], std::ios::binary).write(reinterpret_cast<const char*>(y.data()),
                                                  static_cast<std::streamsize>(y.size()));
    std::cout << "cycles " << dev->cycles() << "\n";
  } catch (const dlavm::DeviceError& e) {
    std::cout << "DeviceError " << e.kind() << ": " << e.what() << "\n";
    return 3;
  } catch (const std::exception& e) {  // a refused artifact (ArtifactError), a bad index, ...
    std::cout << "error: " << e.what() << "\n";
    return 2;
  }
  return 0;
}
