// Packed AUX instruction streams in host memory (doc/isa.md sections 4, 5.7).
//
// A stream is count x 64-byte entries, each 16 little-endian 32-bit words.
// A driver patches the words that depend on dynamic sizes (entry i, word w:
// OpFormat.field_offset(op, field) / 4 on the Python side), uploads the
// stream to a 64-byte aligned device address and starts the sequencer. Every
// access is bounds-checked against the bytes held: an index from an artifact
// outside the stream is an exception, never a write past the buffer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "dlavm/device.h"

namespace dlavm {

class Stream {
 public:
  // Throws std::invalid_argument unless the size is a multiple of 64 bytes.
  explicit Stream(std::vector<uint8_t> bytes);

  size_t count() const { return bytes_.size() / kInsnBytes; }
  const std::vector<uint8_t>& bytes() const { return bytes_; }
  // Word w (0..15) of entry i; std::out_of_range past the end.
  uint32_t word(size_t entry, size_t w) const;
  void patch(size_t entry, size_t w, uint32_t value);
  // Bits [lo, lo + width) of word w of entry i set to value (which must fit width bits); the other bits
  // kept. std::out_of_range for an entry, word or bit range outside the stream or the word, or a value
  // wider than the field.
  void set_bits(size_t entry, size_t w, unsigned lo, unsigned width, uint64_t value);
  // Entry i becomes a nop keeping its wait mask (bits 8..15 of word 0); std::out_of_range past the end.
  void disable(size_t entry);
  // Entries [lo, hi) copied from `from` (the same stream's unpatched bytes: a loop body restored before it
  // is re-patched); std::out_of_range unless lo <= hi <= both counts.
  void copy_entries(const Stream& from, size_t lo, size_t hi);

  // Copy the stream to device memory at addr (64-byte aligned, else
  // DeviceError kind "UnalignedAccessError").
  void upload(Device& dev, uint64_t addr) const;
  // upload, then start the sequencer on every entry (does not wait).
  void run(Device& dev, uint64_t addr) const;

 private:
  std::vector<uint8_t> bytes_;
};

// Patch word w of entry i of a stream already in device memory at
// stream_addr (one 4-byte write_mem).
void patch_device_word(Device& dev, uint64_t stream_addr, size_t entry, size_t w, uint32_t value);

}  // namespace dlavm
