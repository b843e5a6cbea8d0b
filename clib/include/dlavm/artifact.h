// Opening a compiled artifact directory (doc/backend.md, "Manifest schema").
//
// Artifact::open reads DIR/manifest.json and follows the schema of
// dlavm/artifact/schema.py, version kArtifactVersion: it refuses, with an
// ArtifactError of one line "artifact DIR: manifest.json: FIELD.PATH: RULE",
// the first violation of the rules below, with the same message the Python
// reader (dlavm.artifact.open_artifact) gives for it:
//   * the text is JSON (no duplicate key, nesting at most 256 levels) holding an object;
//   * "format" is "dlavm-artifact", "version" is kArtifactVersion;
//   * the top-level fields are exactly the schema's;
//   * the fields this reader uses are fully typed and ranged: "dims",
//     "weights", "host_consts", "streams" (with their patches, guards and
//     instruction records), "files", and the "kind"/"stream" of every entry step;
//   * cross-references: dims lo <= hi, every file they name is listed in
//     "files", patch and guard indexes lie inside their stream, a patch's bits
//     inside its 32-bit word, one instruction record per stream entry, every
//     stream step names a stream;
// then every listed file exists and its SHA-256 matches. The refusal table of
// tests/artifact/ is fed to both readers.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "dlavm/json.h"

namespace dlavm {

class ArtifactError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

constexpr const char* kArtifactFormat = "dlavm-artifact";
// Equal to MANIFEST_VERSION in dlavm/artifact/schema.py (see its versioning rule).
constexpr int64_t kArtifactVersion = 2;

class Artifact {
 public:
  // Read and verify DIR (see above). Throws ArtifactError.
  static Artifact open(const std::string& dir);

  const std::string& dir() const { return dir_; }
  // The parsed manifest.json (validated as above).
  const json::Value& manifest() const { return manifest_; }
  // The listed files, in manifest order.
  std::vector<std::string> files() const;
  // The bytes of a listed file, re-read and checked against its sha256 (so a
  // file changed after open() is refused too). Throws ArtifactError.
  std::vector<uint8_t> read_file(const std::string& relpath) const;

 private:
  Artifact(std::string dir, json::Value manifest) : dir_(std::move(dir)), manifest_(std::move(manifest)) {}
  std::string dir_;
  json::Value manifest_;
};

}  // namespace dlavm
