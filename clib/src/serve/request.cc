#include "request.h"

#include <cmath>
#include <string>

#include "dlavm/serve_protocol.h"
#include "frames.h"

namespace dlavm {
namespace serve {
namespace {

[[noreturn]] void bad(const std::string& msg) { throw RequestError("bad_request", msg); }

std::string key_list() {
  std::string s;
  for (const char* k : kGenerateKeys) s += (s.empty() ? "" : ", ") + std::string(k);
  return s;
}

bool known_key(const std::string& k) {
  for (const char* g : kGenerateKeys)
    if (k == g) return true;
  return false;
}

// An integer field in [lo, hi] (JSON integers only: 1.0 is refused).
int64_t int_in(const json::Value& v, const std::string& field, int64_t lo, int64_t hi, const std::string& rule) {
  if (!v.is_int() || v.as_int() < lo || v.as_int() > hi) bad(field + ": " + shown(v) + " is not " + rule);
  return v.as_int();
}

// A token id list: each in [0, vocab).
std::vector<int32_t> ids_of(const json::Value& v, const std::string& field, int64_t vocab, const std::string& what) {
  if (!v.is_array()) bad(field + ": " + shown(v) + " is not " + what);
  std::vector<int32_t> out;
  out.reserve(v.size());
  const json::Value::Array& a = v.as_array();
  for (size_t i = 0; i < a.size(); ++i) {
    const std::string f = field + "[" + std::to_string(i) + "]";
    if (!a[i].is_int()) bad(f + ": " + shown(a[i]) + " is not an integer token id");
    if (a[i].as_int() < 0 || a[i].as_int() >= vocab)
      bad(f + ": " + shown(a[i]) + " is outside [0, " + std::to_string(vocab) + ") (the vocabulary)");
    out.push_back(static_cast<int32_t>(a[i].as_int()));
  }
  return out;
}

}  // namespace

bool request_id(const json::Value& obj, uint32_t& id) {
  const json::Value* v = obj.is_object() ? obj.find("id") : nullptr;
  if (!v || !v->is_int() || v->as_int() < 0 || static_cast<uint64_t>(v->as_int()) > kMaxId) return false;
  id = static_cast<uint32_t>(v->as_int());
  return true;
}

Request parse_generate(const json::Value& obj, const ModelFacts& m, const Tokenizer* tok) {
  for (const auto& kv : obj.as_object())
    if (!known_key(kv.first)) bad("GENERATE: unknown key " + quoted(kv.first) + " (the keys are " + key_list() + ")");
  Request r;
  const std::string max_id = std::to_string(kMaxId);
  const json::Value* v = obj.find("id");
  if (!v) bad("id: missing (an integer 0.." + max_id + " is required)");
  r.id = static_cast<uint32_t>(int_in(*v, "id", 0, static_cast<int64_t>(kMaxId), "an integer in 0.." + max_id));

  const json::Value* prompt = obj.find("prompt");
  const json::Value* prompt_ids = obj.find("prompt_ids");
  if (prompt && prompt_ids) bad("prompt, prompt_ids: both are given; give exactly one");
  if (!prompt && !prompt_ids) bad("prompt, prompt_ids: neither is given; give exactly one");

  bool add_bos = m.add_bos && m.has_bos;
  if ((v = obj.find("add_bos"))) {
    if (!v->is_bool()) bad("add_bos: " + shown(*v) + " is not true or false");
    add_bos = v->as_bool();
    if (add_bos && !m.has_bos) bad("add_bos: true, but the model has no bos_id");
  }

  const std::string max_ctx = std::to_string(m.max_ctx);
  r.max_new_tokens = std::min<int64_t>(kDefaultMaxNewTokens, m.max_ctx);
  if ((v = obj.find("max_new_tokens")))
    r.max_new_tokens = int_in(*v, "max_new_tokens", 1, m.max_ctx, "an integer in 1.." + max_ctx + " (max_ctx)");

  if ((v = obj.find("temperature"))) {
    if (!v->is_number() || !std::isfinite(v->as_double()) || v->as_double() < 0)
      bad("temperature: " + shown(*v) + " is not a finite number >= 0 (0: greedy)");
    r.sampling.temperature = v->as_double();
  }
  if ((v = obj.find("top_k")))
    r.sampling.top_k = int_in(*v, "top_k", 0, m.vocab, "an integer in 0.." + std::to_string(m.vocab) + " (0: all)");
  if ((v = obj.find("top_p"))) {
    if (!v->is_number() || !(v->as_double() > 0 && v->as_double() <= 1))
      bad("top_p: " + shown(*v) + " is not a number in (0, 1]");
    r.sampling.top_p = v->as_double();
  }
  if ((v = obj.find("seed")) && !v->is_null()) {
    r.seed = static_cast<uint64_t>(
        int_in(*v, "seed", 0, static_cast<int64_t>(kMaxSeed), "null or an integer in 0.." + std::to_string(kMaxSeed)));
    r.has_seed = true;
  }
  if ((v = obj.find("stop"))) {
    if (!v->is_array()) bad("stop: " + shown(*v) + " is not a list of strings");
    if (v->size() > kMaxStopStrings)
      bad("stop: " + std::to_string(v->size()) + " strings; at most " + std::to_string(kMaxStopStrings));
    const json::Value::Array& a = v->as_array();
    for (size_t i = 0; i < a.size(); ++i) {
      const std::string f = "stop[" + std::to_string(i) + "]";
      const std::string rule = " is not a string of 1.." + std::to_string(kMaxStopBytes) + " bytes of UTF-8";
      if (!a[i].is_string() || a[i].as_string().empty() || a[i].as_string().size() > kMaxStopBytes ||
          !valid_utf8(a[i].as_string()))
        bad(f + ": " + shown(a[i]) + rule);
      r.stop.push_back(a[i].as_string());
    }
  }
  r.eos_ids = m.eos_ids;
  if ((v = obj.find("eos_ids")) && !v->is_null())
    r.eos_ids = ids_of(*v, "eos_ids", m.vocab, "null or a list of integer token ids");

  // The prompt last: its encoding is the costly part, and every cheaper rule was checked first.
  if (prompt_ids) {
    r.prompt = ids_of(*prompt_ids, "prompt_ids", m.vocab, "a list of integer token ids");
    if (r.prompt.empty()) bad("prompt_ids: [] is empty; give at least one token id");
  } else {
    if (!prompt->is_string()) bad("prompt: " + shown(*prompt) + " is not a string");
    if (!tok) bad("prompt: this model has no bundled tokenizer, so it takes prompt_ids only");
    const std::string& text = prompt->as_string();
    const uint64_t bound = static_cast<uint64_t>(m.max_ctx) * m.max_token_bytes;
    if (text.size() > bound)
      throw RequestError("context", "the prompt of " + std::to_string(text.size()) + " bytes has more tokens than " +
                                        "the model's maximum context of " + max_ctx +
                                        " (no token is longer than " + std::to_string(m.max_token_bytes) + " bytes)");
    if (add_bos) r.prompt.push_back(m.bos_id);
    const std::vector<int32_t> ids = tok->encode(text);
    r.prompt.insert(r.prompt.end(), ids.begin(), ids.end());
    for (int32_t t : r.prompt)
      if (t < 0 || t >= m.vocab)
        bad("prompt: encodes to token id " + std::to_string(t) + ", outside the model's vocabulary [0, " +
            std::to_string(m.vocab) + ")");
    if (r.prompt.empty()) bad("prompt: " + shown(*prompt) + " encodes to no tokens (and add_bos is false)");
  }
  if (static_cast<int64_t>(r.prompt.size()) > m.max_ctx)
    throw RequestError("context", "the prompt has " + std::to_string(r.prompt.size()) +
                                      " tokens but the model's maximum context is " + max_ctx);
  return r;
}

uint32_t parse_cancel(const json::Value& obj) {
  for (const auto& kv : obj.as_object())
    if (kv.first != "id") bad("CANCEL: unknown key " + quoted(kv.first) + " (the only key is id)");
  const json::Value* v = obj.find("id");
  const std::string max_id = std::to_string(kMaxId);
  if (!v) bad("id: missing (an integer 0.." + max_id + " is required)");
  return static_cast<uint32_t>(int_in(*v, "id", 0, static_cast<int64_t>(kMaxId), "an integer in 0.." + max_id));
}

}  // namespace serve
}  // namespace dlavm
