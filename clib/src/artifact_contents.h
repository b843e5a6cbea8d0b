// The checks of an artifact's contents after its manifest's schema (dlavm/artifact/directory.py), internal
// to clib (artifact.cc uses them): the manifest's own checksum, the size each listed file must have, its
// sha256, and the patch fields against the instructions they patch. Refusals are ArtifactErrors of one line
// "artifact DIR: ..." with the Python reader's messages.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "artifact_files.h"
#include "dlavm/json.h"

namespace dlavm {
namespace artifact_contents {

constexpr int64_t kInsnBytes = 64;   // dlavm.target.isa.INSN_BYTES
constexpr const char* kManifest = "manifest.json";

[[noreturn]] void refuse(const std::string& dir, const std::string& why);

bool is_sha256_hex(const std::string& s);

// The offset of the first byte of `s` that is not part of well-formed UTF-8 (no overlong form or code point
// past U+10FFFF; encoded surrogates pass, as json.loads decodes bytes with "surrogatepass"), or npos.
size_t invalid_utf8(const std::string& s);

// manifest.sha256 is the sha256sum line of manifest.json (`text`) (directory._check_manifest_sum).
void check_manifest_sum(const std::string& dir, const artifact_files::Root& root, const std::vector<uint8_t>& text);

// What a listed file must hold (directory._expected_sizes): bytes (as decimal text, and as a number when it
// is below 2**64), the field naming it, and how the size follows from the manifest.
struct ExpectedSize {
  std::string bytes;
  bool fits = true;
  uint64_t n = 0;
  std::string field, why;
};
// {file: its expected size} for the stream, weight and host-constant files of a schema-checked manifest.
std::map<std::string, ExpectedSize> expected_sizes(const json::Value& m);

void check_sha256(const std::string& dir, const std::string& rel, const std::vector<uint8_t>& bytes,
                  const std::string& digest);

// Every patch names a field of the instruction at its index, with that field's word, bits and kind
// (directory._check_patch_fields); `blobs`: the bytes of each stream file.
void check_patch_fields(const std::string& dir, const json::Value& m,
                        const std::map<std::string, std::vector<uint8_t>>& blobs);

}  // namespace artifact_contents
}  // namespace dlavm
