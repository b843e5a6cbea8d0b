#include "dlavm/artifact.h"

#include <sys/stat.h>

#include <fstream>
#include <iterator>
#include <sstream>

#include "dlavm/sha256.h"

namespace dlavm {
namespace {

[[noreturn]] void refuse(const std::string& dir, const std::string& why) {
  throw ArtifactError("artifact " + dir + ": " + why);
}

bool read_whole(const std::string& path, std::vector<uint8_t>& out) {
  struct stat st{};
  if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return false;
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  out.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  return !in.bad();
}

bool inside(const std::string& rel) {
  if (rel.empty() || rel[0] == '/' || rel.find('\\') != std::string::npos || rel == "manifest.json") return false;
  std::stringstream parts(rel);
  std::string part;
  size_t n = 0;
  while (std::getline(parts, part, '/')) {
    ++n;
    if (part.empty() || part == "." || part == "..") return false;
  }
  return rel.back() != '/' && n > 0;
}

bool is_sha256_hex(const std::string& s) {
  return s.size() == 64 && s.find_first_not_of("0123456789abcdef") == std::string::npos;
}

const std::string& listed_digest(const std::string& dir, const json::Value& files, const std::string& rel) {
  const json::Value* d = files.find(rel);
  if (!d) refuse(dir, "file \"" + rel + "\" is not listed in manifest.json");
  return d->as_string();
}

std::vector<uint8_t> read_checked(const std::string& dir, const std::string& rel, const std::string& digest) {
  std::vector<uint8_t> bytes;
  if (!read_whole(dir + "/" + rel, bytes)) refuse(dir, "file \"" + rel + "\" is missing");
  const std::string got = sha256_hex(bytes.data(), bytes.size());
  if (got != digest) {
    refuse(dir, "file \"" + rel + "\" does not match its sha256 (manifest " + digest + ", file " + got + ")");
  }
  return bytes;
}

}  // namespace

Artifact Artifact::open(const std::string& dir) {
  std::vector<uint8_t> raw;
  if (!read_whole(dir + "/manifest.json", raw)) refuse(dir, "manifest.json not found");
  json::Value m;
  try {
    m = json::parse(std::string(raw.begin(), raw.end()));
  } catch (const json::ParseError& e) {
    refuse(dir, std::string("manifest.json is not valid JSON: ") + e.what());
  }
  if (!m.is_object()) refuse(dir, "manifest.json must hold a JSON object");

  const json::Value* fmt = m.find("format");
  if (!fmt) refuse(dir, "manifest.json has no \"format\"");
  if (!fmt->is_string()) refuse(dir, "\"format\" must be the string \"" + std::string(kArtifactFormat) + "\"");
  if (fmt->as_string() != kArtifactFormat) {
    refuse(dir, "\"format\" is \"" + fmt->as_string() + "\", expected \"" + kArtifactFormat + "\"");
  }

  const json::Value* ver = m.find("version");
  if (!ver) refuse(dir, "manifest.json has no \"version\"");
  if (!ver->is_int()) refuse(dir, "\"version\" must be the integer " + std::to_string(kArtifactVersion));
  if (ver->as_int() != kArtifactVersion) {
    refuse(dir, "\"version\" is " + std::to_string(ver->as_int()) + ", this runtime reads version " +
                    std::to_string(kArtifactVersion));
  }

  const json::Value* files = m.find("files");
  if (!files) refuse(dir, "manifest.json has no \"files\"");
  if (!files->is_object()) refuse(dir, "\"files\" must be an object {path: sha256}");
  for (const auto& kv : files->as_object()) {
    if (!inside(kv.first)) refuse(dir, "\"files\": path \"" + kv.first + "\" must be a relative path inside the artifact");
    if (!kv.second.is_string() || !is_sha256_hex(kv.second.as_string())) {
      refuse(dir, "\"files\": the sha256 of \"" + kv.first + "\" must be 64 lowercase hex digits");
    }
  }
  for (const auto& kv : files->as_object()) read_checked(dir, kv.first, kv.second.as_string());
  return Artifact(dir, std::move(m));
}

std::vector<std::string> Artifact::files() const {
  std::vector<std::string> out;
  for (const auto& kv : manifest_.at("files").as_object()) out.push_back(kv.first);
  return out;
}

std::vector<uint8_t> Artifact::read_file(const std::string& relpath) const {
  const std::string& digest = listed_digest(dir_, manifest_.at("files"), relpath);
  return read_checked(dir_, relpath, digest);
}

}  // namespace dlavm
