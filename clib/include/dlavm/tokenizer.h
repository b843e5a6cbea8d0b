// A byte-level BPE tokenizer reading a Hugging Face `tokenizer.json`
// (doc/tokenizer.md). It gives the ids of Python's
// `tokenizers.Tokenizer.encode(text, add_special_tokens=False)` and the text of
// `decode(ids, skip_special_tokens=True)` for the features it accepts:
//   model        BPE (vocab + merges; no dropout, no byte_fallback, no
//                continuing_subword_prefix / end_of_word_suffix; ignore_merges ok)
//   normalizer   null
//   pre_tokenizer ByteLevel (use_regex: the GPT-2 split, hand-written;
//                add_prefix_space supported)
//   decoder      ByteLevel
//   added_tokens matched in the input before pre-tokenization (leftmost,
//                longest); lstrip / rstrip / single_word must be false
//   post_processor ignored (encode adds no special tokens)
// Anything else is refused with a TokenizerError naming the field.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace dlavm {

// what(): "tokenizer FILE: ..." naming the file and the field or id at fault.
class TokenizerError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Token ids of a tokenizer.json must be below this (2^24) and below the number of entries of
// model.vocab plus added_tokens, and leave no gap; anything else is refused naming the field.
constexpr size_t kMaxTokenIds = size_t{1} << 24;

class Tokenizer {
 public:
  static Tokenizer from_file(const std::string& path);
  // `origin` names the text in error messages (a path, or "<string>").
  static Tokenizer from_json(const std::string& text, const std::string& origin = "<string>");

  // Ids of `text` (UTF-8; an invalid byte is a one-byte "other" character).
  std::vector<int32_t> encode(const std::string& text) const;
  // Text of `ids`: special tokens skipped unless asked; an incomplete or
  // invalid UTF-8 sequence becomes U+FFFD (one per maximal invalid subpart,
  // as Python's errors="replace"). An id outside the vocabulary throws.
  std::string decode(const std::vector<int32_t>& ids, bool skip_special_tokens = true) const;

  // Ids of the first special token named like a BOS / EOS (the lists of
  // dlavm.tokenizer: "<s>", "<|begin_of_text|>", "<bos>", "<|endoftext|>" /
  // "</s>", "<|endoftext|>", "<|im_end|>", "<|eot_id|>", "<eos>"); -1 if none.
  int32_t bos_id() const { return bos_id_; }
  int32_t eos_id() const { return eos_id_; }
  // Number of ids (model vocabulary and added tokens).
  size_t vocab_size() const { return id_to_token_.size(); }
  int32_t token_to_id(const std::string& token) const;  // -1 if absent
  const std::string& id_to_token(int32_t id) const;      // TokenizerError if out of range
  const std::string& path() const { return path_; }

 private:
  struct AddedToken {
    std::string content;
    int32_t id;
    bool special;
  };

  void encode_word(const std::string& word, std::vector<int32_t>& out) const;
  void encode_plain(const std::string& text, std::vector<int32_t>& out) const;
  [[noreturn]] void fail(const std::string& msg) const;

  std::string path_;
  std::unordered_map<std::string, int32_t> vocab_;        // model vocabulary and added tokens
  std::vector<std::string> id_to_token_;
  std::vector<bool> is_special_;
  std::map<std::pair<int32_t, int32_t>, std::pair<int32_t, int32_t>> merges_;  // -> (rank, merged id)
  std::vector<AddedToken> added_;                          // longest content first
  int32_t unk_id_ = -1;
  bool fuse_unk_ = false;
  bool ignore_merges_ = false;
  bool add_prefix_space_ = false;
  bool use_regex_ = true;
  int32_t bos_id_ = -1;
  int32_t eos_id_ = -1;
};

// Incremental decoding for streaming output, as dlavm.tokenizer.DecodeStream:
// step(id) returns the text that id completes ("" while a character's bytes
// are still incomplete), flush() what is left at the end (an incomplete
// character as U+FFFD). The pieces concatenate to decode(all ids). The
// tokenizer must outlive the stream.
class TokenizerDecodeStream {
 public:
  explicit TokenizerDecodeStream(const Tokenizer& tokenizer) : tok_(&tokenizer) {}
  std::string step(int32_t id);
  std::string flush();

 private:
  const Tokenizer* tok_;
  std::vector<int32_t> ids_;
  size_t prefix_ = 0;  // ids_[prefix_, read_) were emitted already and serve as left context
  size_t read_ = 0;
};

// The ByteLevel pre-tokenizer's split of `text` (GPT-2 pattern), before the
// byte-to-character mapping: the pieces concatenate to `text`. Exposed for tests.
std::vector<std::string> gpt2_split(const std::string& text);

}  // namespace dlavm
