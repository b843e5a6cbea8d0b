// The device HAL of the C++ runtime: one accelerator seen from the host.
//
// The same operations as the Python dlavm.devlink.hal.DeviceHAL: 32-bit host
// registers (doc/isa.md section 3), device memory copies, AUX streams and
// wait. Backends are picked by URI (open_device): "sim://HOST:PORT" talks to
// a simulator server (hw_models.server, protocol in doc/socket.md); other
// schemes (a "board://" driver) register a factory with
// register_device_backend. Every failure is a DeviceError.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace dlavm {

// A device operation failed. kind() names the cause as the device reported
// it (the simulator's exception class, e.g. "AddressError", "HazardError",
// "TimeoutError"; "ConnectionError" / "ProtocolError" for transport
// failures, "UriError" for a bad URI); what() is the message.
class DeviceError : public std::runtime_error {
 public:
  DeviceError(std::string kind, const std::string& message)
      : std::runtime_error(message), kind_(std::move(kind)) {}
  const std::string& kind() const { return kind_; }

 private:
  std::string kind_;
};

// Host register byte addresses (doc/isa.md section 3; a test keeps them equal
// to dlavm.target.isa).
namespace reg {
constexpr uint32_t ID = 0x000;
constexpr uint32_t VERSION = 0x004;
constexpr uint32_t STATUS = 0x008;
constexpr uint32_t CYCLE_LO = 0x00C;
constexpr uint32_t CYCLE_HI = 0x010;
constexpr uint32_t RESULT_IDX = 0x014;
constexpr uint32_t RESULT_VAL = 0x018;
constexpr uint32_t RETIRED = 0x01C;
constexpr uint32_t INSN0 = 0x040;  // INSNi at INSN0 + 4*i, i < 16
constexpr uint32_t INSN_PUSH = 0x080;
constexpr uint32_t AUX_BASE_LO = 0x0A0;
constexpr uint32_t AUX_BASE_HI = 0x0A4;
constexpr uint32_t AUX_COUNT = 0x0A8;
constexpr uint32_t AUX_START = 0x0AC;
}  // namespace reg

constexpr uint32_t kDeviceId = 0xD1A70001u;
constexpr uint32_t kIsaVersion = 0x00010001u;  // 1.1: eltwise 'period' (broadcast)
constexpr size_t kInsnWords = 16;
constexpr size_t kInsnBytes = kInsnWords * 4;

class Device {
 public:
  virtual ~Device() = default;
  Device() = default;
  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;

  // The target the device implements (e.g. "vcu128"), from the handshake.
  virtual std::string target() const = 0;

  // --- primitives: each is one host operation, performed in call order.
  virtual void write_reg(uint32_t addr, uint32_t value) = 0;
  virtual uint32_t read_reg(uint32_t addr) = 0;
  virtual void write_mem(uint64_t addr, const void* data, size_t nbytes) = 0;
  virtual void read_mem(uint64_t addr, void* out, size_t nbytes) = 0;
  // Block until every issued instruction has completed. timeout_cycles < 0:
  // no limit; otherwise a DeviceError of kind "TimeoutError" when the device
  // would stay busy longer.
  virtual void wait(int64_t timeout_cycles = -1) = 0;
  // Device counters as JSON text (keys: doc/simulator.md, "Outputs").
  virtual std::string stats_json() = 0;
  // The Chrome/Perfetto trace of the unit timelines as JSON text ("null"
  // when the backend records none).
  virtual std::string trace_json() = 0;
  // Return the device to its power-on state (memory cleared, counters 0).
  virtual void reset() = 0;

  // --- conveniences, defined once in terms of the primitives.
  void write_mem(uint64_t addr, const std::vector<uint8_t>& data) { write_mem(addr, data.data(), data.size()); }
  std::vector<uint8_t> read_mem(uint64_t addr, size_t nbytes);
  // Start the AUX sequencer on `count` instructions at `addr` (doc/isa.md
  // section 5.7): writes AUX_BASE_LO, AUX_BASE_HI, AUX_COUNT, AUX_START.
  void run_stream(uint64_t addr, uint32_t count);
  // Issue one instruction through INSN0..15 + INSN_PUSH (17 register writes).
  void push(const uint32_t (&words)[kInsnWords]);
  // The device cycle counter: CYCLE_HI, CYCLE_LO, CYCLE_HI, repeated while the high half changed
  // (a carry between the two halves), so the value is one the counter really held.
  uint64_t cycles();
};

// Refuses a device that implements another target than `expected` (the target an artifact was
// compiled for, named in its manifest): its memory map, units and cycle counts are another device's,
// so the results would be wrong, not merely slow. Throws a DeviceError of kind "TargetMismatch" naming
// both targets. Generated drivers call it right after the handshake, before anything is written.
inline void require_target(const Device& dev, const std::string& expected) {
  const std::string got = dev.target();
  if (got != expected) {
    throw DeviceError("TargetMismatch", "the artifact was compiled for target '" + expected +
                                            "' but the device implements '" + got + "'");
  }
}

// Open a device by URI:
//   sim://HOST:PORT[?timeout_s=N]   simulator server (doc/socket.md); N is the
//                                   per-call socket timeout (default 600 s).
// Throws DeviceError (kind "UriError" for a malformed or unknown URI,
// "ConnectionError" when it cannot connect, "ProtocolError" on a bad handshake).
std::unique_ptr<Device> open_device(const std::string& uri);

// A backend factory receives the URI without "SCHEME://".
using DeviceFactory = std::function<std::unique_ptr<Device>(const std::string& rest)>;
// Register (or replace) the backend for `scheme` (e.g. "board").
void register_device_backend(const std::string& scheme, DeviceFactory factory);

}  // namespace dlavm
