// A fake dlavm::Device whose cycle counter runs while the host reads it: every register read
// advances the counter by STEP after returning its half. Usage:
//   fake_counter_device STEP START...   -> per START: "START END VALUE READS" (END: the counter after
//                                          cycles() returned; READS: the registers read, in order)
#include <cstdio>
#include <cstdlib>
#include <string>

#include "dlavm/device.h"

namespace {

class RunningCounterDevice final : public dlavm::Device {
 public:
  RunningCounterDevice(uint64_t start, uint64_t step) : counter_(start), step_(step) {}
  std::string target() const override { return "fake"; }
  void write_reg(uint32_t, uint32_t) override { throw dlavm::DeviceError("UndefinedRegisterError", "read-only fake"); }
  uint32_t read_reg(uint32_t addr) override {
    uint32_t v;
    if (addr == dlavm::reg::CYCLE_LO) {
      v = static_cast<uint32_t>(counter_);
      reads_ += "LO ";
    } else if (addr == dlavm::reg::CYCLE_HI) {
      v = static_cast<uint32_t>(counter_ >> 32);
      reads_ += "HI ";
    } else {
      throw dlavm::DeviceError("UndefinedRegisterError", "register " + std::to_string(addr) + " is not faked");
    }
    counter_ += step_;
    return v;
  }
  void write_mem(uint64_t, const void*, size_t) override {}
  void read_mem(uint64_t, void*, size_t) override {}
  void wait(int64_t) override {}
  std::string stats_json() override { return "{}"; }
  std::string trace_json() override { return "null"; }
  void reset() override { counter_ = 0; }

  uint64_t counter_;
  uint64_t step_;
  std::string reads_;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s STEP START...\n", argv[0]);
    return 2;
  }
  const uint64_t step = std::strtoull(argv[1], nullptr, 0);
  for (int k = 2; k < argc; ++k) {
    const uint64_t start = std::strtoull(argv[k], nullptr, 0);
    RunningCounterDevice dev(start, step);
    const uint64_t value = dev.cycles();
    std::printf("%llu %llu %llu %s\n", static_cast<unsigned long long>(start),
                static_cast<unsigned long long>(dev.counter_), static_cast<unsigned long long>(value),
                dev.reads_.c_str());
  }
  return 0;
}
