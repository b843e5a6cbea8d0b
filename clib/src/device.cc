// Device conveniences and the URI -> backend registry.
#include "dlavm/device.h"

#include <map>
#include <mutex>

namespace dlavm {

// Defined in socket_device.cc: the "sim" backend.
std::unique_ptr<Device> open_socket_device(const std::string& rest);

std::vector<uint8_t> Device::read_mem(uint64_t addr, size_t nbytes) {
  std::vector<uint8_t> out(nbytes);
  read_mem(addr, out.data(), nbytes);
  return out;
}

void Device::run_stream(uint64_t addr, uint32_t count) {
  write_reg(reg::AUX_BASE_LO, static_cast<uint32_t>(addr & 0xFFFFFFFFu));
  write_reg(reg::AUX_BASE_HI, static_cast<uint32_t>(addr >> 32));
  write_reg(reg::AUX_COUNT, count);
  write_reg(reg::AUX_START, 1);
}

void Device::push(const uint32_t (&words)[kInsnWords]) {
  for (size_t i = 0; i < kInsnWords; ++i) write_reg(reg::INSN0 + 4 * static_cast<uint32_t>(i), words[i]);
  write_reg(reg::INSN_PUSH, 1);
}

uint64_t Device::cycles() {
  // The counter runs between the two 32-bit reads: a carry out of the low half in between would
  // pair an old half with a new one (off by 2^32). Read hi, lo, hi and retry until hi held still.
  uint32_t hi = read_reg(reg::CYCLE_HI);
  for (;;) {
    const uint32_t lo = read_reg(reg::CYCLE_LO);
    const uint32_t hi2 = read_reg(reg::CYCLE_HI);
    if (hi2 == hi) return static_cast<uint64_t>(hi) << 32 | lo;
    hi = hi2;
  }
}

namespace {

std::mutex& registry_mutex() {
  static std::mutex m;
  return m;
}

std::map<std::string, DeviceFactory>& registry() {
  static std::map<std::string, DeviceFactory> r{{"sim", open_socket_device}};
  return r;
}

}  // namespace

void register_device_backend(const std::string& scheme, DeviceFactory factory) {
  std::lock_guard<std::mutex> lock(registry_mutex());
  registry()[scheme] = std::move(factory);
}

std::unique_ptr<Device> open_device(const std::string& uri) {
  const size_t sep = uri.find("://");
  if (sep == std::string::npos || sep == 0) {
    throw DeviceError("UriError", "device URI '" + uri + "' is not SCHEME://... (e.g. sim://127.0.0.1:7000)");
  }
  const std::string scheme = uri.substr(0, sep);
  DeviceFactory factory;
  std::string known;
  {
    std::lock_guard<std::mutex> lock(registry_mutex());
    auto it = registry().find(scheme);
    if (it != registry().end()) factory = it->second;
    for (const auto& kv : registry()) known += (known.empty() ? "" : ", ") + kv.first;
  }
  if (!factory) {
    throw DeviceError("UriError", "unknown device URI scheme '" + scheme + "' in '" + uri + "' (known: " + known + ")");
  }
  return factory(uri.substr(sep + 3));
}

}  // namespace dlavm
