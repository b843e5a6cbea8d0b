// Test program for tests/llm/test_sampling_spec.py: the C++ sampler (dlavm/llm.h) on inputs the Python
// test writes, so the two can be compared bit for bit.
//   sampling_tool exp IN.f64 OUT.f64            exp_spec of each double
//   sampling_tool splitmix SEED N               N lines "U64 UNIFORM_BITS_HEX"
//   sampling_tool sample CASES.bin              one line per case: the drawn ids, or "error: MESSAGE"
//   sampling_tool expv IN.f64 OUT.f64           the same through the array form exp_spec(x, y, n)
//   sampling_tool time CASES.bin                one line per case: "MEDIAN_US MIN_US LAST_ID", the time of
//                                               one sample_token call over the case's draws (bench/)
//   sampling_tool vectors                       which vector loops the sampler runs: avx2 or portable
//   sampling_tool --portable COMMAND ...        COMMAND with the portable vector loops (the same bits)
//   sampling_tool batch VOCAB MAX_CTX SLOTS FILE
//       dlavm::BatchDecoder on FakeBatchModel (run_batch below)
//   sampling_tool generate VOCAB MAX_CTX MAX_NEW TEMPERATURE TOP_K TOP_P SEED EOS PROMPT [STOP_AFTER]
//       dlavm::generate on a deterministic fake model (fake_logits below; EOS and PROMPT comma-separated
//       ids, EOS "-" for none); prints the ids on one line, then "stop REASON", then the message; a refused
//       argument prints "refused CLASS: MESSAGE". STOP_AFTER: on_token returns false after that many.
// CASES.bin: per case u32 vocab, u32 draws, f64 temperature, i64 top_k, f64 top_p, u64 seed, then vocab
// float32 logits (little-endian); `draws` tokens are sampled from one generator seeded with `seed`.
#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "dlavm/llm.h"
#include "../../clib/src/sampling_internal.h"

namespace {

std::vector<char> read_all(const char* path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error(std::string("cannot open ") + path);
  return std::vector<char>(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

template <typename T>
T take(const std::vector<char>& buf, size_t& pos) {
  if (pos + sizeof(T) > buf.size()) throw std::runtime_error("truncated cases file");
  T v;
  std::memcpy(&v, buf.data() + pos, sizeof(T));
  pos += sizeof(T);
  return v;
}

// The fake model's last-row logits after `ids` with `ctx` tokens cached: integers mod 1000 over 100,
// minus 5, in float32 (the Python test computes the same values).
std::vector<float> fake_logits(const std::vector<int32_t>& ids, int64_t ctx, int64_t vocab) {
  std::vector<float> row(static_cast<size_t>(vocab));
  const int64_t last = ids.back(), n = static_cast<int64_t>(ids.size());
  for (int64_t i = 0; i < vocab; ++i) {
    const int64_t m = (i * 7919 + ctx * 31 + last * 17 + n * 13) % 1000;
    row[static_cast<size_t>(i)] = static_cast<float>(m) / 100.0f - 5.0f;
  }
  return row;
}

class FakeModel : public dlavm::LlmModel {
 public:
  FakeModel(int64_t vocab, int64_t max_ctx) : vocab_(vocab), max_ctx_(max_ctx) {}
  int64_t max_ctx() const override { return max_ctx_; }
  int64_t vocab() const override { return vocab_; }
  void load_weights() override {}
  int32_t greedy(const std::vector<int32_t>& ids, int64_t ctx) override {
    const std::vector<float> row = logits(ids, ctx);
    size_t best = 0;
    for (size_t i = 1; i < row.size(); ++i)
      if (row[i] > row[best]) best = i;
    return static_cast<int32_t>(best);
  }
  std::vector<float> logits(const std::vector<int32_t>& ids, int64_t ctx) override {
    if (ctx != past_ + static_cast<int64_t>(ids.size()) || ctx > max_ctx_) throw std::logic_error("bad ctx");
    past_ = ctx;
    return fake_logits(ids, ctx, vocab_);
  }

 private:
  int64_t vocab_, max_ctx_, past_ = 0;
};

// FakeModel with `slots` KV-cache slots for dlavm::BatchDecoder: each slot's sequence gets the logits FakeModel
// gives it alone (fake_logits of its tokens at its KV length); every ctx is checked against the slot's past.
class FakeBatchModel : public dlavm::LlmModel {
 public:
  FakeBatchModel(int64_t vocab, int64_t max_ctx, int64_t slots)
      : vocab_(vocab), max_ctx_(max_ctx), past_(static_cast<size_t>(slots), 0) {}
  int64_t max_ctx() const override { return max_ctx_; }
  int64_t vocab() const override { return vocab_; }
  void load_weights() override {}
  int64_t slots() const override { return static_cast<int64_t>(past_.size()); }
  void set_slot(int64_t slot) override { slot_ = static_cast<size_t>(slot); }
  int32_t greedy(const std::vector<int32_t>& ids, int64_t ctx) override { return argmax(logits(ids, ctx)); }
  std::vector<float> logits(const std::vector<int32_t>& ids, int64_t ctx) override {
    if (ctx != static_cast<int64_t>(ids.size()) || ctx > max_ctx_) throw std::logic_error("bad prefill ctx");
    past_[slot_] = ctx;
    return fake_logits(ids, ctx, vocab_);
  }
  std::vector<int32_t> greedy_batch(const std::vector<int32_t>& ids, const std::vector<int64_t>& ctx) override {
    const std::vector<float> all = logits_batch(ids, ctx);
    std::vector<int32_t> out;
    for (size_t r = 0; r < ids.size(); ++r)
      out.push_back(argmax(std::vector<float>(all.begin() + static_cast<std::ptrdiff_t>(r * vocab_),
                                              all.begin() + static_cast<std::ptrdiff_t>((r + 1) * vocab_))));
    return out;
  }
  std::vector<float> logits_batch(const std::vector<int32_t>& ids, const std::vector<int64_t>& ctx) override {
    if (ctx.size() != past_.size() || ids.empty() || ids.size() > past_.size()) throw std::logic_error("bad batch");
    std::vector<float> out;
    for (size_t r = 0; r < ids.size(); ++r) {
      if (ctx[r] != 1 && ctx[r] != past_[r] + 1) throw std::logic_error("bad batched ctx");
      if (ctx[r] != 1) past_[r] = ctx[r];   // ctx 1: a free slot's dummy row
      const std::vector<float> row = fake_logits({ids[r]}, ctx[r], vocab_);
      out.insert(out.end(), row.begin(), row.end());
    }
    ++steps;
    return out;
  }
  int64_t steps = 0;

 private:
  static int32_t argmax(const std::vector<float>& row) {
    size_t best = 0;
    for (size_t i = 1; i < row.size(); ++i)
      if (row[i] > row[best]) best = i;
    return static_cast<int32_t>(best);
  }
  int64_t vocab_, max_ctx_;
  std::vector<int64_t> past_;
  size_t slot_ = 0;
};

std::vector<int32_t> id_list(const std::string& s) {
  std::vector<int32_t> out;
  if (s == "-") return out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) out.push_back(static_cast<int32_t>(std::stoll(item)));
  return out;
}

// One case of a `sample` / `time` input file: u32 vocab, u32 draws, f64 temperature, i64 top_k, f64 top_p,
// u64 seed, then vocab float32 logits.
struct SampleCase {
  uint32_t draws;
  dlavm::SamplingParams params;
  uint64_t seed;
  std::vector<float> logits;
};

SampleCase take_case(const std::vector<char>& buf, size_t& pos) {
  SampleCase c;
  const uint32_t vocab = take<uint32_t>(buf, pos);
  c.draws = take<uint32_t>(buf, pos);
  c.params.temperature = take<double>(buf, pos);
  c.params.top_k = take<int64_t>(buf, pos);
  c.params.top_p = take<double>(buf, pos);
  c.seed = take<uint64_t>(buf, pos);
  c.logits.resize(vocab);
  for (uint32_t i = 0; i < vocab; ++i) c.logits[i] = take<float>(buf, pos);
  return c;
}

int run_sample(const char* path) {
  const std::vector<char> buf = read_all(path);
  size_t pos = 0;
  while (pos < buf.size()) {
    const SampleCase c = take_case(buf, pos);
    dlavm::SplitMix64 rng(c.seed);
    try {
      std::string line;
      for (uint32_t d = 0; d < c.draws; ++d)
        line += (d ? " " : "") + std::to_string(dlavm::sample_token(c.logits, c.params, rng));
      std::printf("%s\n", line.c_str());
    } catch (const std::invalid_argument& e) {
      std::printf("error: %s\n", e.what());
    }
  }
  return 0;
}

// The wall time of each sample_token call of each case: its median and minimum in microseconds.
int run_time(const char* path) {
  const std::vector<char> buf = read_all(path);
  size_t pos = 0;
  while (pos < buf.size()) {
    const SampleCase c = take_case(buf, pos);
    dlavm::SplitMix64 rng(c.seed);
    std::vector<double> us(std::max<uint32_t>(c.draws, 1));
    int32_t id = -1;
    for (double& t : us) {
      const auto t0 = std::chrono::steady_clock::now();
      id = dlavm::sample_token(c.logits, c.params, rng);
      t = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
    }
    std::sort(us.begin(), us.end());
    std::printf("%.3f %.3f %d\n", us[us.size() / 2], us[0], id);
  }
  return 0;
}

// exp_spec of each double of `in` into `out`, one at a time or through the array form.
void exp_file(const char* in, const char* out, bool array_form) {
  const std::vector<char> buf = read_all(in);
  std::vector<double> x(buf.size() / 8), y(x.size());
  if (!x.empty()) std::memcpy(x.data(), buf.data(), x.size() * 8);
  if (array_form) {
    dlavm::exp_spec(x.data(), y.data(), x.size());
  } else {
    for (size_t k = 0; k < x.size(); ++k) y[k] = dlavm::exp_spec(x[k]);
  }
  std::ofstream f(out, std::ios::binary);
  f.write(reinterpret_cast<const char*>(y.data()), static_cast<std::streamsize>(y.size() * 8));
  if (!f) throw std::runtime_error(std::string("cannot write ") + out);
}

int run_generate(int argc, char** argv) {
  if (argc != 11 && argc != 12) throw std::runtime_error("generate: wrong argument count");
  FakeModel model(std::stoll(argv[2]), std::stoll(argv[3]));
  dlavm::GenerateOptions o;
  o.max_new_tokens = std::stoll(argv[4]);
  o.sampling.temperature = std::strtod(argv[5], nullptr);
  o.sampling.top_k = std::stoll(argv[6]);
  o.sampling.top_p = std::strtod(argv[7], nullptr);
  o.seed = std::stoull(argv[8]);
  o.eos_ids = id_list(argv[9]);
  const std::vector<int32_t> prompt = id_list(argv[10]);
  const long long stop_after = argc == 12 ? std::stoll(argv[11]) : -1;
  std::string ids;
  long long n = 0;
  try {
    const dlavm::GenerateResult r = dlavm::generate(model, prompt, o, [&](int32_t t) {
      ids += (ids.empty() ? "" : " ") + std::to_string(t);
      return ++n != stop_after;
    });
    if (r.new_tokens != n) throw std::logic_error("new_tokens disagrees with the callbacks");
    std::printf("%s\nstop %s\n%s\n", ids.c_str(), dlavm::stop_reason_name(r.reason), r.message.c_str());
  } catch (const dlavm::ContextOverflowError& e) {
    std::printf("refused ContextOverflowError: %s\n", e.what());
  } catch (const dlavm::GenerateArgumentError& e) {
    std::printf("refused GenerateArgumentError: %s\n", e.what());
  }
  return 0;
}

// batch VOCAB MAX_CTX SLOTS FILE: dlavm::BatchDecoder over FakeBatchModel for the requests of FILE, one a line
// (MAX_NEW TEMPERATURE TOP_K TOP_P SEED EOS PROMPT, EOS and PROMPT comma-separated, "-" for none), all queued
// at once and admitted into free slots before each step. Prints per request "i TOKENS", "stop REASON",
// its message (or "i refused KIND: message"), then "steps N".
int run_batch(int argc, char** argv) {
  if (argc != 6) throw std::runtime_error("batch: wrong argument count");
  FakeBatchModel model(std::stoll(argv[2]), std::stoll(argv[3]), std::stoll(argv[4]));
  std::ifstream f(argv[5]);
  std::vector<dlavm::GenerateOptions> opts;
  std::vector<std::vector<int32_t>> prompts;
  std::string mn, t, k, p, seed, eos, prompt;
  while (f >> mn >> t >> k >> p >> seed >> eos >> prompt) {
    dlavm::GenerateOptions o;
    o.max_new_tokens = std::stoll(mn);
    o.sampling.temperature = std::strtod(t.c_str(), nullptr);
    o.sampling.top_k = std::stoll(k);
    o.sampling.top_p = std::strtod(p.c_str(), nullptr);
    o.seed = std::stoull(seed);
    o.eos_ids = id_list(eos);
    opts.push_back(o);
    prompts.push_back(id_list(prompt));
  }
  const size_t n = opts.size();
  std::vector<std::string> toks(n), lines(n);
  dlavm::BatchDecoder bd(model);
  size_t next = 0;
  while (next < n || bd.running() > 0) {
    while (next < n && bd.has_free_slot()) {
      const size_t i = next++;
      try {
        bd.start(prompts[i], opts[i], [&toks, i](int32_t tok) {
          toks[i] += (toks[i].empty() ? "" : " ") + std::to_string(tok);
          return true;
        }, [&lines, &toks, i](const dlavm::GenerateResult& r) {
          lines[i] = std::to_string(i) + " " + toks[i] + "\nstop " + dlavm::stop_reason_name(r.reason) + "\n" + r.message;
        });
      } catch (const dlavm::ContextOverflowError& e) {
        lines[i] = std::to_string(i) + " refused ContextOverflowError: " + e.what();
      } catch (const dlavm::GenerateArgumentError& e) {
        lines[i] = std::to_string(i) + " refused GenerateArgumentError: " + e.what();
      }
    }
    bd.step();
  }
  for (const std::string& l : lines) std::printf("%s\n", l.c_str());
  std::printf("steps %lld\n", static_cast<long long>(model.steps));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    if (argc > 1 && std::string(argv[1]) == "--portable") {
      dlavm::detail::sampling_portable_vectors(true);
      --argc;
      ++argv;
    }
    const std::string cmd = argc > 1 ? argv[1] : "";
    if ((cmd == "exp" || cmd == "expv") && argc == 4) {
      exp_file(argv[2], argv[3], cmd == "expv");
      return 0;
    }
    if (cmd == "splitmix" && argc == 4) {
      dlavm::SplitMix64 a(std::stoull(argv[2])), b(std::stoull(argv[2]));
      for (long long k = 0, n = std::stoll(argv[3]); k < n; ++k) {
        const double u = b.uniform();
        uint64_t bits;
        std::memcpy(&bits, &u, 8);
        std::printf("%" PRIu64 " %016" PRIx64 "\n", a.next(), bits);
      }
      return 0;
    }
    if (cmd == "sample" && argc == 3) return run_sample(argv[2]);
    if (cmd == "time" && argc == 3) return run_time(argv[2]);
    if (cmd == "vectors" && argc == 2) return std::printf("%s\n", dlavm::detail::sampling_vectors()) < 0;
    if (cmd == "generate") return run_generate(argc, argv);
    if (cmd == "batch") return run_batch(argc, argv);
    std::cerr << "usage: sampling_tool [--portable] exp|expv|splitmix|sample|time|vectors|generate ...\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}
