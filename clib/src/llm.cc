// The generation loop of doc/llm.md ("How generation runs") over a dlavm::LlmModel: the C++ twin of
// dlavm.runtime.generate.Generator, with the same argument checks and words.
#include <cmath>
#include <string>

#include "dlavm/llm.h"
#include "sampling_internal.h"

namespace dlavm {
namespace {

[[noreturn]] void refuse(const std::string& name, const std::string& value, const std::string& rule) {
  throw GenerateArgumentError(name + "=" + value + ": must be " + rule);
}

}  // namespace

// Every argument checked before any device call (Generator.generate's checks, in its order).
void check_generate_arguments(const LlmModel& model, const std::vector<int32_t>& prompt, const GenerateOptions& o) {
  const int64_t vocab = model.vocab(), max_ctx = model.max_ctx();
  const std::string v = std::to_string(vocab);
  if (prompt.empty()) throw GenerateArgumentError("the prompt is empty: give at least one token");
  std::string outside;
  int shown = 0;
  for (int32_t t : prompt)
    if (t < 0 || t >= vocab) {
      if (shown < 5) outside += (shown ? ", " : "") + std::to_string(t);
      ++shown;
    }
  if (shown)
    throw GenerateArgumentError("prompt token ids [" + outside + "] are outside the model's vocabulary [0, " + v + ")");
  if (static_cast<int64_t>(prompt.size()) > max_ctx)
    throw ContextOverflowError("the prompt has " + std::to_string(prompt.size()) +
                               " tokens but the model's maximum context is " + std::to_string(max_ctx));
  if (o.max_new_tokens < 1) refuse("max_new_tokens", std::to_string(o.max_new_tokens), "an integer >= 1");
  const SamplingParams& s = o.sampling;
  if (!(std::isfinite(s.temperature) && s.temperature >= 0))
    refuse("temperature", detail::py_number(s.temperature), "a finite number >= 0 (0: greedy)");
  if (s.top_k < 0 || s.top_k > vocab)
    refuse("top_k", std::to_string(s.top_k), "an integer in [0, " + v + "] (0: all tokens)");
  if (!(s.top_p > 0 && s.top_p <= 1)) refuse("top_p", detail::py_number(s.top_p), "a number in (0, 1]");
  for (int32_t e : o.eos_ids)
    if (e < 0 || e >= vocab) refuse("eos_id", std::to_string(e), "a token id in [0, " + v + ")");
}

const char* stop_reason_name(StopReason r) {
  switch (r) {
    case StopReason::kMaxNewTokens: return "max_new_tokens";
    case StopReason::kEos: return "eos";
    case StopReason::kContext: return "context";
    case StopReason::kCallback: return "callback";
  }
  return "unknown";
}

GenerateResult generate(LlmModel& model, const std::vector<int32_t>& prompt, const GenerateOptions& opts,
                        const std::function<bool(int32_t)>& on_token) {
  check_generate_arguments(model, prompt, opts);
  const int64_t vocab = model.vocab(), max_ctx = model.max_ctx();
  const bool sampling = opts.sampling.temperature > 0;
  SplitMix64 rng(opts.seed);
  GenerateResult res;
  std::vector<int32_t> ids = prompt;
  int64_t past = 0;
  int64_t& produced = res.new_tokens;
  for (;;) {
    if (produced >= opts.max_new_tokens) {
      res.reason = StopReason::kMaxNewTokens;
      res.message = "generated " + std::to_string(produced) + " tokens (max_new_tokens)";
      return res;
    }
    const int64_t ctx = past + static_cast<int64_t>(ids.size());
    if (ctx > max_ctx) {
      res.reason = StopReason::kContext;
      res.message = "stopped at the context bound: the KV cache holds its maximum of " + std::to_string(max_ctx) +
                    " tokens (" + std::to_string(prompt.size()) + " prompt + " + std::to_string(produced - 1) +
                    " generated; " + std::to_string(produced) + " new tokens in all)";
      return res;
    }
    int32_t tok;
    if (sampling) {
      const std::vector<float> row = model.logits(ids, ctx);
      if (static_cast<int64_t>(row.size()) != vocab)
        throw std::runtime_error("the model returned " + std::to_string(row.size()) + " logits, not its vocabulary of " +
                                 std::to_string(vocab));
      tok = sample_token(row, opts.sampling, rng);
    } else {
      tok = model.greedy(ids, ctx);
      if (tok < 0 || tok >= vocab)
        throw std::runtime_error("the model returned token id " + std::to_string(tok) +
                                 ", outside its vocabulary [0, " + std::to_string(vocab) + ")");
    }
    past = ctx;
    ++produced;
    const bool go_on = on_token ? on_token(tok) : true;
    for (int32_t e : opts.eos_ids)
      if (tok == e) {
        res.reason = StopReason::kEos;
        res.message = "stopped at the end-of-sequence token " + std::to_string(tok) + " after " +
                      std::to_string(produced) + " tokens";
        return res;
      }
    if (!go_on) {
      res.reason = StopReason::kCallback;
      res.message = "stopped by the caller after " + std::to_string(produced) + " tokens";
      return res;
    }
    ids.assign(1, tok);
  }
}

}  // namespace dlavm
