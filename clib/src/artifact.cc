#include "dlavm/artifact.h"

#include <cctype>
#include <cstdint>
#include <map>
#include <set>
#include <sstream>

#include "artifact_contents.h"
#include "artifact_files.h"

namespace dlavm {
namespace {

using json::Value;
using artifact_files::Fd;
using artifact_files::Root;
using artifact_files::missing_file;
using artifact_files::open_inside;
using artifact_files::read_fd;
using artifact_contents::ExpectedSize;
using artifact_contents::check_manifest_sum;
using artifact_contents::check_patch_fields;
using artifact_contents::check_sha256;
using artifact_contents::expected_sizes;
using artifact_contents::invalid_utf8;
using artifact_contents::is_sha256_hex;
using artifact_contents::kInsnBytes;
using artifact_contents::kManifest;
using artifact_contents::refuse;

constexpr int64_t kInsnWords = 16;   // dlavm.target.isa.INSN_WORDS
constexpr int64_t kDimMax = 2147483647;
constexpr int64_t kMaxCount = int64_t{1} << 24;
constexpr int64_t kNoLimit = INT64_MAX;
// dlavm.artifact.directory.MAX_MANIFEST_BYTES
constexpr uint64_t kMaxManifestBytes = uint64_t{1} << 28;
// dlavm.artifact.schema.TOKENIZER_MAX_BYTES and CHAT_TEMPLATE_MAX_BYTES.
constexpr uint64_t kTokenizerMaxBytes = uint64_t{64} << 20;
constexpr uint64_t kChatTemplateMaxBytes = uint64_t{1} << 20;
// dlavm.artifact.schema.MODEL_SPEC_MAX_LEN
constexpr size_t kModelSpecMaxLen = 4096;
// dlavm.artifact.spec.FLOAT_TAG
constexpr const char* kFloatTag = "$float";

bool has_control(const std::string& s) {
  for (unsigned char c : s) {
    if (c < 0x20) return true;
  }
  return false;
}

// dlavm.artifact.spec.inside_artifact (not one of its RESERVED_FILES either)
bool inside(const std::string& rel) {
  if (rel.empty() || rel[0] == '/' || rel.find('\\') != std::string::npos || rel == kManifest ||
      rel == kManifestSum || rel.back() == '/' || has_control(rel)) {
    return false;
  }
  std::stringstream parts(rel);
  std::string part;
  while (std::getline(parts, part, '/')) {
    if (part.empty() || part == "." || part == "..") return false;
  }
  return true;
}

bool is_ident(const std::string& s) {
  if (s.empty() || !(std::isalpha(static_cast<unsigned char>(s[0])) || s[0] == '_')) return false;
  for (unsigned char c : s) {
    if (!(std::isalnum(c) || c == '_')) return false;
  }
  return true;
}

// Quotes, backslashes and control characters escaped as JSON does (dlavm.artifact.spec.escape), so a
// message stays one line.
std::string escape(const std::string& s) { return json::escape(s); }

std::string quote(const std::string& s) { return "\"" + escape(s) + "\""; }

std::string join(const std::string& path, const std::string& key) {
  return path.empty() ? escape(key) : path + "." + escape(key);
}
std::string join(const std::string& path, size_t i) { return path + "[" + std::to_string(i) + "]"; }

// The decoding rules of dlavm/artifact/spec.py, with its messages.
class Checker {
 public:
  explicit Checker(const std::string& dir) : prefix_("artifact " + dir + ": manifest.json: ") {}

  [[noreturn]] void fail(const std::string& path, const std::string& rule) const {
    throw ArtifactError(prefix_ + (path.empty() ? "" : path + ": ") + rule);
  }
  [[noreturn]] void want(const std::string& path, const std::string& what, const Value& v) const {
    fail(path, "must be " + what + ", got " + json::type_name(v.type()));
  }

  int64_t integer(const Value& v, const std::string& path, int64_t lo, int64_t hi = kNoLimit,
                  int64_t multiple_of = 0) const {
    if (!v.is_int()) want(path, "an integer", v);
    const int64_t x = v.as_int();
    if (x < lo) fail(path, "must be >= " + std::to_string(lo) + ", got " + std::to_string(x));
    if (hi != kNoLimit && x > hi) fail(path, "must be <= " + std::to_string(hi) + ", got " + std::to_string(x));
    if (multiple_of && x % multiple_of) {
      fail(path, "must be a multiple of " + std::to_string(multiple_of) + ", got " + std::to_string(x));
    }
    return x;
  }
  const std::string& string(const Value& v, const std::string& path) const {
    if (!v.is_string()) want(path, "a string", v);
    return v.as_string();
  }
  void text(const std::string& s, const std::string& path, size_t max_len) const {
    if (s.size() > max_len) {
      fail(path, "must be at most " + std::to_string(max_len) + " characters, got " + std::to_string(s.size()));
    }
  }
  const std::string& name(const Value& v, const std::string& path) const {
    const std::string& s = string(v, path);
    text(s, path, 1024);
    if (s.empty() || has_control(s)) fail(path, quote(s) + " is not a non-empty name without control characters");
    return s;
  }
  void name_key(const std::string& s, const std::string& path) const {
    text(s, path, 1024);
    if (s.empty() || has_control(s)) fail(path, quote(s) + " is not a non-empty name without control characters");
  }
  void ident_key(const std::string& s, const std::string& path) const {
    text(s, path, 256);
    if (!is_ident(s)) fail(path, quote(s) + " is not an identifier");
  }
  const std::string& ident(const Value& v, const std::string& path) const {
    const std::string& s = string(v, path);
    ident_key(s, path);
    return s;
  }
  const std::string& rel_path(const Value& v, const std::string& path) const {
    const std::string& s = string(v, path);
    rel_path_key(s, path);
    return s;
  }
  void rel_path_key(const std::string& s, const std::string& path) const {
    if (!inside(s)) fail(path, "path " + quote(s) + " must be a relative path inside the artifact");
  }
  void one_of(const Value& v, const std::string& path, const std::vector<std::string>& values) const {
    if (v.is_string()) {
      for (const auto& x : values) {
        if (v.as_string() == x) return;
      }
    } else if (!v.is_int()) {
      want(path, "a string", v);
    }
    std::string all;
    for (const auto& x : values) all += (all.empty() ? "" : ", ") + quote(x);
    fail(path, "must be one of " + all + "; got " + (v.is_string() ? quote(v.as_string()) : std::to_string(v.as_int())));
  }
  const Value::Array& array(const Value& v, const std::string& path) const {
    if (!v.is_array()) want(path, "an array", v);
    return v.as_array();
  }
  const Value::Object& object(const Value& v, const std::string& path) const {
    if (!v.is_object()) want(path, "an object", v);
    return v.as_object();
  }
  // A record: an object with exactly `fields` (dlavm.artifact.spec.Record).
  const Value::Object& record(const Value& v, const std::string& path, const std::vector<std::string>& fields) const {
    const Value::Object& obj = object(v, path);
    for (const auto& kv : obj) {
      bool known = false;
      for (const auto& f : fields) known = known || kv.first == f;
      if (!known) fail(join(path, kv.first), "is not a field of manifest version " + std::to_string(kArtifactVersion));
    }
    for (const auto& f : fields) {
      if (!v.find(f)) fail(join(path, f), "is required");
    }
    return obj;
  }
  void nullable_name(const Value& v, const std::string& path) const {
    if (!v.is_null()) name(v, path);
  }
  // The non-finite numbers of a host step's literal or attribute (dlavm.artifact.spec.HostJson): an object
  // with a "$float" key is {"$float": "inf" | "-inf" | "nan"} and nothing else. The generated driver carries
  // its literals and attributes as C++ constants; this checks the form only.
  void host_json(const Value& v, const std::string& path) const {
    if (v.is_array()) {
      for (size_t i = 0; i < v.size(); ++i) host_json(v[i], join(path, i));
    } else if (v.is_object() && v.find(kFloatTag)) {
      for (const auto& kv : v.as_object()) {
        if (kv.first != kFloatTag) {
          fail(path, "a " + quote(kFloatTag) + " object must have no other key, got " + quote(kv.first));
        }
      }
      one_of(v[kFloatTag], join(path, kFloatTag), {"inf", "-inf", "nan"});
    } else if (v.is_object()) {
      for (const auto& kv : v.as_object()) host_json(kv.second, join(path, kv.first));
    }
  }

 private:
  std::string prefix_;
};

const std::vector<std::string> kTopFields = {
    "format", "version", "isa_version", "target", "model", "weights_format", "weights_complete", "dims",
    "memory", "weights", "host_consts", "entries", "streams", "llm", "host_ops", "files", "tokenizer", "source"};

const std::vector<std::string> kDtypes = {"bool",   "int8",   "int16",   "int32",   "int64",   "uint8",
                                          "uint16", "uint32", "uint64", "float16", "float32", "float64"};

// dlavm.artifact.reader.check_format_version: format and version first, so an artifact of another version is
// named as such.
void check_format_version(const Checker& c, const Value& m) {
  if (!m.is_object()) c.fail("", "must hold a JSON object");
  const Value* fmt = m.find("format");
  if (!fmt) c.fail("format", "is required");
  if (!fmt->is_string() || fmt->as_string() != kArtifactFormat) {
    if (fmt->is_string()) c.fail("format", "must be " + quote(kArtifactFormat) + ", got " + quote(fmt->as_string()));
    if (fmt->is_int()) c.fail("format", "must be " + quote(kArtifactFormat) + ", got " + std::to_string(fmt->as_int()));
    c.fail("format", "must be " + quote(kArtifactFormat));
  }
  const Value* ver = m.find("version");
  if (!ver) c.fail("version", "is required");
  if (!ver->is_int()) c.want("version", "an integer", *ver);
  if (ver->as_int() != kArtifactVersion) {
    c.fail("version", "is " + std::to_string(ver->as_int()) + ", this reader reads version " +
                          std::to_string(kArtifactVersion));
  }
}

// The rest of dlavm.artifact.reader.read_manifest, on the fields this reader uses.
void check_manifest(const Checker& c, const Value& m) {
  c.record(m, "", kTopFields);

  // dims: {identifier: [lo, hi]}
  std::set<std::string> dims;
  const auto& dim_obj = c.object(m["dims"], "dims");
  for (const auto& kv : dim_obj) {
    c.ident_key(kv.first, "dims");
    const std::string p = join("dims", kv.first);
    if (!kv.second.is_array() || kv.second.size() != 2) {
      c.fail(p, std::string("must be an array [lo, hi], got ") + json::type_name(kv.second.type()) +
                    (kv.second.is_array() ? " of " + std::to_string(kv.second.size()) + " items" : ""));
    }
    c.integer(kv.second[size_t{0}], join(p, size_t{0}), 0, kDimMax);
    c.integer(kv.second[size_t{1}], join(p, size_t{1}), 0, kDimMax);
    dims.insert(kv.first);
  }
  // weights: [WeightBlob]
  const auto& weights = c.array(m["weights"], "weights");
  for (size_t i = 0; i < weights.size(); ++i) {
    const std::string p = join("weights", i);
    c.record(weights[i], p, {"name", "file", "addr", "nbytes"});
    c.name(weights[i]["name"], p + ".name");
    c.rel_path(weights[i]["file"], p + ".file");
    c.integer(weights[i]["addr"], p + ".addr", 0);
    c.integer(weights[i]["nbytes"], p + ".nbytes", 0);
  }
  // host_consts: [HostConst]
  const auto& consts = c.array(m["host_consts"], "host_consts");
  for (size_t i = 0; i < consts.size(); ++i) {
    const std::string p = join("host_consts", i);
    c.record(consts[i], p, {"name", "file", "dtype", "shape", "quant"});
    c.name(consts[i]["name"], p + ".name");
    c.rel_path(consts[i]["file"], p + ".file");
    c.one_of(consts[i]["dtype"], p + ".dtype", kDtypes);
    const auto& shape = c.array(consts[i]["shape"], p + ".shape");
    for (size_t j = 0; j < shape.size(); ++j) c.integer(shape[j], join(p + ".shape", j), 0, kDimMax);
    const Value& quant = consts[i]["quant"];
    if (!quant.is_null()) {  // HostQuant
      c.record(quant, p + ".quant", {"format", "group", "scales"});
      c.one_of(quant["format"], p + ".quant.format", {"int8", "int4"});
      c.integer(quant["group"], p + ".quant.group", 1, kDimMax);
      c.rel_path(quant["scales"], p + ".quant.scales");
    }
  }
  // entries: only the steps' kind, a stream step's stream and the "$float" tags of a host step are read here
  const auto& entries = c.object(m["entries"], "entries");
  for (const auto& e : entries) {
    c.name_key(e.first, "entries");
    const std::string p = join("entries", e.first);
    c.object(e.second, p);
    const Value* steps = e.second.find("steps");
    if (!steps) continue;  // the Python reader names the missing field; this one reads only steps
    const auto& arr = c.array(*steps, p + ".steps");
    for (size_t i = 0; i < arr.size(); ++i) {
      const std::string q = join(p + ".steps", i);
      c.object(arr[i], q);
      const Value* kind = arr[i].find("kind");
      if (!kind) c.fail(q + ".kind", "is required");
      c.one_of(*kind, q + ".kind", {"host", "to_device", "to_host", "stream"});
      if (kind->as_string() == "stream") {
        c.record(arr[i], q, {"kind", "stream"});
        c.name(arr[i]["stream"], q + ".stream");
      }
      if (kind->as_string() == "host") {
        const Value* args = arr[i].find("args");
        for (size_t k = 0; args && args->is_array() && k < args->size(); ++k) {
          const Value* lit = (*args)[k].is_object() ? (*args)[k].find("literal") : nullptr;
          if (lit) c.host_json(*lit, join(q + ".args", k) + ".literal");
        }
        const Value* attrs = arr[i].find("attrs");
        if (attrs && attrs->is_object()) {
          for (const auto& kv : attrs->as_object()) c.host_json(kv.second, join(q + ".attrs", kv.first));
        }
      }
    }
  }
  // streams: {name: Stream}
  const auto& streams = c.object(m["streams"], "streams");
  for (const auto& kv : streams) {
    c.name_key(kv.first, "streams");
    const std::string p = join("streams", kv.first);
    const Value& s = kv.second;
    c.record(s, p, {"file", "asm", "addr", "count", "patches", "guards", "loops", "insns"});
    c.rel_path(s["file"], p + ".file");
    c.rel_path(s["asm"], p + ".asm");
    c.integer(s["addr"], p + ".addr", 0, kNoLimit, 32);
    c.integer(s["count"], p + ".count", 0, kMaxCount);
    const auto& patches = c.array(s["patches"], p + ".patches");
    for (size_t i = 0; i < patches.size(); ++i) {
      const std::string q = join(p + ".patches", i);
      c.record(patches[i], q, {"index", "field", "word", "lo", "width", "kind", "expr"});
      c.integer(patches[i]["index"], q + ".index", 0);
      c.ident(patches[i]["field"], q + ".field");
      c.integer(patches[i]["word"], q + ".word", 0, kInsnWords - 1);
      c.integer(patches[i]["lo"], q + ".lo", 0, 31);
      c.integer(patches[i]["width"], q + ".width", 1, 32);
      c.one_of(patches[i]["kind"], q + ".kind", {"uint", "addr"});
      c.string(patches[i]["expr"], q + ".expr");
    }
    const auto& guards = c.array(s["guards"], p + ".guards");
    for (size_t i = 0; i < guards.size(); ++i) {
      const std::string q = join(p + ".guards", i);
      c.record(guards[i], q, {"index", "expr"});
      c.integer(guards[i]["index"], q + ".index", 0);
      c.string(guards[i]["expr"], q + ".expr");
    }
    const auto& loops = c.array(s["loops"], p + ".loops");
    for (size_t i = 0; i < loops.size(); ++i) {
      const std::string q = join(p + ".loops", i);
      c.record(loops[i], q, {"var", "start", "end", "trips"});
      c.ident(loops[i]["var"], q + ".var");
      c.integer(loops[i]["start"], q + ".start", 0);
      c.integer(loops[i]["end"], q + ".end", 1);
      c.string(loops[i]["trips"], q + ".trips");
    }
    const auto& insns = c.array(s["insns"], p + ".insns");
    for (size_t i = 0; i < insns.size(); ++i) {
      const std::string q = join(p + ".insns", i);
      c.record(insns[i], q, {"tag", "layer", "weights"});
      c.nullable_name(insns[i]["tag"], q + ".tag");
      if (!insns[i]["layer"].is_null()) c.integer(insns[i]["layer"], q + ".layer", 0);
      const auto& ws = c.array(insns[i]["weights"], q + ".weights");
      for (size_t j = 0; j < ws.size(); ++j) c.name(ws[j], join(q + ".weights", j));
    }
  }
  // files: {relative path: sha256}
  const auto& files = c.object(m["files"], "files");
  for (const auto& kv : files) {
    c.rel_path_key(kv.first, "files");
    if (!kv.second.is_string() || !is_sha256_hex(kv.second.as_string())) {
      c.fail(join("files", kv.first), "must be 64 lowercase hex digits (a sha256)");
    }
  }

  // tokenizer: null or TokenizerInfo
  const Value& tok = m["tokenizer"];
  if (!tok.is_null()) {
    c.record(tok, "tokenizer", {"file", "bos_id", "eos_ids", "add_bos", "chat_template"});
    c.rel_path(tok["file"], "tokenizer.file");
    if (!tok["bos_id"].is_null()) c.integer(tok["bos_id"], "tokenizer.bos_id", 0, kDimMax);
    const auto& eos = c.array(tok["eos_ids"], "tokenizer.eos_ids");
    for (size_t j = 0; j < eos.size(); ++j) c.integer(eos[j], join("tokenizer.eos_ids", j), 0, kDimMax);
    if (!tok["add_bos"].is_bool()) c.want("tokenizer.add_bos", "a boolean", tok["add_bos"]);
    if (!tok["chat_template"].is_null()) c.rel_path(tok["chat_template"], "tokenizer.chat_template");
  }

  // source: null or ModelSource (read by no C++ code: checked so that both readers accept the same manifests)
  const Value& src = m["source"];
  if (!src.is_null()) {
    c.record(src, "source", {"kind", "spec", "max_seq"});
    c.one_of(src["kind"], "source.kind", {"recipe", "factory", "hf"});
    const std::string& spec = c.string(src["spec"], "source.spec");
    c.text(spec, "source.spec", kModelSpecMaxLen);
    if (spec.empty() || has_control(spec)) {
      c.fail("source.spec", quote(spec) + " is not a non-empty MODEL without control characters");
    }
    if (!src["max_seq"].is_null()) c.integer(src["max_seq"], "source.max_seq", 1, kDimMax);
  }

  // cross-references, in the Python reader's order (dlavm/artifact/reader.py check_references)
  std::map<std::string, std::string> owner;  // file -> the field naming it
  auto listed = [&](const std::string& path, const std::string& rel) {  // listed, and named by one field only
    if (!m["files"].find(rel)) c.fail(path, quote(rel) + " is not listed in files");
    const auto it = owner.find(rel);
    if (it != owner.end()) c.fail(path, quote(rel) + " is already named by " + it->second);
    owner.emplace(rel, path);
  };
  for (const auto& kv : dim_obj) {
    const int64_t lo = kv.second[size_t{0}].as_int(), hi = kv.second[size_t{1}].as_int();
    if (lo > hi) {
      c.fail(join("dims", kv.first), "lower bound " + std::to_string(lo) + " exceeds upper bound " + std::to_string(hi));
    }
  }
  if (!src.is_null()) {  // the kind is the spec's form (dlavm.artifact.schema.model_kind)
    const std::string& spec = src["spec"].as_string();
    const std::string kind = spec.rfind("hf:", 0) == 0 ? "hf" : spec.find(':') != std::string::npos ? "factory"
                                                                                                     : "recipe";
    if (src["kind"].as_string() != kind) {
      c.fail("source.kind", "is " + quote(src["kind"].as_string()) + ", the spec " + quote(spec) +
                                " is of kind " + quote(kind));
    }
  }
  for (const auto& kv : streams) {
    const std::string p = join("streams", kv.first);
    const Value& s = kv.second;
    listed(p + ".file", s["file"].as_string());
    listed(p + ".asm", s["asm"].as_string());
    const int64_t count = s["count"].as_int();
    const std::string count_text = std::to_string(count);
    if (static_cast<int64_t>(s["insns"].size()) != count) {
      c.fail(p + ".insns", "must have one record per entry (" + count_text + "), got " +
                               std::to_string(s["insns"].size()));
    }
    const auto& patches = s["patches"].as_array();
    for (size_t i = 0; i < patches.size(); ++i) {
      const std::string q = join(p + ".patches", i);
      const int64_t index = patches[i]["index"].as_int();
      if (index >= count) {
        c.fail(q + ".index", "must be < the stream's count (" + count_text + "), got " + std::to_string(index));
      }
      const int64_t lo = patches[i]["lo"].as_int(), width = patches[i]["width"].as_int();
      if (lo + width > 32) {
        c.fail(q + ".width", "bits [" + std::to_string(lo) + ", " + std::to_string(lo + width) +
                                 ") do not fit a 32-bit word");
      }
    }
    const auto& guards = s["guards"].as_array();
    for (size_t i = 0; i < guards.size(); ++i) {
      const int64_t index = guards[i]["index"].as_int();
      if (index >= count) {
        c.fail(join(p + ".guards", i) + ".index",
               "must be < the stream's count (" + count_text + "), got " + std::to_string(index));
      }
    }
    const auto& loops = s["loops"].as_array();
    int64_t prev_end = 0;
    for (size_t i = 0; i < loops.size(); ++i) {
      const std::string q = join(p + ".loops", i);
      const int64_t start = loops[i]["start"].as_int(), end = loops[i]["end"].as_int();
      if (start < prev_end) {
        c.fail(q + ".start", "must be >= the previous loop's end (" + std::to_string(prev_end) + "), got " +
                                 std::to_string(start));
      }
      if (!(start < end && end <= count)) {
        c.fail(q + ".end", "must be > start (" + std::to_string(start) + ") and <= the stream's count (" +
                               count_text + "), got " + std::to_string(end));
      }
      const std::string& var = loops[i]["var"].as_string();
      if (dims.count(var)) c.fail(q + ".var", quote(var) + " is a dim; a loop variable must not be");
      prev_end = end;
    }
  }
  for (size_t i = 0; i < weights.size(); ++i) listed(join("weights", i) + ".file", weights[i]["file"].as_string());
  for (size_t i = 0; i < consts.size(); ++i) {
    const std::string p = join("host_consts", i);
    listed(p + ".file", consts[i]["file"].as_string());
    const Value& quant = consts[i]["quant"];
    if (quant.is_null()) continue;
    listed(p + ".quant.scales", quant["scales"].as_string());
    const auto& shape = consts[i]["shape"].as_array();
    if (consts[i]["dtype"].as_string() != "float32" || shape.size() != 2) {
      std::string dims;
      for (const Value& d : shape) dims += (dims.empty() ? "" : ", ") + std::to_string(d.as_int());
      c.fail(p + ".quant", "a quantised constant must be a float32 2-D array, got " + consts[i]["dtype"].as_string() +
                               " of shape [" + dims + "]");
    }
  }
  if (!tok.is_null()) {
    listed("tokenizer.file", tok["file"].as_string());
    if (!tok["chat_template"].is_null()) listed("tokenizer.chat_template", tok["chat_template"].as_string());
  }
  for (const auto& e : entries) {
    const Value* steps = e.second.find("steps");
    if (!steps) continue;
    const auto& arr = steps->as_array();
    for (size_t i = 0; i < arr.size(); ++i) {
      if (arr[i]["kind"].as_string() != "stream") continue;
      const std::string& name = arr[i]["stream"].as_string();
      if (!m["streams"].find(name)) {
        c.fail(join(join("entries", e.first) + ".steps", i) + ".stream", quote(name) + " names no stream");
      }
    }
  }
}

}  // namespace

Artifact Artifact::open(const std::string& dir) {
  const Root root(dir);
  const std::vector<uint8_t> text = root.read(kManifest, kMaxManifestBytes, "manifest.json not found");
  json::Value m;
  const std::string utf8(text.begin(), text.end());
  const size_t bad = invalid_utf8(utf8);
  if (bad != std::string::npos) {  // (Python's decoder refuses it before parsing)
    refuse(dir, "manifest.json: is not valid JSON: byte " + std::to_string(bad) + " is not UTF-8");
  }
  try {
    m = json::parse(utf8);
  } catch (const json::ParseError& e) {
    refuse(dir, std::string("manifest.json: is not valid JSON: ") + e.what());
  }
  const Checker checker(dir);
  check_format_version(checker, m);
  check_manifest_sum(dir, root, text);
  check_manifest(checker, m);
  const std::map<std::string, ExpectedSize> sizes = expected_sizes(m);
  // the files without an exact size: the most bytes each may hold (directory._size_limits)
  std::map<std::string, std::pair<uint64_t, std::string>> limits;
  if (!m["tokenizer"].is_null()) {
    limits[m["tokenizer"]["file"].as_string()] = {kTokenizerMaxBytes, "tokenizer.file"};
    if (!m["tokenizer"]["chat_template"].is_null()) {
      limits[m["tokenizer"]["chat_template"].as_string()] = {kChatTemplateMaxBytes, "tokenizer.chat_template"};
    }
  }
  std::set<std::string> stream_files;
  for (const auto& kv : m["streams"].as_object()) stream_files.insert(kv.second["file"].as_string());
  std::map<std::string, std::vector<uint8_t>> stream_bytes;
  for (const auto& kv : m["files"].as_object()) {
    const std::string& rel = kv.first;
    const auto want = sizes.find(rel);
    const ExpectedSize* e = want == sizes.end() ? nullptr : &want->second;
    auto wrong_size = [&](uint64_t got) {
      refuse(dir, std::string(kManifest) + ": " + e->field + ": holds " + std::to_string(got) + " bytes, " + e->why +
                      " " + e->bytes);
    };
    uint64_t size = 0;
    const Fd fd = open_inside(dir, root.fd(), rel, missing_file(rel), size);
    if (e && (!e->fits || size != e->n)) wrong_size(size);
    const auto most = limits.find(rel);
    if (most != limits.end() && size > most->second.first) {
      refuse(dir, std::string(kManifest) + ": " + most->second.second + ": holds " + std::to_string(size) +
                      " bytes, more than the " + std::to_string(most->second.first) + " it may");
    }
    std::vector<uint8_t> bytes = read_fd(dir, rel, fd.get(), size,
                                         e ? e->n : most != limits.end() ? most->second.first : UINT64_MAX);
    check_sha256(dir, rel, bytes, kv.second.as_string());
    if (e && bytes.size() != e->n) wrong_size(bytes.size());
    if (stream_files.count(rel)) stream_bytes[rel] = std::move(bytes);
  }
  check_patch_fields(dir, m, stream_bytes);
  return Artifact(dir, std::move(m));
}

std::vector<std::string> Artifact::files() const {
  std::vector<std::string> out;
  for (const auto& kv : manifest_.at("files").as_object()) out.push_back(kv.first);
  return out;
}

std::vector<uint8_t> Artifact::read_file(const std::string& relpath) const {
  const json::Value* digest = manifest_.at("files").find(relpath);
  if (!digest) refuse(dir_, "file \"" + relpath + "\" is not listed in manifest.json");
  const Root root(dir_);
  std::vector<uint8_t> bytes = root.read(relpath, UINT64_MAX, missing_file(relpath));
  check_sha256(dir_, relpath, bytes, digest->as_string());
  return bytes;
}

namespace {

// A value for a message: its JSON text, cut at 80 characters.
std::string shown(const Value& v) {
  const std::string t = v.dump();
  return t.size() <= 80 ? t : t.substr(0, 77) + "...";
}

void expect_at(const std::string& dir, const Value& want, const Value* got, const std::string& path,
               const std::string& who) {
  auto differ = [&](const std::string& is, const std::string& wanted) {
    refuse(dir, std::string(kManifest) + ": " + (path.empty() ? "" : path + ": ") + is + ", " + who +
                    " was generated for " + wanted);
  };
  if (!got) differ("is missing", shown(want));
  if (want.is_object()) {
    if (!got->is_object()) differ("is " + shown(*got), "an object");
    for (const auto& kv : want.as_object()) expect_at(dir, kv.second, got->find(kv.first), join(path, kv.first), who);
  } else if (want.is_array()) {
    if (!got->is_array()) differ("is " + shown(*got), "an array");
    if (got->size() != want.size()) {
      differ("has " + std::to_string(got->size()) + " items", std::to_string(want.size()));
    }
    for (size_t i = 0; i < want.size(); ++i) expect_at(dir, want[i], &(*got)[i], join(path, i), who);
  } else if (got->dump() != want.dump()) {
    differ("is " + shown(*got), shown(want));
  }
}

}  // namespace

void Artifact::expect(const json::Value& expected, const std::string& who) const {
  expect_at(dir_, expected, &manifest_, "", who);
}

}  // namespace dlavm
