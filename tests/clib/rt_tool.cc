// Test tool for tests/clib: one subcommand per runtime piece, so pytest can
// compare the C++ runtime with numpy, hashlib, json and the simulator.
//
//   fp16-to-float OUT            all 65536 halves -> float32 bits (binary, LE)
//   float-to-fp16 IN OUT         float32 bits (binary) -> fp16 bits
//   sha256 FILE...               one hex digest per line
//   json FILE                    the parsed value's dump(), or "ParseError OFFSET: message" (exit 2)
//   artifact DIR [REL OUT]       verify; list files (or copy REL to OUT), or "ArtifactError: message" (exit 2)
//   artifact-reread DIR REL OUT  verify, print "opened", wait for a line on stdin, then copy REL to OUT
//   artifact-expect DIR JSON     verify, then Artifact::expect(JSON): "ok" or "ArtifactError: message" (exit 2)
//   constants                    register addresses and protocol numbers, "NAME VALUE" per line
//   device URI read ADDR N | write-reg ADDR VALUE | patch-word STREAM ENTRY WORD VALUE | target
//                                one device call; "DeviceError KIND: message" (exit 3) on failure
#include <cinttypes>
#include <cstring>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

#include "dlavm/artifact.h"
#include "dlavm/device.h"
#include "dlavm/fp16.h"
#include "dlavm/json.h"
#include "dlavm/protocol.h"
#include "dlavm/sha256.h"
#include "dlavm/stream.h"

namespace {

std::vector<uint8_t> slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void spit(const std::string& path, const void* data, size_t n) {
  std::ofstream out(path, std::ios::binary);
  out.write(static_cast<const char*>(data), static_cast<std::streamsize>(n));
  if (!out) throw std::runtime_error("cannot write " + path);
}

int usage() {
  std::cerr << "usage: rt_tool fp16-to-float|float-to-fp16|sha256|json|artifact|constants|device ...\n";
  return 64;
}

int device_cmd(int argc, char** argv) {
  if (argc < 4) return usage();
  try {
    auto dev = dlavm::open_device(argv[2]);
    const std::string cmd = argv[3];
    if (cmd == "target") {
      std::cout << dev->target() << "\n";
    } else if (cmd == "read" && argc == 6) {
      const auto bytes = dev->read_mem(std::stoull(argv[4], nullptr, 0), std::stoull(argv[5], nullptr, 0));
      for (uint8_t b : bytes) std::printf("%02x", b);
      std::printf("\n");
    } else if (cmd == "patch-word" && argc == 8) {
      dlavm::patch_device_word(*dev, std::stoull(argv[4], nullptr, 0), std::stoul(argv[5]), std::stoul(argv[6]),
                               static_cast<uint32_t>(std::stoul(argv[7], nullptr, 0)));
      std::cout << "ok\n";
    } else if (cmd == "write-reg" && argc == 6) {
      dev->write_reg(static_cast<uint32_t>(std::stoul(argv[4], nullptr, 0)),
                     static_cast<uint32_t>(std::stoul(argv[5], nullptr, 0)));
      std::cout << "ok\n";
    } else {
      return usage();
    }
  } catch (const dlavm::DeviceError& e) {
    std::cout << "DeviceError " << e.kind() << ": " << e.what() << "\n";
    return 3;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage();
  const std::string cmd = argv[1];
  if (cmd == "fp16-to-float" && argc == 3) {
    std::vector<float> out(65536);
    for (uint32_t h = 0; h < 65536; ++h) out[h] = dlavm::fp16_to_float(static_cast<uint16_t>(h));
    spit(argv[2], out.data(), out.size() * sizeof(float));
  } else if (cmd == "float-to-fp16" && argc == 4) {
    const std::vector<uint8_t> raw = slurp(argv[2]);
    std::vector<uint16_t> out(raw.size() / 4);
    for (size_t i = 0; i < out.size(); ++i) {
      float f;
      std::memcpy(&f, raw.data() + 4 * i, 4);
      out[i] = dlavm::float_to_fp16(f);
    }
    spit(argv[3], out.data(), out.size() * 2);
  } else if (cmd == "sha256") {
    for (int i = 2; i < argc; ++i) {
      const std::vector<uint8_t> raw = slurp(argv[i]);
      std::cout << dlavm::sha256_hex(raw.data(), raw.size()) << "\n";
    }
  } else if (cmd == "json" && argc == 3) {
    const std::vector<uint8_t> raw = slurp(argv[2]);
    try {
      std::cout << dlavm::json::parse(std::string(raw.begin(), raw.end())).dump() << "\n";
    } catch (const dlavm::json::ParseError& e) {
      std::cout << "ParseError " << e.offset() << ": " << e.what() << "\n";
      return 2;
    }
  } else if (cmd == "artifact" && (argc == 3 || argc == 5)) {
    try {
      const dlavm::Artifact a = dlavm::Artifact::open(argv[2]);
      if (argc == 5) {
        const std::vector<uint8_t> bytes = a.read_file(argv[3]);
        spit(argv[4], bytes.data(), bytes.size());
      } else {
        std::cout << "ok " << a.manifest().at("format").as_string() << "\n";
        for (const std::string& f : a.files()) std::cout << f << "\n";
      }
    } catch (const dlavm::ArtifactError& e) {
      std::cout << "ArtifactError: " << e.what() << "\n";
      return 2;
    }
  } else if (cmd == "artifact-reread" && argc == 5) {
    // open, say so, wait for a line on stdin (the test changes a file meanwhile), then read REL
    try {
      const dlavm::Artifact a = dlavm::Artifact::open(argv[2]);
      std::cout << "opened" << std::endl;
      std::string line;
      std::getline(std::cin, line);
      const std::vector<uint8_t> bytes = a.read_file(argv[3]);
      spit(argv[4], bytes.data(), bytes.size());
      std::cout << "read " << bytes.size() << "\n";
    } catch (const dlavm::ArtifactError& e) {
      std::cout << "ArtifactError: " << e.what() << "\n";
      return 2;
    }
  } else if (cmd == "artifact-expect" && argc == 4) {
    try {
      const dlavm::Artifact a = dlavm::Artifact::open(argv[2]);
      a.expect(dlavm::json::parse(argv[3]), "this tool");
      std::cout << "ok\n";
    } catch (const dlavm::ArtifactError& e) {
      std::cout << "ArtifactError: " << e.what() << "\n";
      return 2;
    }
  } else if (cmd == "constants") {
    namespace r = dlavm::reg;
    namespace p = dlavm::protocol;
    const std::pair<const char*, uint64_t> rows[] = {
        {"ID", r::ID}, {"VERSION", r::VERSION}, {"STATUS", r::STATUS}, {"CYCLE_LO", r::CYCLE_LO},
        {"CYCLE_HI", r::CYCLE_HI}, {"RESULT_IDX", r::RESULT_IDX}, {"RESULT_VAL", r::RESULT_VAL},
        {"RETIRED", r::RETIRED}, {"INSN0", r::INSN0}, {"INSN_PUSH", r::INSN_PUSH},
        {"AUX_BASE_LO", r::AUX_BASE_LO}, {"AUX_BASE_HI", r::AUX_BASE_HI}, {"AUX_COUNT", r::AUX_COUNT},
        {"AUX_START", r::AUX_START}, {"DEVICE_ID", dlavm::kDeviceId}, {"ISA_VERSION", dlavm::kIsaVersion},
        {"INSN_BYTES", dlavm::kInsnBytes}, {"MAGIC", p::kMagic}, {"PROTOCOL_VERSION", p::kVersion},
        {"DEFAULT_MAX_MESSAGE", p::kDefaultMaxMessage}, {"op.HELLO", p::HELLO}, {"op.WRITE_REG", p::WRITE_REG},
        {"op.READ_REG", p::READ_REG}, {"op.WRITE_MEM", p::WRITE_MEM}, {"op.READ_MEM", p::READ_MEM},
        {"op.WAIT", p::WAIT}, {"op.STATS", p::STATS}, {"op.RESET", p::RESET}, {"op.TRACE", p::TRACE},
        {"status.OK", p::OK}, {"status.DEVICE_ERROR", p::DEVICE_ERROR}, {"status.BAD_REQUEST", p::BAD_REQUEST},
        {"status.TIMEOUT", p::TIMEOUT}, {"status.INTERNAL", p::INTERNAL},
        {"status.BUSY", p::BUSY}};
    for (const auto& row : rows) std::printf("%s %" PRIu64 "\n", row.first, row.second);
  } else if (cmd == "device") {
    return device_cmd(argc, argv);
  } else {
    return usage();
  }
  return 0;
}
