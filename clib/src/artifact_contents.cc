#include "artifact_contents.h"

#include <cstdio>

#include "dlavm/artifact.h"
#include "dlavm/sha256.h"

namespace dlavm {
namespace artifact_contents {
namespace {

using json::Value;

// The instruction formats of dlavm/target/isa.py, for the patch checks.
struct IsaOp {
  int opcode;
  const char* mnemonic;
};
struct IsaField {
  int opcode;
  const char* name;
  int64_t word, lo, width;
  const char* kind;
};
#include "isa_fields.inc"

// n * k in decimal, for sizes past int64 (a host constant's shape is up to 2**31 - 1 per dim).
std::string times(const std::string& n, uint64_t k) {
  std::string out;
  unsigned __int128 carry = 0;
  for (auto it = n.rbegin(); it != n.rend(); ++it) {
    carry += static_cast<unsigned __int128>(*it - '0') * k;
    out.insert(out.begin(), static_cast<char>('0' + static_cast<int>(carry % 10)));
    carry /= 10;
  }
  for (; carry; carry /= 10) out.insert(out.begin(), static_cast<char>('0' + static_cast<int>(carry % 10)));
  const size_t nz = out.find_first_not_of('0');
  return nz == std::string::npos ? "0" : out.substr(nz);
}

std::string hex_byte(unsigned v) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "0x%02x", v & 0xFFu);
  return buf;
}

}  // namespace

[[noreturn]] void refuse(const std::string& dir, const std::string& why) {
  throw ArtifactError("artifact " + dir + ": " + why);
}

bool is_sha256_hex(const std::string& s) {
  return s.size() == 64 && s.find_first_not_of("0123456789abcdef") == std::string::npos;
}

size_t invalid_utf8(const std::string& s) {
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t n;
    unsigned lo = 0x80, hi = 0xBF;  // the allowed range of the second byte
    if (c >= 0xC2 && c <= 0xDF) {
      n = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
      n = 2;
      if (c == 0xE0) lo = 0xA0;
    } else if (c >= 0xF0 && c <= 0xF4) {
      n = 3;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    } else {
      return i;
    }
    if (i + n >= s.size()) return i;  // truncated
    for (size_t k = 1; k <= n; ++k) {
      const unsigned char b = static_cast<unsigned char>(s[i + k]);
      if (k == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF)) return i;
    }
    i += n + 1;
  }
  return std::string::npos;
}

void check_manifest_sum(const std::string& dir, const artifact_files::Root& root, const std::vector<uint8_t>& text) {
  const std::string sum_name = kManifestSum;
  const std::vector<uint8_t> rec = root.read(sum_name, 1024, sum_name + ": not found (the writer records the "
                                                                        "sha256 of manifest.json there)");
  const std::string line(rec.begin(), rec.end());
  const std::string tail = std::string("  ") + kManifest;
  const bool well_formed = (line.size() == 64 + tail.size() || (line.size() == 65 + tail.size() && line.back() == '\n')) &&
                           is_sha256_hex(line.substr(0, 64)) && line.compare(64, tail.size(), tail) == 0;
  if (!well_formed) {
    refuse(dir, sum_name + ": must be the one line \"<64 lowercase hex digits>  manifest.json\"");
  }
  const std::string got = sha256_hex(text.data(), text.size());
  if (line.substr(0, 64) != got) {
    refuse(dir, std::string(kManifest) + ": does not match " + sum_name + " (recorded " + line.substr(0, 64) +
                    ", file " + got + ")");
  }
}

std::map<std::string, ExpectedSize> expected_sizes(const Value& m) {
  std::map<std::string, ExpectedSize> out;
  for (const auto& kv : m["streams"].as_object()) {
    const int64_t count = kv.second["count"].as_int();
    ExpectedSize e;
    e.n = static_cast<uint64_t>(count) * kInsnBytes;
    e.bytes = std::to_string(e.n);
    e.field = "streams." + kv.first + ".file";
    e.why = "its count (" + std::to_string(count) + ") needs";
    out[kv.second["file"].as_string()] = e;
  }
  const auto& weights = m["weights"].as_array();
  for (size_t i = 0; i < weights.size(); ++i) {
    ExpectedSize e;
    e.n = static_cast<uint64_t>(weights[i]["nbytes"].as_int());
    e.bytes = std::to_string(e.n);
    e.field = "weights[" + std::to_string(i) + "].file";
    e.why = "its nbytes is";
    out[weights[i]["file"].as_string()] = e;
  }
  static const std::map<std::string, uint64_t> kDtypeBytes = {
      {"bool", 1},   {"int8", 1},   {"int16", 2},   {"int32", 4},   {"int64", 8},   {"uint8", 1},
      {"uint16", 2}, {"uint32", 4}, {"uint64", 8}, {"float16", 2}, {"float32", 4}, {"float64", 8}};
  const auto& consts = m["host_consts"].as_array();
  for (size_t i = 0; i < consts.size(); ++i) {
    const std::string& dtype = consts[i]["dtype"].as_string();
    const Value& quant = consts[i]["quant"];
    if (!quant.is_null()) {  // a float32 [rows, cols] stored int8 / int4 (directory.quantised_bytes)
      const uint64_t rows = static_cast<uint64_t>(consts[i]["shape"][size_t{0}].as_int());
      const uint64_t cols = static_cast<uint64_t>(consts[i]["shape"][size_t{1}].as_int());
      const uint64_t group = static_cast<uint64_t>(quant["group"].as_int());
      const std::string& fmt = quant["format"].as_string();
      ExpectedSize e;
      e.n = fmt == "int8" ? rows * cols : rows * ((cols + 1) / 2);
      e.bytes = std::to_string(e.n);
      e.field = "host_consts[" + std::to_string(i) + "].file";
      e.why = "its " + fmt + " shape [" + std::to_string(rows) + ", " + std::to_string(cols) + "] needs";
      out[consts[i]["file"].as_string()] = e;
      ExpectedSize s;
      s.n = rows * ((cols + group - 1) / group) * 2;
      s.bytes = std::to_string(s.n);
      s.field = "host_consts[" + std::to_string(i) + "].quant.scales";
      s.why = "its float16 scales of " + std::to_string(rows) + " rows, groups of " + std::to_string(group) + " need";
      out[quant["scales"].as_string()] = s;
      continue;
    }
    ExpectedSize e;
    e.n = kDtypeBytes.at(dtype);
    e.bytes = std::to_string(e.n);
    std::string shape;
    for (const Value& d : consts[i]["shape"].as_array()) {
      const uint64_t x = static_cast<uint64_t>(d.as_int());
      e.bytes = times(e.bytes, x);
      if (e.fits && x && e.n > UINT64_MAX / x) e.fits = false;
      e.n *= x;
      shape += (shape.empty() ? "" : ", ") + std::to_string(x);
    }
    if (e.bytes == "0") e.fits = true, e.n = 0;
    e.field = "host_consts[" + std::to_string(i) + "].file";
    e.why = "its " + dtype + " shape [" + shape + "] needs";
    out[consts[i]["file"].as_string()] = e;
  }
  return out;
}

void check_sha256(const std::string& dir, const std::string& rel, const std::vector<uint8_t>& bytes,
                  const std::string& digest) {
  const std::string got = sha256_hex(bytes.data(), bytes.size());
  if (got != digest) {
    refuse(dir, "file \"" + rel + "\" does not match its sha256 (manifest " + digest + ", file " + got + ")");
  }
}

void check_patch_fields(const std::string& dir, const Value& m, const std::map<std::string, std::vector<uint8_t>>& blobs) {
  for (const auto& kv : m["streams"].as_object()) {
    const std::vector<uint8_t>& blob = blobs.at(kv.second["file"].as_string());
    const auto& patches = kv.second["patches"].as_array();
    for (size_t i = 0; i < patches.size(); ++i) {
      const std::string q = "manifest.json: streams." + kv.first + ".patches[" + std::to_string(i) + "]";
      const Value& p = patches[i];
      const int64_t index = p["index"].as_int();   // < count, and the file holds count entries
      const unsigned opcode = blob.at(static_cast<size_t>(index * kInsnBytes));
      const IsaOp* op = nullptr;
      for (const IsaOp& o : kIsaOps) {
        if (static_cast<unsigned>(o.opcode) == opcode) op = &o;
      }
      if (!op) {
        refuse(dir, q + ".index: entry " + std::to_string(index) + " holds no instruction (opcode " +
                        hex_byte(opcode) + ")");
      }
      const std::string& name = p["field"].as_string();
      const IsaField* f = nullptr;
      for (const IsaField& x : kIsaFields) {
        if (x.opcode == op->opcode && name == x.name) f = &x;
      }
      const std::string what = std::string(op->mnemonic) + "." + name;
      if (!f) {
        refuse(dir, q + ".field: \"" + name + "\" is not a field of " + op->mnemonic + " (entry " +
                        std::to_string(index) + ")");
      }
      const std::pair<const char*, int64_t> ints[] = {{"word", f->word}, {"lo", f->lo}, {"width", f->width}};
      for (const auto& a : ints) {
        const int64_t got = p[a.first].as_int();
        if (got != a.second) {
          refuse(dir, q + "." + a.first + ": " + what + " has " + a.first + " " + std::to_string(a.second) + ", got " +
                          std::to_string(got));
        }
      }
      const std::string& kind = p["kind"].as_string();
      if (kind != f->kind) {
        refuse(dir, q + ".kind: " + what + " has kind \"" + f->kind + "\", got \"" + kind + "\"");
      }
    }
  }
}

}  // namespace artifact_contents
}  // namespace dlavm
