// Batched decode over a dlavm::LlmModel (doc/llm.md "Batched decode"): the default LlmModel methods of a
// model without it, and BatchDecoder, the C++ twin of dlavm.runtime.batch_generate.BatchGenerator.
#include <stdexcept>
#include <string>

#include "dlavm/llm.h"

namespace dlavm {

void LlmModel::set_slot(int64_t slot) {
  if (slot != 0)
    throw std::invalid_argument("slot " + std::to_string(slot) +
                                " does not exist: the model has one KV-cache slot (compiled without --batch)");
}

std::vector<int32_t> LlmModel::greedy_batch(const std::vector<int32_t>&, const std::vector<int64_t>&) {
  throw std::logic_error("the model has no batched decode (compile the artifact with --llm --batch B)");
}

std::vector<float> LlmModel::logits_batch(const std::vector<int32_t>&, const std::vector<int64_t>&) {
  throw std::logic_error("the model has no batched decode (compile the artifact with --llm --batch B)");
}

BatchDecoder::BatchDecoder(LlmModel& model) : model_(model), seqs_(static_cast<size_t>(model.slots())) {}

int64_t BatchDecoder::running() const {
  int64_t n = 0;
  for (const Seq& s : seqs_) n += s.on ? 1 : 0;
  return n;
}

void BatchDecoder::clear() {
  for (Seq& s : seqs_) s = Seq();
}

int32_t BatchDecoder::token_of(Seq& s, const float* row, bool sampled, int32_t greedy_tok) {
  const int64_t vocab = model_.vocab();
  if (s.opts.sampling.temperature > 0) return sample_token(std::vector<float>(row, row + vocab), s.opts.sampling, s.rng);
  if (sampled) {  // a greedy sequence in a logits step: the argmax on the host, the first of equal maxima
    int64_t best = 0;
    for (int64_t i = 1; i < vocab; ++i)
      if (row[i] > row[best]) best = i;
    return static_cast<int32_t>(best);
  }
  if (greedy_tok < 0 || greedy_tok >= vocab)
    throw std::runtime_error("the model returned token id " + std::to_string(greedy_tok) +
                             ", outside its vocabulary [0, " + std::to_string(vocab) + ")");
  return greedy_tok;
}

// generate()'s checks after a token, in its order: EOS, the callback, then (before the next call)
// max_new_tokens and the context bound.
bool BatchDecoder::deliver(Seq& s, int32_t tok) {
  ++s.produced;
  s.last = tok;
  const bool go_on = s.on_token ? s.on_token(tok) : true;
  GenerateResult res;
  res.new_tokens = s.produced;
  bool stop = false;
  for (int32_t e : s.opts.eos_ids)
    if (tok == e) {
      res.reason = StopReason::kEos;
      res.message = "stopped at the end-of-sequence token " + std::to_string(tok) + " after " +
                    std::to_string(s.produced) + " tokens";
      stop = true;
      break;
    }
  if (!stop && !go_on) {
    res.reason = StopReason::kCallback;
    res.message = "stopped by the caller after " + std::to_string(s.produced) + " tokens";
    stop = true;
  } else if (!stop && s.produced >= s.opts.max_new_tokens) {
    res.reason = StopReason::kMaxNewTokens;
    res.message = "generated " + std::to_string(s.produced) + " tokens (max_new_tokens)";
    stop = true;
  } else if (!stop && s.past + 1 > model_.max_ctx()) {
    res.reason = StopReason::kContext;
    res.message = "stopped at the context bound: the KV cache holds its maximum of " +
                  std::to_string(model_.max_ctx()) + " tokens (" + std::to_string(s.prompt_len) + " prompt + " +
                  std::to_string(s.produced - 1) + " generated; " + std::to_string(s.produced) + " new tokens in all)";
    stop = true;
  }
  if (!stop) return true;
  DoneFn done = std::move(s.on_done);
  s = Seq();
  if (done) done(res);
  return false;
}

int64_t BatchDecoder::start(const std::vector<int32_t>& prompt, const GenerateOptions& opts, TokenFn on_token,
                            DoneFn on_done) {
  check_generate_arguments(model_, prompt, opts);
  int64_t slot = 0;
  while (slot < slots() && seqs_[static_cast<size_t>(slot)].on) ++slot;
  if (slot == slots()) throw std::logic_error("BatchDecoder::start: every slot is running a sequence");
  Seq& s = seqs_[static_cast<size_t>(slot)];
  s = Seq();
  s.opts = opts;
  s.rng = SplitMix64(opts.seed);
  s.prompt_len = static_cast<int64_t>(prompt.size());
  s.on_token = std::move(on_token);
  s.on_done = std::move(on_done);
  model_.set_slot(slot);
  const int64_t ctx = s.prompt_len;
  int32_t tok;
  if (opts.sampling.temperature > 0) {
    const std::vector<float> row = model_.logits(prompt, ctx);
    if (static_cast<int64_t>(row.size()) != model_.vocab())
      throw std::runtime_error("the model returned " + std::to_string(row.size()) +
                               " logits, not its vocabulary of " + std::to_string(model_.vocab()));
    tok = token_of(s, row.data(), true, 0);
  } else {
    tok = token_of(s, nullptr, false, model_.greedy(prompt, ctx));
  }
  s.past = ctx;
  s.on = true;
  deliver(s, tok);
  return slot;
}

void BatchDecoder::step() {
  int64_t rows = 0;
  bool sampled = false;
  for (int64_t r = 0; r < slots(); ++r)
    if (seqs_[static_cast<size_t>(r)].on) {
      rows = r + 1;
      sampled = sampled || seqs_[static_cast<size_t>(r)].opts.sampling.temperature > 0;
    }
  if (rows == 0) return;
  std::vector<int32_t> ids(static_cast<size_t>(rows), 0);
  std::vector<int64_t> ctx(static_cast<size_t>(slots()), 1);
  for (int64_t r = 0; r < rows; ++r) {
    const Seq& s = seqs_[static_cast<size_t>(r)];
    if (s.on) {
      ids[static_cast<size_t>(r)] = s.last;
      ctx[static_cast<size_t>(r)] = s.past + 1;
    }
  }
  const int64_t vocab = model_.vocab();
  std::vector<float> logits;
  std::vector<int32_t> toks;
  if (sampled) {
    logits = model_.logits_batch(ids, ctx);
    if (static_cast<int64_t>(logits.size()) != rows * vocab)
      throw std::runtime_error("the model returned " + std::to_string(logits.size()) + " logits for " +
                               std::to_string(rows) + " rows of " + std::to_string(vocab));
  } else {
    toks = model_.greedy_batch(ids, ctx);
    if (static_cast<int64_t>(toks.size()) != rows)
      throw std::runtime_error("the model returned " + std::to_string(toks.size()) + " token ids for " +
                               std::to_string(rows) + " rows");
  }
  for (int64_t r = 0; r < rows; ++r) {
    Seq& s = seqs_[static_cast<size_t>(r)];
    if (!s.on) continue;
    s.past += 1;
    const int32_t tok = sampled ? token_of(s, logits.data() + r * vocab, true, 0)
                                : token_of(s, nullptr, false, toks[static_cast<size_t>(r)]);
    deliver(s, tok);
  }
}

}  // namespace dlavm
