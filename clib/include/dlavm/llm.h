// Generation with a compiled LLM artifact in C++ (doc/llm.md "How generation runs", doc/serve.md
// "Sampling is the same everywhere"): the model interface a generated driver implements, the
// specified sampler and the generation loop. The C++ model server (doc/serve.md) and the generated
// driver/<model>_generate.cc both use these, and dlavm.runtime.generate does the same in Python.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "dlavm/artifact.h"
#include "dlavm/device.h"

namespace dlavm {

// The two entries of an LLM artifact (doc/llm.md, "Design: one pair of entries"), token ids as int32.
class LlmModel {
 public:
  virtual ~LlmModel() = default;
  virtual int64_t max_ctx() const = 0;  // KV cache capacity (tokens)
  virtual int64_t vocab() const = 0;
  // Copy the packed weights to the device (once per device; again after the device restarted).
  virtual void load_weights() = 0;
  // Run `ids` (the new tokens) so that `ctx` tokens are cached after the call (ctx - ids.size() were
  // cached by earlier calls): the last row's argmax (entry `greedy`) or logits (entry `logits`, vocab
  // float32 values).
  virtual int32_t greedy(const std::vector<int32_t>& ids, int64_t ctx) = 0;
  virtual std::vector<float> logits(const std::vector<int32_t>& ids, int64_t ctx) = 0;

  // Batched decode (doc/llm.md "Batched decode"), for an artifact compiled with `--batch B`: B KV-cache
  // slots (1 otherwise). `set_slot` picks the slot greedy/logits use (0 at first; std::invalid_argument
  // outside [0, slots())). `greedy_batch` / `logits_batch` run one token of each of the sequences in slots
  // 0 .. ids.size()-1 (entries greedy_batch / logits_batch): row r has ctx[r] tokens in slot r after the
  // call; `ctx` holds slots() values (those of rows >= ids.size() any in [1, max_ctx]). They return one
  // token id per row, or ids.size() x vocab logits. Without batched decode they throw std::logic_error.
  virtual int64_t slots() const { return 1; }
  virtual void set_slot(int64_t slot);
  virtual std::vector<int32_t> greedy_batch(const std::vector<int32_t>& ids, const std::vector<int64_t>& ctx);
  virtual std::vector<float> logits_batch(const std::vector<int32_t>& ids, const std::vector<int64_t>& ctx);
};

// Defined once per LLM artifact by its generated driver/<model>_llm.cc: the artifact's Driver behind the
// interface above (its constructor checks the artifact and the device's target: ArtifactError,
// DeviceError "TargetMismatch"). `dev` and `art` must outlive the model. No device call until load_weights.
std::unique_ptr<LlmModel> make_llm_model(Device& dev, const Artifact& art);

// SplitMix64 (doc/serve.md): the one random generator of sampling.
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : s_(seed) {}
  uint64_t next();
  double uniform();  // (next() >> 11) * 2^-53, in [0, 1)

 private:
  uint64_t s_;
};

// exp(x) computed with IEEE-exact operations only (doc/serve.md); the same bits as
// dlavm.runtime.sampling.exp_spec. Meant for x <= 0 (x - max); exact 1 at 0, 0 below -745.2.
double exp_spec(double x);
// y[i] = exp_spec(x[i]) for i < n, the same bits, several values per instruction where the CPU can.
void exp_spec(const double* x, double* y, std::size_t n);

struct SamplingParams {
  double temperature = 0.0;  // 0: greedy
  int64_t top_k = 0;         // 0: all tokens
  double top_p = 1.0;        // (0, 1]
};

// One token from `logits` with `p` (temperature > 0), drawing one uniform number from `rng`: the order
// of operations of doc/serve.md (the same id as dlavm.runtime.sampling.sample). std::invalid_argument on
// an empty `logits`, a NaN logit, temperature not finite and > 0, top_k outside [0, logits.size()] or
// top_p outside (0, 1].
int32_t sample_token(const std::vector<float>& logits, const SamplingParams& p, SplitMix64& rng);

// Why a generation stopped.
enum class StopReason { kMaxNewTokens, kEos, kContext, kCallback };
const char* stop_reason_name(StopReason r);  // "max_new_tokens", "eos", "context", "callback"

struct GenerateOptions {
  int64_t max_new_tokens = 1;
  SamplingParams sampling;
  uint64_t seed = 0;             // used when sampling.temperature > 0
  std::vector<int32_t> eos_ids;  // stop after any of these
};

struct GenerateResult {
  StopReason reason = StopReason::kMaxNewTokens;
  int64_t new_tokens = 0;
  std::string message;  // why it stopped, in words (the Python Generator's stop_message)
};

// Refused arguments: the message names the argument, its value and the rule (the Python Generator's words).
class GenerateArgumentError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

// The prompt alone is longer than the model's context (a GenerateArgumentError; the server answers
// ERROR `context` for it, bad_request for the others).
class ContextOverflowError : public GenerateArgumentError {
 public:
  using GenerateArgumentError::GenerateArgumentError;
};

// The generation loop of doc/llm.md: prefill `prompt` (past 0), then one decode call per token.
// `on_token(id)` is called after each generated token; returning false stops (kCallback; kEos if the token
// is an EOS id) before the next device call. Greedy (temperature 0) runs the `greedy` entry; sampling the `logits` entry and
// sample_token. Refuses (GenerateArgumentError) an empty prompt, ids outside [0, vocab), a prompt past
// max_ctx (ContextOverflowError), max_new_tokens < 1, eos ids outside [0, vocab) and sampling parameters
// outside their rules, before any device call. A token id the model returns outside [0, vocab), or
// logits of another length than vocab(), is std::runtime_error; the model's own exceptions pass through.
GenerateResult generate(LlmModel& model, const std::vector<int32_t>& prompt, const GenerateOptions& opts,
                        const std::function<bool(int32_t)>& on_token);

// The refusals of generate alone (no device call), e.g. to check a request before load_weights.
void check_generate_arguments(const LlmModel& model, const std::vector<int32_t>& prompt,
                              const GenerateOptions& opts);

// Continuous batched generation over the slots of a batched-decode model (doc/llm.md "Batched decode"): the
// C++ twin of dlavm.runtime.batch_generate.BatchGenerator. Each sequence gets exactly what generate() gives
// it alone: the same argument checks, tokens, callbacks and stop reasons (its own SplitMix64(seed)).
// Not thread-safe: one thread drives it (the model's one user).
class BatchDecoder {
 public:
  using TokenFn = std::function<bool(int32_t)>;           // as generate's on_token
  using DoneFn = std::function<void(const GenerateResult&)>;
  explicit BatchDecoder(LlmModel& model);
  int64_t slots() const { return static_cast<int64_t>(seqs_.size()); }
  int64_t running() const;
  bool has_free_slot() const { return running() < slots(); }
  // Check the arguments (GenerateArgumentError, before any device call), prefill `prompt` into the lowest
  // free slot (std::logic_error if none) and deliver its first token; returns the slot. A sequence that
  // stops at once (its first token) gets on_done before start returns and leaves the slot free.
  int64_t start(const std::vector<int32_t>& prompt, const GenerateOptions& opts, TokenFn on_token, DoneFn on_done);
  // One device call: a token of every running sequence (greedy_batch, or logits_batch when one samples),
  // rows 0 .. the highest running slot (a free slot below runs a dummy row: token 0 at ctx 1, touching
  // only that slot). on_token, then on_done for each sequence that stops. Nothing when none runs.
  void step();
  // Forget every running sequence without on_done (after a device error).
  void clear();

 private:
  struct Seq {
    bool on = false;
    GenerateOptions opts;
    int64_t prompt_len = 0, past = 0, produced = 0;
    int32_t last = 0;
    SplitMix64 rng{0};
    TokenFn on_token;
    DoneFn on_done;
  };
  bool deliver(Seq& s, int32_t tok);  // true: the sequence goes on
  int32_t token_of(Seq& s, const float* row, bool sampled, int32_t greedy_tok);
  LlmModel& model_;
  std::vector<Seq> seqs_;
};

}  // namespace dlavm
