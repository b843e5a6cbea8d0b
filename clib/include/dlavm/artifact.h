// Opening a compiled artifact directory (doc/backend.md, "Manifest schema"; doc/runtime_cpp.md, "Artifacts").
//
// An artifact is untrusted input. Artifact::open reads DIR/manifest.json and
// follows the schema of dlavm/artifact/schema.py, version kArtifactVersion: it
// refuses, with an ArtifactError of one line "artifact DIR: manifest.json:
// FIELD.PATH: RULE" or "artifact DIR: file \"REL\" ...", the first violation of
// the rules below, with the message the Python reader
// (dlavm.artifact.load_artifact) gives for it:
//   * manifest.json and every listed file are regular files reached without
//     following a symbolic link (each component opened relative to its parent
//     with O_NOFOLLOW; a FIFO, device or directory is refused without blocking);
//   * the text is JSON (no duplicate key, nesting at most 256 levels) holding an object;
//   * "format" is "dlavm-artifact", "version" is kArtifactVersion;
//   * manifest.sha256 holds "<sha256>  manifest.json" and manifest.json matches it;
//   * the top-level fields are exactly the schema's;
//   * the fields this reader uses are fully typed and ranged: "dims",
//     "weights", "host_consts", "streams" (with their patches, guards and
//     instruction records), "files", and the "kind"/"stream" of every entry step;
//   * "source" (where the model came from; no C++ code reads it) is null or typed
//     like the fields above, its "kind" the form of its "spec";
//   * a host step's literals and attributes: an object with a "$float" key is
//     {"$float": "inf" | "-inf" | "nan"} (a non-finite number) and nothing else;
//   * cross-references: dims lo <= hi, every file they name is listed in
//     "files" and named by one field only, patch and guard indexes lie inside
//     their stream, a patch's bits inside its 32-bit word, one instruction
//     record per stream entry, every stream step names a stream;
//   * every listed file matches its sha256, a stream file holds count x 64
//     bytes, a weight file nbytes, a host-constant file its dtype x shape (a
//     quantised one, "quant" set: its int8 / packed int4 bytes, and its scales
//     file 2 bytes per scale); the bundled tokenizer ("tokenizer": file,
//     bos_id, eos_ids, add_bos, chat_template; typed like the fields above)
//     holds at most 64 MiB, its chat template 1 MiB;
//   * every patch names a field of the instruction at its index (its opcode,
//     dlavm/target/isa.py via src/isa_fields.inc) with that field's word, lo,
//     width and kind.
// The rules only the Python reader applies (size expressions, value ids, the
// memory map, the target description) concern fields the C++ runtime does not
// read: a generated driver carries its addresses and sizes as constants and
// checks them against this manifest (dlavm/backend/driver.py). The refusal
// table of tests/artifact/ is fed to both readers.
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
constexpr int64_t kArtifactVersion = 5;
// The file holding the sha256 of manifest.json (dlavm.artifact.MANIFEST_SUM).
constexpr const char* kManifestSum = "manifest.sha256";

class Artifact {
 public:
  // Read and verify DIR (see above). Throws ArtifactError.
  static Artifact open(const std::string& dir);

  const std::string& dir() const { return dir_; }
  // The parsed manifest.json (validated as above).
  const json::Value& manifest() const { return manifest_; }
  // The listed files, in manifest order.
  std::vector<std::string> files() const;
  // The bytes of a listed file, read again (as open() reads: no link, a
  // regular file) and checked against its sha256: the bytes returned are the
  // bytes checked, so a file changed after open() is refused, never used.
  // Throws ArtifactError.
  std::vector<uint8_t> read_file(const std::string& relpath) const;
  // Refuses, with an ArtifactError "artifact DIR: manifest.json: PATH: is X, WHO was generated for Y",
  // unless every leaf of `expected` equals the manifest's value at the same path (objects compared by
  // the keys of `expected`, arrays item by item and by length). A program built for one artifact (a
  // generated driver) checks with it the addresses, counts and files it carries as constants.
  void expect(const json::Value& expected, const std::string& who) const;

 private:
  Artifact(std::string dir, json::Value manifest) : dir_(std::move(dir)), manifest_(std::move(manifest)) {}
  std::string dir_;
  json::Value manifest_;
};

}  // namespace dlavm
