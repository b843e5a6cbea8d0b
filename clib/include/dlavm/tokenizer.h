// A tokenizer reading a Hugging Face `tokenizer.json` (doc/tokenizer.md): byte-level BPE (GPT-2,
// Llama-2 style) and BERT's WordPiece. It gives the ids of Python's
// `tokenizers.Tokenizer.encode(text, add_special_tokens)` (padding and truncation not applied) and
// the text of `decode(ids, skip_special_tokens)` for the features it accepts:
//   normalizer    null, or BertNormalizer (clean_text, handle_chinese_chars, strip_accents,
//                 lowercase; Unicode tables generated from HF tokenizers)
//   pre_tokenizer ByteLevel (use_regex: the GPT-2 split, hand-written; add_prefix_space
//                 supported), or BertPreTokenizer (whitespace and punctuation)
//   model         BPE (vocab + merges; no dropout, no byte_fallback, no
//                 continuing_subword_prefix / end_of_word_suffix; ignore_merges ok), or
//                 WordPiece (unk_token, continuing_subword_prefix, max_input_chars_per_word)
//   decoder       ByteLevel, or WordPiece (prefix, cleanup)
//   added_tokens  matched in the input before normalization (leftmost, longest);
//                 lstrip / rstrip / single_word must be false; `normalized` ones only
//                 without a normalizer (then matched after the others, as HF does)
//   post_processor applied by encode(text, true): TemplateProcessing (single-sequence
//                 template), BertProcessing, RobertaProcessing, ByteLevel, Sequence of
//                 these; another type loads, but encode(text, true) refuses it
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

namespace json {
class Value;
}

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

  // Ids of `text` (UTF-8). With add_special_tokens, the post-processor's single-sequence
  // template is applied (BERT: [CLS] ... [SEP]); TokenizerError if the post-processor is not
  // supported. Without a normalizer an invalid byte is a one-byte "other" character; the
  // BertNormalizer reads each maximal invalid UTF-8 subpart as U+FFFD (which clean_text drops).
  std::vector<int32_t> encode(const std::string& text, bool add_special_tokens = false) const;
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
  // The normalizer's output for `text` (the text itself without a normalizer). Exposed for tests.
  std::string normalize(const std::string& text) const;

 private:
  struct AddedToken {
    std::string content;
    int32_t id;
    bool special;
    bool normalized;  // matched in the normalized text (only without a normalizer)
  };
  enum class NormalizerKind { kNone, kBert };
  enum class PreTokenizerKind { kByteLevel, kBert };
  enum class ModelKind { kBPE, kWordPiece };
  enum class DecoderKind { kByteLevel, kWordPiece };

  void parse_post_processor(const json::Value& v, const std::string& field);
  void encode_word(const std::string& word, std::vector<int32_t>& out) const;  // BPE
  void encode_wordpiece(const std::string& word, std::vector<int32_t>& out) const;
  void encode_plain(const std::string& text, std::vector<int32_t>& out) const;
  template <typename OnGap>
  void split_added(const std::string& text, const std::vector<AddedToken>& tokens, OnGap on_gap,
                   std::vector<int32_t>& out) const;
  [[noreturn]] void fail(const std::string& msg) const;

  std::string path_;
  std::unordered_map<std::string, int32_t> vocab_;        // model vocabulary and added tokens
  std::vector<std::string> id_to_token_;
  std::vector<bool> is_special_;                           // the token is a special added token's content
  std::map<std::pair<int32_t, int32_t>, std::pair<int32_t, int32_t>> merges_;  // -> (rank, merged id)
  std::vector<AddedToken> added_raw_;                      // matched on the raw text, longest content first
  std::vector<AddedToken> added_normalized_;               // matched on the normalized text, longest first
  NormalizerKind normalizer_ = NormalizerKind::kNone;
  bool clean_text_ = true, handle_chinese_chars_ = true, strip_accents_ = true, lowercase_ = true;
  PreTokenizerKind pre_tokenizer_ = PreTokenizerKind::kByteLevel;
  ModelKind model_ = ModelKind::kBPE;
  DecoderKind decoder_ = DecoderKind::kByteLevel;
  int32_t unk_id_ = -1;
  bool fuse_unk_ = false;
  bool ignore_merges_ = false;
  bool add_prefix_space_ = false;
  bool use_regex_ = true;
  // WordPiece: the model's own vocabulary (added tokens excluded), its continuing-subword prefix,
  // the longest word it splits (longer ones are unk) and its longest token in bytes.
  std::unordered_map<std::string, int32_t> wordpiece_vocab_;
  std::string wordpiece_prefix_;
  uint64_t wordpiece_max_chars_ = 100;
  size_t wordpiece_max_token_bytes_ = 0;
  std::string decoder_prefix_ = "##";
  bool decoder_cleanup_ = true;
  // The post-processor as a list of single-sequence templates applied in order: ids, with -1
  // standing for the sequence. Empty: nothing added. post_error_ non-empty: not supported.
  std::vector<std::vector<int32_t>> post_templates_;
  std::string post_error_;
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
