#include "dlavm/stream.h"

#include <algorithm>
#include <cstddef>
#include <stdexcept>
#include <string>

namespace dlavm {
namespace {

size_t offset_of(size_t count, size_t entry, size_t w) {
  if (entry >= count || w >= kInsnWords) {
    throw std::out_of_range("stream word (entry " + std::to_string(entry) + ", word " + std::to_string(w) +
                            ") is outside a stream of " + std::to_string(count) + " entries x 16 words");
  }
  return entry * kInsnBytes + 4 * w;
}

}  // namespace

Stream::Stream(std::vector<uint8_t> bytes) : bytes_(std::move(bytes)) {
  if (bytes_.size() % kInsnBytes) {
    throw std::invalid_argument("a stream is a whole number of 64-byte entries, got " + std::to_string(bytes_.size()) +
                                " bytes");
  }
}

uint32_t Stream::word(size_t entry, size_t w) const {
  const uint8_t* p = bytes_.data() + offset_of(count(), entry, w);
  return static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8 | static_cast<uint32_t>(p[2]) << 16 |
         static_cast<uint32_t>(p[3]) << 24;
}

void Stream::patch(size_t entry, size_t w, uint32_t value) {
  uint8_t* p = bytes_.data() + offset_of(count(), entry, w);
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(value >> (8 * i));
}

void Stream::set_bits(size_t entry, size_t w, unsigned lo, unsigned width, uint64_t value) {
  if (width < 1 || width > 32 || lo > 32 - width) {
    throw std::out_of_range("bits [" + std::to_string(lo) + ", " + std::to_string(uint64_t{lo} + width) +
                            ") are not inside a 32-bit word");
  }
  const uint64_t mask = (uint64_t{1} << width) - 1;
  if (value > mask) {
    throw std::out_of_range("value " + std::to_string(value) + " does not fit " + std::to_string(width) + " bits");
  }
  const uint32_t old = word(entry, w);  // checks entry and w
  patch(entry, w, static_cast<uint32_t>((old & ~(mask << lo)) | (value << lo)));
}

void Stream::disable(size_t entry) {
  const uint32_t wait = word(entry, 0) & 0xFF00u;  // checks entry
  for (size_t w = 0; w < kInsnWords; ++w) patch(entry, w, w == 0 ? wait : 0);
}

void Stream::copy_entries(const Stream& from, size_t lo, size_t hi) {
  if (lo > hi || hi > count() || hi > from.count()) {
    throw std::out_of_range("stream entries [" + std::to_string(lo) + ", " + std::to_string(hi) +
                            ") outside a stream of " + std::to_string(count()) + " entries");
  }
  std::copy(from.bytes_.begin() + static_cast<std::ptrdiff_t>(lo * kInsnBytes),
            from.bytes_.begin() + static_cast<std::ptrdiff_t>(hi * kInsnBytes),
            bytes_.begin() + static_cast<std::ptrdiff_t>(lo * kInsnBytes));
}

void Stream::upload(Device& dev, uint64_t addr) const {
  if (addr % kInsnBytes) {
    throw DeviceError("UnalignedAccessError", "AUX stream address " + std::to_string(addr) + " is not 64-byte aligned");
  }
  dev.write_mem(addr, bytes_);
}

void Stream::run(Device& dev, uint64_t addr) const {
  upload(dev, addr);
  dev.run_stream(addr, static_cast<uint32_t>(count()));
}

void patch_device_word(Device& dev, uint64_t stream_addr, size_t entry, size_t w, uint32_t value) {
  if (w >= kInsnWords) throw std::out_of_range("instruction word " + std::to_string(w) + " is not in 0..15");
  const uint8_t b[4] = {static_cast<uint8_t>(value), static_cast<uint8_t>(value >> 8), static_cast<uint8_t>(value >> 16),
                        static_cast<uint8_t>(value >> 24)};
  dev.write_mem(stream_addr + entry * kInsnBytes + 4 * w, b, 4);
}

}  // namespace dlavm
