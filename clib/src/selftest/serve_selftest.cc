// Quick checks of the server's pieces that need no socket or device (run by `make`): stop-string
// hold-back on random texts cut into random pieces, UTF-8 checks, JSON payload rules, GENERATE rules.
// The server itself is tested through sockets in tests/serve/.
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "dlavm/json.h"
#include "frames.h"
#include "request.h"
#include "stop_filter.h"

namespace {

int failures = 0;

void check(bool ok, const std::string& what) {
  if (!ok) {
    std::fprintf(stderr, "FAIL: %s\n", what.c_str());
    ++failures;
  }
}

// Random text of whole characters (1-, 2-, 3- and 4-byte ones) from a small alphabet, so that stop
// strings occur often.
std::vector<std::string> random_chars(std::mt19937& rng, size_t n) {
  static const char* const kChars[] = {"a", "b", " ", "\xc3\xa9", "\xe4\xb8\xad", "\xf0\x9f\x98\x80"};
  std::vector<std::string> out;
  for (size_t i = 0; i < n; ++i) out.push_back(kChars[rng() % 6]);
  return out;
}

void stop_filter_properties() {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 20000; ++trial) {
    const std::vector<std::string> chars = random_chars(rng, rng() % 30);
    std::vector<std::string> stops;
    const size_t nstops = rng() % 3;
    for (size_t k = 0; k < nstops; ++k) {
      std::string s;
      for (const std::string& c : random_chars(rng, 1 + rng() % 3)) s += c;
      stops.push_back(s);
    }
    // The reply ends at the first stop string to appear as the text arrives piece by piece (the
    // generation stops then), before the earliest one in the text so far.
    std::vector<std::string> pieces;
    for (size_t i = 0; i < chars.size();) {
      std::string piece;
      for (size_t k = rng() % 4; k > 0 && i < chars.size(); --k) piece += chars[i++];
      pieces.push_back(piece);
    }
    std::string want, so_far;
    size_t first = std::string::npos;
    for (const std::string& piece : pieces) {
      so_far += piece;
      for (const std::string& s : stops) first = std::min(first, so_far.find(s));
      if (first != std::string::npos) break;
    }
    want = first == std::string::npos ? so_far : so_far.substr(0, first);

    dlavm::serve::StopFilter f(stops);
    std::string got;
    bool pieces_ok = true;
    for (size_t p = 0; p < pieces.size() && !f.stopped(); ++p) {
      const std::string out = f.push(pieces[p]);
      pieces_ok = pieces_ok && dlavm::serve::valid_utf8(out);
      got += out;
      // what was emitted is final: a prefix of the reply
      pieces_ok = pieces_ok && got.size() <= want.size() && want.compare(0, got.size(), got) == 0;
    }
    if (!f.stopped()) got += f.held();
    check(pieces_ok, "stop filter: every piece is whole characters of the reply's prefix (trial " +
                         std::to_string(trial) + ")");
    check(got == want, "stop filter: the reply ends before the first stop string (trial " + std::to_string(trial) +
                           ")");
    check(f.stopped() == (first != std::string::npos),
          "stop filter: stopped() (trial " + std::to_string(trial) + ")");
  }
  // hold-back: "ab" of stop "abc" waits; "abd" releases it
  dlavm::serve::StopFilter f({"abc"});
  check(f.push("xa") == "x" && f.push("b") == "" && f.push("d") == "abd", "stop filter: hold back, then release");
}

void utf8_and_payloads() {
  using dlavm::serve::valid_utf8;
  check(valid_utf8("") && valid_utf8("a\xc3\xa9\xf0\x9f\x98\x80"), "utf8: valid");
  for (const char* bad : {"\xc3", "\xc0\x80", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xff", "\xe4\xb8"})
    check(!valid_utf8(bad), std::string("utf8: invalid ") + bad);
  check(dlavm::serve::utf8_or_replaced("a\xff") == "a\xef\xbf\xbd", "utf8: replaced");

  dlavm::json::Value v;
  std::string err;
  const std::string deep16 = "{\"a\":" + std::string(14, '[') + "1" + std::string(14, ']') + "}";
  const std::string deep17 = "{\"a\":" + std::string(15, '[') + "1" + std::string(15, ']') + "}";
  check(dlavm::serve::parse_object(deep16, v, err), "payload: 16 levels " + err);
  check(!dlavm::serve::parse_object(deep17, v, err) && err.find("deeper than 16") != std::string::npos,
        "payload: 17 levels");
  check(!dlavm::serve::parse_object("{\"a\":1,\"a\":2}", v, err), "payload: duplicate key");
  check(!dlavm::serve::parse_object("[1]", v, err) && err.find("array") != std::string::npos, "payload: array");
  check(!dlavm::serve::parse_object("{\"a\":\"\xff\"}", v, err) && err.find("UTF-8") != std::string::npos,
        "payload: not UTF-8");
}

void generate_rules() {
  dlavm::serve::ModelFacts m;
  m.max_ctx = 8;
  m.vocab = 10;
  m.eos_ids = {2};
  auto refused = [&](const std::string& json, const std::string& kind, const std::string& fragment) {
    try {
      dlavm::serve::parse_generate(dlavm::json::parse(json), m, nullptr);
      check(false, "GENERATE " + json + " accepted");
    } catch (const dlavm::serve::RequestError& e) {
      check(e.kind() == kind && std::string(e.what()).find(fragment) != std::string::npos,
            "GENERATE " + json + ": " + e.kind() + ": " + e.what());
    }
  };
  const dlavm::serve::Request r = dlavm::serve::parse_generate(
      dlavm::json::parse(R"({"id": 4294967295, "prompt_ids": [0, 9], "temperature": 1, "top_k": 10,
                             "top_p": 0.5, "seed": 9223372036854775807, "stop": ["x"], "eos_ids": []})"),
      m, nullptr);
  check(r.id == 4294967295u && r.prompt.size() == 2 && r.max_new_tokens == 8 && r.has_seed &&
            r.seed == 9223372036854775807ull && r.eos_ids.empty() && r.sampling.top_k == 10,
        "GENERATE: every field at its edge");
  check(dlavm::serve::parse_generate(dlavm::json::parse(R"({"id": 0, "prompt_ids": [1]})"), m, nullptr).eos_ids ==
            std::vector<int32_t>{2},
        "GENERATE: default eos_ids");
  refused(R"({"id": 1, "prompt_ids": [1], "bogus": 1})", "bad_request", "unknown key \"bogus\"");
  refused(R"({"id": 1, "prompt": "hi"})", "bad_request", "no bundled tokenizer");
  refused(R"({"id": 1, "prompt_ids": [10]})", "bad_request", "prompt_ids[0]: 10 is outside [0, 10)");
  refused(R"({"id": 1, "prompt_ids": [1,1,1,1,1,1,1,1,1]})", "context", "the prompt has 9 tokens");
  refused(R"({"id": 1, "prompt_ids": [1], "max_new_tokens": 9})", "bad_request", "max_new_tokens: 9");
  refused(R"({"id": 1, "prompt_ids": [1], "top_p": 0})", "bad_request", "top_p: 0");
  refused(R"({"id": 1, "prompt_ids": [1], "seed": -1})", "bad_request", "seed: -1");
  refused(R"({"id": 1, "prompt_ids": [1], "add_bos": true})", "bad_request", "no bos_id");
  refused(R"({"id": 1, "prompt_ids": [1], "stop": ["\ud800"]})", "bad_request", "stop[0]:");
}

}  // namespace

int main() {
  stop_filter_properties();
  utf8_and_payloads();
  generate_rules();
  if (failures) {
    std::fprintf(stderr, "serve_selftest: %d failures\n", failures);
    return 1;
  }
  std::printf("serve_selftest: ok\n");
  return 0;
}
