// Opening a compiled artifact directory (doc/compiler.md, "Artifact").
//
// Artifact::open checks, in this order, and refuses the first violation with
// an ArtifactError naming the file or field (the Python twin,
// dlavm/runtime/artifact_check.py, applies the same rules with the same
// messages): DIR/manifest.json exists and is a JSON object; "format" is
// "dlavm-artifact"; "version" is the integer 1; "files" is an object
// {relative path: sha256 hex}; every path stays inside DIR; every listed
// file exists and its SHA-256 matches.
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
constexpr int64_t kArtifactVersion = 1;

class Artifact {
 public:
  // Read and verify DIR (see above). Throws ArtifactError.
  static Artifact open(const std::string& dir);

  const std::string& dir() const { return dir_; }
  // The parsed manifest.json.
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
