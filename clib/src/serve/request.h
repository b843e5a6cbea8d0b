// The requests of the serving protocol (doc/serve.md, "GENERATE", "CANCEL"): every field checked
// against its rule, the prompt encoded and its length checked against the context, before the request
// is queued (so a refused request never reaches the device).
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "dlavm/json.h"
#include "dlavm/llm.h"
#include "dlavm/tokenizer.h"

namespace dlavm {
namespace serve {

// What the request rules need to know of the model (from the artifact and its bundled tokenizer).
struct ModelFacts {
  int64_t max_ctx = 0;
  int64_t vocab = 0;
  bool has_bos = false;
  int32_t bos_id = 0;
  std::vector<int32_t> eos_ids;
  bool add_bos = false;
  // Bytes of the longest token's text (at least 4): a text prompt of more than max_ctx times this many
  // bytes has more than max_ctx tokens, and is refused before it is encoded.
  size_t max_token_bytes = 4;
};

// A refused request: `kind` is the ERROR kind ("bad_request", "context"), what() the one-line message.
class RequestError : public std::runtime_error {
 public:
  RequestError(std::string kind, const std::string& message)
      : std::runtime_error(message), kind_(std::move(kind)) {}
  const std::string& kind() const { return kind_; }

 private:
  std::string kind_;
};

struct Request {
  uint32_t id = 0;
  std::vector<int32_t> prompt;
  int64_t max_new_tokens = 0;
  SamplingParams sampling;
  bool has_seed = false;  // false: the server draws one
  uint64_t seed = 0;
  std::vector<std::string> stop;
  std::vector<int32_t> eos_ids;
};

// The request id of a GENERATE or CANCEL payload when it is a valid one (for ERROR's "id"), else false.
bool request_id(const json::Value& obj, uint32_t& id);

// A GENERATE payload checked against every rule of doc/serve.md; `tok` is the bundled tokenizer (null:
// token ids only). Throws RequestError: "bad_request" naming the field, its value and the rule, or
// "context" for a prompt past max_ctx.
Request parse_generate(const json::Value& obj, const ModelFacts& model, const Tokenizer* tok);

// A CANCEL payload's id. Throws RequestError "bad_request".
uint32_t parse_cancel(const json::Value& obj);

}  // namespace serve
}  // namespace dlavm
