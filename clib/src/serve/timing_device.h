// A Device that forwards every call to another and adds up the wall time spent inside them: the
// server's host overhead is its wall time minus this (doc/serve.md, STATS_OK "host_overhead_ms").
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>

#include "dlavm/device.h"

namespace dlavm {
namespace serve {

class TimingDevice final : public Device {
 public:
  explicit TimingDevice(Device& inner) : inner_(inner) {}

  // Nanoseconds spent in device calls since construction.
  int64_t device_ns() const { return ns_.load(); }

  std::string target() const override { return inner_.target(); }
  void write_reg(uint32_t addr, uint32_t value) override {
    Timer t(ns_);
    inner_.write_reg(addr, value);
  }
  uint32_t read_reg(uint32_t addr) override {
    Timer t(ns_);
    return inner_.read_reg(addr);
  }
  void write_mem(uint64_t addr, const void* data, size_t nbytes) override {
    Timer t(ns_);
    inner_.write_mem(addr, data, nbytes);
  }
  void read_mem(uint64_t addr, void* out, size_t nbytes) override {
    Timer t(ns_);
    inner_.read_mem(addr, out, nbytes);
  }
  void wait(int64_t timeout_cycles = -1) override {
    Timer t(ns_);
    inner_.wait(timeout_cycles);
  }
  std::string stats_json() override {
    Timer t(ns_);
    return inner_.stats_json();
  }
  std::string trace_json() override {
    Timer t(ns_);
    return inner_.trace_json();
  }
  void reset() override {
    Timer t(ns_);
    inner_.reset();
  }
  using Device::read_mem;
  using Device::write_mem;

 private:
  struct Timer {
    explicit Timer(std::atomic<int64_t>& sum) : sum_(sum), start_(std::chrono::steady_clock::now()) {}
    ~Timer() {
      sum_ += std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - start_).count();
    }
    std::atomic<int64_t>& sum_;
    std::chrono::steady_clock::time_point start_;
  };

  Device& inner_;
  std::atomic<int64_t> ns_{0};
};

}  // namespace serve
}  // namespace dlavm
