// Byte-level BPE and BERT WordPiece from a Hugging Face tokenizer.json (doc/tokenizer.md).
#include "dlavm/tokenizer.h"

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <sstream>
#include <unordered_set>

#include "dlavm/json.h"

namespace dlavm {
namespace {

// ---- character classes of the GPT-2 pattern ----------------------------------

enum CharClass : uint8_t { kOther, kL, kN, kS };

struct ClassRange {
  uint32_t first, last;
  CharClass cls;
};

const ClassRange kClassTable[] = {
#include "tokenizer_unicode_table.inc"
};

CharClass class_of(uint32_t cp) {
  const ClassRange* begin = std::begin(kClassTable);
  const ClassRange* end = std::end(kClassTable);
  const ClassRange* it = std::upper_bound(begin, end, cp,
                                          [](uint32_t c, const ClassRange& r) { return c < r.first; });
  if (it == begin) return kOther;
  --it;
  return cp <= it->last ? it->cls : kOther;
}

// Decode the UTF-8 sequence at b[i]: true with the code point and length, or
// false with *len the length of the maximal invalid subpart (the lead byte and
// the continuation bytes that still fit it; at least 1).
bool utf8_next(const unsigned char* b, size_t n, size_t i, uint32_t* cp, size_t* len) {
  uint32_t c = b[i];
  *len = 1;
  *cp = c;
  if (c < 0x80) return true;
  size_t need;
  uint32_t lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) {
    need = 2; *cp = c & 0x1F;
  } else if (c >= 0xE0 && c <= 0xEF) {
    need = 3; *cp = c & 0x0F;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    need = 4; *cp = c & 0x07;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    return false;
  }
  for (size_t k = 1; k < need; ++k) {
    if (i + k >= n) return false;
    uint32_t cc = b[i + k];
    if (cc < (k == 1 ? lo : 0x80) || cc > (k == 1 ? hi : 0xBF)) return false;
    *cp = (*cp << 6) | (cc & 0x3F);
    *len = k + 1;
  }
  return true;
}

// One character of the input: its bytes [off, off + len) and class. A byte
// that does not start a valid UTF-8 sequence is a one-byte character of
// class "other" (Python strings cannot hold such bytes).
struct Char {
  size_t off, len;
  uint32_t cp;
  bool valid;
  CharClass cls;
};

std::vector<Char> utf8_chars(const std::string& s) {
  std::vector<Char> out;
  out.reserve(s.size());
  const auto* b = reinterpret_cast<const unsigned char*>(s.data());
  size_t n = s.size(), i = 0;
  while (i < n) {
    uint32_t cp;
    size_t len;
    bool ok = utf8_next(b, n, i, &cp, &len);
    if (!ok) {
      len = 1;
      cp = b[i];
    }
    out.push_back({i, len, cp, ok, ok ? class_of(cp) : kOther});
    i += len;
  }
  return out;
}

// ---- byte-level mapping (GPT-2 bytes_to_unicode) -------------------------------

std::string utf8_encode(uint32_t cp) {
  std::string s;
  if (cp < 0x80) {
    s += static_cast<char>(cp);
  } else if (cp < 0x800) {
    s += static_cast<char>(0xC0 | (cp >> 6));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    s += static_cast<char>(0xE0 | (cp >> 12));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    s += static_cast<char>(0xF0 | (cp >> 18));
    s += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return s;
}

struct ByteMap {
  std::string byte_to_char[256];                  // UTF-8 of the character standing for each byte
  std::unordered_map<uint32_t, uint8_t> char_to_byte;
  ByteMap() {
    uint32_t next = 256;
    for (uint32_t b = 0; b < 256; ++b) {
      bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      uint32_t cp = printable ? b : next++;
      byte_to_char[b] = utf8_encode(cp);
      char_to_byte[cp] = static_cast<uint8_t>(b);
    }
  }
};

const ByteMap& byte_map() {
  static const ByteMap m;
  return m;
}

// Python's bytes.decode("utf-8", errors="replace") (and Rust's
// from_utf8_lossy): each maximal invalid subpart becomes one U+FFFD.
std::string utf8_lossy(const std::string& bytes) {
  std::string out;
  const auto* b = reinterpret_cast<const unsigned char*>(bytes.data());
  size_t n = bytes.size(), i = 0;
  while (i < n) {
    uint32_t cp;
    size_t len;
    if (utf8_next(b, n, i, &cp, &len))
      out.append(bytes, i, len);
    else
      out += "\xEF\xBF\xBD";
    i += len;
  }
  return out;
}

bool is_contraction_tail(const std::vector<Char>& cs, size_t i, size_t* len) {
  // after an apostrophe at i-1: s t re ve m ll d, in the pattern's order
  static const char* const kTails[] = {"s", "t", "re", "ve", "m", "ll", "d"};
  for (const char* t : kTails) {
    size_t k = 0;
    while (t[k] && i + k < cs.size() && cs[i + k].cp == static_cast<unsigned char>(t[k])) ++k;
    if (!t[k]) {
      *len = k;
      return true;
    }
  }
  return false;
}

// ---- BERT: normalizer and pre-tokenizer -----------------------------------------

enum BertFlag : uint8_t { kDrop = 1, kToSpace = 2, kCjk = 4, kMn = 8, kWs = 16, kPunct = 32 };
struct BertFlagRange {
  uint32_t first, last;
  uint8_t flags;
};
struct CodePointMap {
  uint32_t cp;
  uint8_t len;
  uint32_t to[4];
};
struct CombiningClassRange {
  uint32_t first, last;
  uint8_t ccc;
};

#include "tokenizer_bert_table.inc"

template <typename Range>
const Range* find_range(const Range* begin, const Range* end, uint32_t cp) {
  const Range* it = std::upper_bound(begin, end, cp, [](uint32_t c, const Range& r) { return c < r.first; });
  if (it == begin) return nullptr;
  --it;
  return cp <= it->last ? it : nullptr;
}

uint8_t bert_flags(uint32_t cp) {
  const BertFlagRange* r = find_range(std::begin(kBertFlags), std::end(kBertFlags), cp);
  return r ? r->flags : 0;
}

uint8_t combining_class(uint32_t cp) {
  const CombiningClassRange* r = find_range(std::begin(kBertCombiningClasses), std::end(kBertCombiningClasses), cp);
  return r ? r->ccc : 0;
}

const CodePointMap* find_map(const CodePointMap* begin, const CodePointMap* end, uint32_t cp) {
  const CodePointMap* it = std::lower_bound(begin, end, cp, [](const CodePointMap& m, uint32_t c) { return m.cp < c; });
  return it != end && it->cp == cp ? it : nullptr;
}

// Canonical decomposition (NFD) of one code point, appended to out: Hangul syllables
// arithmetically, others by the table (already fully decomposed and ordered).
void decompose(uint32_t cp, std::vector<uint32_t>& out) {
  constexpr uint32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7, kSCount = 11172;
  if (cp >= kSBase && cp < kSBase + kSCount) {
    const uint32_t s = cp - kSBase;
    out.push_back(kLBase + s / 588);
    out.push_back(kVBase + (s % 588) / 28);
    if (s % 28) out.push_back(kTBase + s % 28);
    return;
  }
  if (const CodePointMap* m = find_map(std::begin(kBertDecompositions), std::end(kBertDecompositions), cp)) {
    out.insert(out.end(), m->to, m->to + m->len);
    return;
  }
  out.push_back(cp);
}

// Code points of UTF-8 `s`, each maximal invalid subpart read as U+FFFD (Python's errors="replace").
std::vector<uint32_t> code_points_lossy(const std::string& s) {
  std::vector<uint32_t> out;
  out.reserve(s.size());
  const auto* b = reinterpret_cast<const unsigned char*>(s.data());
  size_t n = s.size(), i = 0;
  while (i < n) {
    uint32_t cp;
    size_t len;
    out.push_back(utf8_next(b, n, i, &cp, &len) ? cp : 0xFFFD);
    i += len;
  }
  return out;
}

// HF's BertNormalizer: clean_text, then handle_chinese_chars, then strip_accents (NFD, with
// canonical reordering of marks, then nonspacing marks dropped), then lowercase.
std::string bert_normalize(const std::string& text, bool clean_text, bool chinese, bool strip_accents,
                           bool lowercase) {
  std::vector<uint32_t> cps = code_points_lossy(text), next;
  next.reserve(cps.size());
  if (clean_text || chinese) {
    for (uint32_t cp : cps) {
      const uint8_t f = bert_flags(cp);
      if (clean_text && (f & kDrop)) continue;
      if (clean_text && (f & kToSpace)) {
        next.push_back(' ');
      } else if (chinese && (f & kCjk)) {
        next.push_back(' ');
        next.push_back(cp);
        next.push_back(' ');
      } else {
        next.push_back(cp);
      }
    }
    cps.swap(next);
    next.clear();
  }
  if (strip_accents) {
    for (uint32_t cp : cps) decompose(cp, next);
    // canonical ordering: each run of marks (class > 0) sorted stably by class
    for (size_t i = 0; i < next.size();) {
      if (combining_class(next[i]) == 0) {
        ++i;
        continue;
      }
      size_t j = i;
      while (j < next.size() && combining_class(next[j]) != 0) ++j;
      std::stable_sort(next.begin() + static_cast<std::ptrdiff_t>(i), next.begin() + static_cast<std::ptrdiff_t>(j),
                       [](uint32_t a, uint32_t b) { return combining_class(a) < combining_class(b); });
      i = j;
    }
    cps.clear();
    for (uint32_t cp : next)
      if (!(bert_flags(cp) & kMn)) cps.push_back(cp);
    next.clear();
  }
  if (lowercase) {
    for (uint32_t cp : cps) {
      if (const CodePointMap* m = find_map(std::begin(kBertLowercase), std::end(kBertLowercase), cp))
        next.insert(next.end(), m->to, m->to + m->len);
      else
        next.push_back(cp);
    }
    cps.swap(next);
  }
  std::string out;
  out.reserve(cps.size());
  for (uint32_t cp : cps) out += utf8_encode(cp);
  return out;
}

// HF's BertPreTokenizer: split on whitespace (dropped) and punctuation (each mark a word).
template <typename OnWord>
void bert_pre_tokenize(const std::string& text, OnWord on_word) {
  size_t start = 0, i = 0;
  const auto* b = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  while (i < n) {
    uint32_t cp;
    size_t len;
    const uint8_t f = utf8_next(b, n, i, &cp, &len) ? bert_flags(cp) : 0;
    if (f & (kWs | kPunct)) {
      if (i > start) on_word(text.substr(start, i - start));
      if (f & kPunct) on_word(text.substr(i, len));
      start = i + len;
    }
    i += len;
  }
  if (n > start) on_word(text.substr(start));
}

// Rust's str::replace: every non-overlapping occurrence of `from`, left to right.
std::string replace_all(const std::string& s, const std::string& from, const std::string& to) {
  std::string out;
  size_t pos = 0;
  for (size_t hit; (hit = s.find(from, pos)) != std::string::npos; pos = hit + from.size()) {
    out.append(s, pos, hit - pos);
    out += to;
  }
  out.append(s, pos, std::string::npos);
  return out;
}

// The WordPiece decoder's cleanup of one token (HF decoders::wordpiece::cleanup).
std::string wordpiece_cleanup(const std::string& token) {
  static const char* const kRules[][2] = {{" .", "."},       {" ?", "?"},         {" !", "!"},   {" ,", ","},
                                          {" ' ", "'"},      {" n't", "n't"},     {" 'm", "'m"}, {" do not", " don't"},
                                          {" 's", "'s"},     {" 've", "'ve"},     {" 're", "'re"}};
  std::string s = token;
  for (const auto& rule : kRules) s = replace_all(s, rule[0], rule[1]);
  return s;
}

const char* const kBosNames[] = {"<s>", "<|begin_of_text|>", "<bos>", "<|endoftext|>"};
const char* const kEosNames[] = {"</s>", "<|endoftext|>", "<|im_end|>", "<|eot_id|>", "<eos>"};

}  // namespace

// 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
std::vector<std::string> gpt2_split(const std::string& text) {
  std::vector<std::string> pieces;
  std::vector<Char> cs = utf8_chars(text);
  size_t n = cs.size(), i = 0;
  auto emit = [&](size_t from, size_t to) {  // characters [from, to)
    size_t off = cs[from].off;
    size_t end = to < n ? cs[to].off : text.size();
    pieces.push_back(text.substr(off, end - off));
  };
  while (i < n) {
    size_t tail = 0;
    if (cs[i].cp == '\'' && is_contraction_tail(cs, i + 1, &tail)) {
      emit(i, i + 1 + tail);
      i += 1 + tail;
      continue;
    }
    // ` ?X+` for X in letter, number, other: the class of the first
    // character after an optional single space decides which alternative.
    size_t j = i;
    if (cs[i].cp == ' ' && i + 1 < n && cs[i + 1].cls != kS) j = i + 1;
    CharClass k = cs[j].cls;
    if (k != kS) {
      size_t e = j + 1;
      while (e < n && cs[e].cls == k) ++e;
      emit(i, e);
      i = e;
      continue;
    }
    // whitespace: the run, less its last character when a non-space follows
    // (\s+(?!\S)); a single whitespace character before a non-space is \s+.
    size_t e = i + 1;
    while (e < n && cs[e].cls == kS) ++e;
    if (e < n && e - i > 1) --e;
    emit(i, e);
    i = e;
  }
  return pieces;
}

void Tokenizer::fail(const std::string& msg) const { throw TokenizerError("tokenizer " + path_ + ": " + msg); }

Tokenizer Tokenizer::from_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw TokenizerError("tokenizer " + path + ": cannot open file (does it exist?)");
  std::ostringstream ss;
  ss << f.rdbuf();
  return from_json(ss.str(), path);
}

Tokenizer Tokenizer::from_json(const std::string& text, const std::string& origin) {
  Tokenizer t;
  t.path_ = origin;
  json::Value root;
  try {
    root = json::parse(text);
  } catch (const json::ParseError& e) {
    t.fail(std::string("not valid JSON: ") + e.what());
  }
  try {
    if (!root.is_object()) t.fail("not a JSON object");
    auto is_null_or = [](const json::Value* v, auto pred) { return !v || v->is_null() || pred(*v); };
    auto falsy = [](const json::Value& v) { return v.is_bool() && !v.as_bool(); };
    auto empty_str = [](const json::Value& v) { return v.is_string() && v.as_string().empty(); };

    auto type_of = [](const json::Value& v) {
      return v.is_null() ? std::string("null") : v.find("type") ? v.at("type").dump() : std::string("(none)");
    };
    auto bool_field = [&t](const json::Value& obj, const char* key, const std::string& field, bool* out) {
      const json::Value* v = obj.find(key);
      if (!v) return;
      if (!v->is_bool()) t.fail(field + "." + key + " must be true or false, not " + v->dump());
      *out = v->as_bool();
    };

    const json::Value* norm = root.find("normalizer");
    if (norm && !norm->is_null()) {
      if (!norm->find("type") || norm->at("type").dump() != "\"BertNormalizer\"")
        t.fail("unsupported normalizer (type '" + (norm->find("type") ? norm->at("type").dump() : std::string("?")) +
               "'): only null and 'BertNormalizer' are supported");
      t.normalizer_ = NormalizerKind::kBert;
      bool_field(*norm, "clean_text", "normalizer", &t.clean_text_);
      bool_field(*norm, "handle_chinese_chars", "normalizer", &t.handle_chinese_chars_);
      bool_field(*norm, "lowercase", "normalizer", &t.lowercase_);
      t.strip_accents_ = t.lowercase_;  // null: follow lowercase
      if (const json::Value* v = norm->find("strip_accents"); v && !v->is_null())
        bool_field(*norm, "strip_accents", "normalizer", &t.strip_accents_);
    }

    const json::Value& pre = root.at("pre_tokenizer");
    const std::string pre_type = type_of(pre);
    if (pre_type == "\"ByteLevel\"") {
      if (const json::Value* v = pre.find("add_prefix_space")) t.add_prefix_space_ = v->as_bool();
      if (const json::Value* v = pre.find("use_regex")) t.use_regex_ = v->as_bool();
    } else if (pre_type == "\"BertPreTokenizer\"") {
      t.pre_tokenizer_ = PreTokenizerKind::kBert;
    } else {
      t.fail("unsupported pre_tokenizer.type " + pre_type + ": only 'ByteLevel' and 'BertPreTokenizer' are supported");
    }

    const json::Value& dec = root.at("decoder");
    const std::string dec_type = type_of(dec);
    if (dec_type == "\"WordPiece\"") {
      t.decoder_ = DecoderKind::kWordPiece;
      if (const json::Value* v = dec.find("prefix")) t.decoder_prefix_ = v->as_string();
      bool_field(dec, "cleanup", "decoder", &t.decoder_cleanup_);
    } else if (dec_type != "\"ByteLevel\"") {
      t.fail("unsupported decoder.type " + dec_type + ": only 'ByteLevel' and 'WordPiece' are supported");
    }

    const json::Value& model = root.at("model");
    const std::string model_type = model.find("type") ? model.at("type").dump() : std::string("(none)");
    if (model_type == "\"WordPiece\"") {
      t.model_ = ModelKind::kWordPiece;
      const json::Value* unk = model.find("unk_token");
      if (!unk || !unk->is_string()) t.fail("model.unk_token: WordPiece needs an unk_token string");
      if (const json::Value* v = model.find("continuing_subword_prefix"); v && !v->is_null())
        t.wordpiece_prefix_ = v->as_string();
      else
        t.fail("model.continuing_subword_prefix: WordPiece needs a string");
      if (const json::Value* v = model.find("max_input_chars_per_word")) {
        if (!v->is_int() || v->as_int() < 0)
          t.fail("model.max_input_chars_per_word must be an integer >= 0, not " + v->dump());
        t.wordpiece_max_chars_ = static_cast<uint64_t>(v->as_int());
      }
    } else if (model_type == "\"BPE\"") {
      if (!is_null_or(model.find("dropout"), [](const json::Value& v) { return v.is_number() && v.as_double() == 0; }))
        t.fail("unsupported model.dropout (BPE dropout is random; must be null)");
      if (!is_null_or(model.find("byte_fallback"), falsy)) t.fail("unsupported model.byte_fallback: must be false");
      if (!is_null_or(model.find("continuing_subword_prefix"), empty_str))
        t.fail("unsupported model.continuing_subword_prefix: must be null");
      if (!is_null_or(model.find("end_of_word_suffix"), empty_str))
        t.fail("unsupported model.end_of_word_suffix: must be null");
      if (const json::Value* v = model.find("fuse_unk"); v && !v->is_null()) t.fuse_unk_ = v->as_bool();
      if (const json::Value* v = model.find("ignore_merges"); v && !v->is_null()) t.ignore_merges_ = v->as_bool();
    } else {
      t.fail("unsupported model.type " + model_type + ": only 'BPE' and 'WordPiece' are supported");
    }

    // Ids are checked before the id table is sized (an id of 2e9 must not allocate 2e9 entries):
    // each must lie in [0, min(kMaxTokenIds, number of entries)), the entries being model.vocab plus
    // added_tokens; the table is then sized by the largest id present and must have no gap.
    const json::Value::Object& vocab = model.at("vocab").as_object();
    const json::Value* added = root.find("added_tokens");
    const json::Value::Array no_added;
    const json::Value::Array& added_arr = added && !added->is_null() ? added->as_array() : no_added;
    const size_t entries = vocab.size() + added_arr.size();
    const int64_t id_limit = static_cast<int64_t>(std::min<size_t>(kMaxTokenIds, entries));
    int64_t max_id = -1;
    auto checked_id = [&](const json::Value& v, const std::string& field) {
      const int64_t id = v.as_int();
      if (id < 0 || id >= id_limit)
        t.fail(field + ": id " + std::to_string(id) + " is out of range: ids must be in [0, " +
               std::to_string(id_limit) + ") (below 2^24 and below the " + std::to_string(entries) +
               " entries of model.vocab and added_tokens)");
      max_id = std::max(max_id, id);
      return id;
    };
    for (const auto& [tok, id] : vocab) checked_id(id, "model.vocab['" + tok + "']");
    for (size_t i = 0; i < added_arr.size(); ++i)
      checked_id(added_arr[i].at("id"), "added_tokens[" + std::to_string(i) + "].id");
    t.id_to_token_.resize(static_cast<size_t>(max_id + 1));
    t.is_special_.resize(static_cast<size_t>(max_id + 1), false);
    auto set_token = [&t](const std::string& tok, int64_t id) {
      t.id_to_token_[id] = tok;
      t.vocab_[tok] = static_cast<int32_t>(id);
    };
    for (const auto& [tok, id] : vocab) set_token(tok, id.as_int());

    if (t.model_ == ModelKind::kBPE) {
      const json::Value::Array& merges = model.at("merges").as_array();
      for (size_t r = 0; r < merges.size(); ++r) {
        std::string a, b;
        const json::Value& m = merges[r];
        if (m.is_string()) {  // older format: "a b"
          const std::string& s = m.as_string();
          size_t sp = s.find(' ', 1);
          if (sp == std::string::npos) t.fail("model.merges[" + std::to_string(r) + "] '" + s + "' is not 'a b'");
          a = s.substr(0, sp);
          b = s.substr(sp + 1);
        } else {
          if (m.size() != 2) t.fail("model.merges[" + std::to_string(r) + "] is not a pair");
          a = m.at(size_t{0}).as_string();
          b = m.at(size_t{1}).as_string();
        }
        auto ia = t.vocab_.find(a), ib = t.vocab_.find(b), iab = t.vocab_.find(a + b);
        if (ia == t.vocab_.end() || ib == t.vocab_.end() || iab == t.vocab_.end())
          t.fail("model.merges[" + std::to_string(r) + "] ('" + a + "', '" + b + "') uses a token not in model.vocab");
        t.merges_.emplace(std::make_pair(ia->second, ib->second),
                          std::make_pair(static_cast<int32_t>(r), iab->second));
      }
      if (const json::Value* u = model.find("unk_token"); u && !u->is_null()) {
        auto it = t.vocab_.find(u->as_string());
        if (it == t.vocab_.end()) t.fail("model.unk_token '" + u->as_string() + "' is not in model.vocab");
        t.unk_id_ = it->second;
      }
    } else {
      // WordPiece looks words up in its own vocabulary, not among the added tokens.
      t.wordpiece_vocab_.reserve(vocab.size());
      for (const auto& [tok, id] : vocab) {
        t.wordpiece_vocab_[tok] = static_cast<int32_t>(id.as_int());
        t.wordpiece_max_token_bytes_ = std::max(t.wordpiece_max_token_bytes_, tok.size());
      }
      const std::string& unk = model.at("unk_token").as_string();
      auto it = t.wordpiece_vocab_.find(unk);
      if (it == t.wordpiece_vocab_.end()) t.fail("model.unk_token '" + unk + "' is not in model.vocab");
      t.unk_id_ = it->second;
    }

    // HF tokenizers does not take an added token's id from the file: it gives it its id in the
    // vocabulary (model.vocab, or an earlier added token), else the next id after the model's
    // vocabulary and the added tokens so far. A file whose ids disagree is refused.
    const int64_t model_size = static_cast<int64_t>(vocab.size());
    int64_t max_added = -1;
    std::vector<AddedToken> added_tokens;
    for (size_t i = 0; i < added_arr.size(); ++i) {
      const json::Value& a = added_arr[i];
      std::string field = "added_tokens[" + std::to_string(i) + "]";
      for (const char* flag : {"single_word", "lstrip", "rstrip"})
        if (const json::Value* v = a.find(flag); v && v->as_bool())
          t.fail("unsupported " + field + "." + flag + " = true");
      const bool special = a.find("special") && a.at("special").as_bool();
      const json::Value* normalized = a.find("normalized");
      AddedToken tok{a.at("content").as_string(), 0, special, normalized ? normalized->as_bool() : !special};
      if (tok.content.empty()) t.fail(field + ".content is empty");
      if (tok.normalized && t.normalizer_ != NormalizerKind::kNone)
        t.fail("unsupported " + field + ".normalized = true with a normalizer (only added tokens matched on the "
               "raw text, normalized = false, are supported then)");
      const int64_t id = a.at("id").as_int();
      auto known = t.vocab_.find(tok.content);
      const int64_t expected = known != t.vocab_.end() ? known->second : max_added >= model_size ? max_added + 1
                                                                                                  : model_size;
      if (id != expected)
        t.fail(field + ".id: '" + tok.content + "' has id " + std::to_string(id) + ", but HF tokenizers gives it id " +
               std::to_string(expected) + " (its id in the vocabulary, or the next one after it)");
      max_added = std::max(max_added, id);
      set_token(tok.content, id);
      tok.id = static_cast<int32_t>(id);
      (tok.normalized ? t.added_normalized_ : t.added_raw_).push_back(tok);
      added_tokens.push_back(tok);
    }
    auto longest_first = [](const AddedToken& x, const AddedToken& y) { return x.content.size() > y.content.size(); };
    std::stable_sort(t.added_raw_.begin(), t.added_raw_.end(), longest_first);
    std::stable_sort(t.added_normalized_.begin(), t.added_normalized_.end(), longest_first);

    for (size_t id = 0; id < t.id_to_token_.size(); ++id)
      if (t.id_to_token_[id].empty()) t.fail("id " + std::to_string(id) + " has no token (the ids have a gap)");
    // decode skips a token whose text is that of a special added token, as HF does
    std::unordered_set<std::string> special_contents;
    for (const AddedToken& a : added_tokens)
      if (a.special) special_contents.insert(a.content);
    if (!special_contents.empty())
      for (size_t id = 0; id < t.id_to_token_.size(); ++id)
        if (special_contents.count(t.id_to_token_[id])) t.is_special_[id] = true;
    if (const json::Value* post = root.find("post_processor"); post && !post->is_null())
      t.parse_post_processor(*post, "post_processor");
  } catch (const json::TypeError& e) {
    t.fail(std::string("unexpected tokenizer.json structure: ") + e.what());
  }
  for (const char* name : kBosNames) {
    int32_t id = t.token_to_id(name);
    if (id >= 0 && t.is_special_[id]) { t.bos_id_ = id; break; }
  }
  for (const char* name : kEosNames) {
    int32_t id = t.token_to_id(name);
    if (id >= 0 && t.is_special_[id]) { t.eos_id_ = id; break; }
  }
  return t;
}

// The post-processor as single-sequence templates (doc/tokenizer.md): TemplateProcessing's
// "single", BertProcessing / RobertaProcessing's [cls] $A [sep], ByteLevel's nothing, a Sequence's
// members in order. An unknown type is recorded, and refused by encode(text, true) only.
void Tokenizer::parse_post_processor(const json::Value& v, const std::string& field) {
  const std::string type = v.find("type") ? v.at("type").dump() : std::string("(none)");
  const int64_t n = static_cast<int64_t>(id_to_token_.size());
  auto checked = [&](const json::Value& id, const std::string& where) {
    if (!id.is_int() || id.as_int() < 0 || id.as_int() >= n)
      fail(where + ": id " + id.dump() + " is outside the vocabulary [0, " + std::to_string(n) + ")");
    return static_cast<int32_t>(id.as_int());
  };
  if (type == "\"TemplateProcessing\"") {
    const json::Value& specials = v.at("special_tokens");
    std::vector<int32_t> tmpl;
    const json::Value::Array& single = v.at("single").as_array();
    bool has_sequence = false;
    for (size_t i = 0; i < single.size(); ++i) {
      const std::string item = field + ".single[" + std::to_string(i) + "]";
      if (const json::Value* st = single[i].find("SpecialToken")) {
        const std::string& name = st->at("id").as_string();
        const json::Value* spec = specials.find(name);
        if (!spec) fail(item + ": special token '" + name + "' is not in " + field + ".special_tokens");
        const json::Value::Array& ids = spec->at("ids").as_array();
        for (size_t k = 0; k < ids.size(); ++k)
          tmpl.push_back(checked(ids[k], field + ".special_tokens['" + name + "'].ids[" + std::to_string(k) + "]"));
      } else if (const json::Value* sq = single[i].find("Sequence")) {
        if (sq->at("id").as_string() != "A")
          fail(item + ": sequence '" + sq->at("id").as_string() + "' in the single-sequence template (only 'A')");
        if (has_sequence) fail(item + ": the single-sequence template holds the sequence twice");
        has_sequence = true;
        tmpl.push_back(-1);
      } else {
        fail(item + ": neither a SpecialToken nor a Sequence");
      }
    }
    if (!has_sequence) fail(field + ".single: the template has no sequence");
    post_templates_.push_back(tmpl);
  } else if (type == "\"BertProcessing\"" || type == "\"RobertaProcessing\"") {
    const json::Value& cls = v.at("cls");
    const json::Value& sep = v.at("sep");
    if (cls.size() != 2 || sep.size() != 2) fail(field + ": cls and sep must be [token, id] pairs");
    post_templates_.push_back(
        {checked(cls.at(size_t{1}), field + ".cls"), -1, checked(sep.at(size_t{1}), field + ".sep")});
  } else if (type == "\"ByteLevel\"") {
    // offsets only: no ids added
  } else if (type == "\"Sequence\"") {
    const json::Value::Array& procs = v.at("processors").as_array();
    for (size_t i = 0; i < procs.size(); ++i)
      parse_post_processor(procs[i], field + ".processors[" + std::to_string(i) + "]");
  } else if (post_error_.empty()) {
    post_error_ = "unsupported " + field + ".type " + type +
                  " for add_special_tokens (supported: TemplateProcessing, BertProcessing, RobertaProcessing, "
                  "ByteLevel, Sequence)";
  }
}

std::string Tokenizer::normalize(const std::string& text) const {
  if (normalizer_ == NormalizerKind::kNone) return text;
  return bert_normalize(text, clean_text_, handle_chinese_chars_, strip_accents_, lowercase_);
}

int32_t Tokenizer::token_to_id(const std::string& token) const {
  auto it = vocab_.find(token);
  return it == vocab_.end() ? -1 : it->second;
}

const std::string& Tokenizer::id_to_token(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= id_to_token_.size())
    fail("token id " + std::to_string(id) + " is outside the vocabulary [0, " +
         std::to_string(id_to_token_.size()) + ")");
  return id_to_token_[id];
}

// BPE on one pre-token (already byte-mapped): apply the lowest-ranked merge
// among adjacent symbols, leftmost first, until none applies. The symbols form a
// doubly linked list over an array in word order (a merged symbol keeps the
// index of its left part); the pairs that have a merge wait in a min-heap keyed
// by (rank, index of the left symbol), so a word of n characters takes
// O(n log n) (each merge removes a symbol and adds at most two pairs). A heap
// entry names its pair by the indices of its two symbols and of the one after
// them; it is stale (skipped when popped) once its left symbol was absorbed or
// either symbol's link to the next changed, which every merge touching them
// does. Popping the smallest live (rank, index) is the leftmost lowest-ranked
// merge, as in HF tokenizers (its word.rs does the same).
void Tokenizer::encode_word(const std::string& word, std::vector<int32_t>& out) const {
  if (ignore_merges_) {
    auto it = vocab_.find(word);
    if (it != vocab_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  struct Symbol {
    int32_t id;
    size_t prev, next;  // indices in syms; kNone at the ends
    bool alive;
  };
  constexpr size_t kNone = SIZE_MAX;
  std::vector<Symbol> syms;
  bool last_unk = false;
  for (const Char& c : utf8_chars(word)) {
    auto it = vocab_.find(word.substr(c.off, c.len));
    int32_t id;
    if (it != vocab_.end()) {
      id = it->second;
      last_unk = false;
    } else if (unk_id_ >= 0) {
      bool fused = fuse_unk_ && last_unk;
      last_unk = true;
      if (fused) continue;
      id = unk_id_;
    } else {
      continue;  // no unk token: the character is dropped, as HF does
    }
    size_t i = syms.size();
    syms.push_back({id, i == 0 ? kNone : i - 1, kNone, true});
    if (i > 0) syms[i - 1].next = i;
  }

  struct Pair {
    int32_t rank, merged;
    size_t left, right, after;  // the two symbols, and the one after them (kNone at the end)
  };
  auto later = [](const Pair& a, const Pair& b) { return a.rank != b.rank ? a.rank > b.rank : a.left > b.left; };
  std::vector<Pair> heap;
  heap.reserve(syms.size());
  auto push_pair = [&](size_t left) {
    if (left == kNone) return;
    size_t right = syms[left].next;
    if (right == kNone) return;
    auto it = merges_.find({syms[left].id, syms[right].id});
    if (it == merges_.end()) return;
    heap.push_back({it->second.first, it->second.second, left, right, syms[right].next});
    std::push_heap(heap.begin(), heap.end(), later);
  };
  for (size_t i = 0; i + 1 < syms.size(); ++i) push_pair(i);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), later);
    const Pair p = heap.back();
    heap.pop_back();
    Symbol& l = syms[p.left];
    if (!l.alive || l.next != p.right || syms[p.right].next != p.after) continue;  // stale
    l.id = p.merged;
    l.next = p.after;
    syms[p.right].alive = false;
    if (p.after != kNone) syms[p.after].prev = p.left;
    push_pair(l.prev);
    push_pair(p.left);
  }
  for (size_t i = syms.empty() ? kNone : 0; i != kNone; i = syms[i].next) out.push_back(syms[i].id);
}

// WordPiece on one word (HF models::wordpiece): from the left, the longest prefix of the rest that
// is in the vocabulary (written with the continuing-subword prefix after the first piece); the
// whole word is unk_token when some rest has no such prefix, or when it has more than
// max_input_chars_per_word characters. A candidate longer than the longest vocabulary token is
// not looked up (the same result, in O(length x longest token) for a long word).
void Tokenizer::encode_wordpiece(const std::string& word, std::vector<int32_t>& out) const {
  const std::vector<Char> cs = utf8_chars(word);
  const size_t n = cs.size();
  if (n > wordpiece_max_chars_) {
    out.push_back(unk_id_);
    return;
  }
  auto offset = [&](size_t k) { return k < n ? cs[k].off : word.size(); };
  std::vector<int32_t> pieces;
  std::string key;
  for (size_t start = 0; start < n;) {
    const size_t prefix = start > 0 ? wordpiece_prefix_.size() : 0;
    const size_t begin = cs[start].off;
    // the last character end that keeps the candidate within the longest token
    size_t end = n;
    if (wordpiece_max_token_bytes_ < prefix + (word.size() - begin)) {
      const size_t limit = begin + (wordpiece_max_token_bytes_ > prefix ? wordpiece_max_token_bytes_ - prefix : 0);
      size_t lo = start, hi = n;  // the largest end in [start, n] with offset(end) <= limit
      while (lo < hi) {
        const size_t mid = lo + (hi - lo + 1) / 2;
        if (offset(mid) <= limit) lo = mid; else hi = mid - 1;
      }
      end = lo;
    }
    bool found = false;
    for (; end > start; --end) {
      key.assign(start > 0 ? wordpiece_prefix_ : std::string());
      key.append(word, begin, offset(end) - begin);
      auto it = wordpiece_vocab_.find(key);
      if (it != wordpiece_vocab_.end()) {
        pieces.push_back(it->second);
        found = true;
        break;
      }
    }
    if (!found) {
      out.push_back(unk_id_);
      return;
    }
    start = end;
  }
  out.insert(out.end(), pieces.begin(), pieces.end());
}

void Tokenizer::encode_plain(const std::string& text, std::vector<int32_t>& out) const {
  if (text.empty()) return;
  auto model = [&](const std::string& word) {
    if (model_ == ModelKind::kBPE)
      encode_word(word, out);
    else
      encode_wordpiece(word, out);
  };
  if (pre_tokenizer_ == PreTokenizerKind::kBert) {
    bert_pre_tokenize(text, model);
    return;
  }
  std::string seg = add_prefix_space_ && text[0] != ' ' ? " " + text : text;
  const ByteMap& bm = byte_map();
  auto encode_piece = [&](const std::string& piece) {
    std::string mapped;
    for (unsigned char b : piece) mapped += bm.byte_to_char[b];
    model(mapped);
  };
  if (!use_regex_) {
    encode_piece(seg);
    return;
  }
  for (const std::string& piece : gpt2_split(seg)) encode_piece(piece);
}

// Cut the added tokens `tokens` (longest first) out of `text`: scanning left to right, the longest
// one matching at a position wins; their ids go to `out`, the text between them to on_gap.
template <typename OnGap>
void Tokenizer::split_added(const std::string& text, const std::vector<AddedToken>& tokens, OnGap on_gap,
                            std::vector<int32_t>& out) const {
  size_t start = 0, i = 0;
  while (i < text.size() && !tokens.empty()) {
    const AddedToken* hit = nullptr;
    for (const AddedToken& a : tokens) {
      if (text.compare(i, a.content.size(), a.content) == 0) {
        hit = &a;
        break;  // longest first
      }
    }
    if (!hit) {
      ++i;
      continue;
    }
    if (i > start) on_gap(text.substr(start, i - start));
    out.push_back(hit->id);
    i += hit->content.size();
    start = i;
  }
  if (start < text.size()) on_gap(text.substr(start));
}

std::vector<int32_t> Tokenizer::encode(const std::string& text, bool add_special_tokens) const {
  if (add_special_tokens && !post_error_.empty()) fail(post_error_);
  // As HF: the added tokens matched on the raw text are cut out first; each piece between them is
  // normalized, then the added tokens matched on normalized text are cut out of it, and what is
  // left is pre-tokenized and given to the model.
  std::vector<int32_t> ids;
  split_added(
      text, added_raw_,
      [&](const std::string& gap) {
        split_added(normalize(gap), added_normalized_, [&](const std::string& piece) { encode_plain(piece, ids); },
                    ids);
      },
      ids);
  if (!add_special_tokens) return ids;
  for (const std::vector<int32_t>& tmpl : post_templates_) {
    std::vector<int32_t> next;
    next.reserve(ids.size() + tmpl.size());
    for (int32_t item : tmpl) {
      if (item < 0)
        next.insert(next.end(), ids.begin(), ids.end());
      else
        next.push_back(item);
    }
    ids.swap(next);
  }
  return ids;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const {
  if (decoder_ == DecoderKind::kWordPiece) {
    // HF's WordPiece decoder: after the first token, a token starting with the prefix loses it,
    // any other gets a space in front; then each token is cleaned up on its own.
    std::string text;
    size_t i = 0;
    for (int32_t id : ids) {
      const std::string& tok = id_to_token(id);
      if (skip_special_tokens && is_special_[id]) continue;
      std::string piece;
      if (i++ == 0)
        piece = tok;
      else if (tok.compare(0, decoder_prefix_.size(), decoder_prefix_) == 0)
        piece = tok.substr(decoder_prefix_.size());
      else
        piece = " " + tok;
      text += decoder_cleanup_ ? wordpiece_cleanup(piece) : piece;
    }
    return text;
  }
  const ByteMap& bm = byte_map();
  std::string bytes;
  for (int32_t id : ids) {
    const std::string& tok = id_to_token(id);
    if (skip_special_tokens && is_special_[id]) continue;
    // HF's ByteLevel decoder: a token whose characters all stand for bytes
    // gives those bytes; any other token gives its own UTF-8 text.
    std::string tb;
    bool all_mapped = true;
    for (const Char& c : utf8_chars(tok)) {
      auto it = c.valid ? bm.char_to_byte.find(c.cp) : bm.char_to_byte.end();
      if (it == bm.char_to_byte.end()) {
        all_mapped = false;
        break;
      }
      tb += static_cast<char>(it->second);
    }
    bytes += all_mapped ? tb : tok;
  }
  return utf8_lossy(bytes);
}

std::string TokenizerDecodeStream::step(int32_t id) {
  tok_->id_to_token(id);  // range check before the id is kept
  ids_.push_back(id);
  std::string prefix_text = tok_->decode(std::vector<int32_t>(ids_.begin() + prefix_, ids_.begin() + read_));
  std::string new_text = tok_->decode(std::vector<int32_t>(ids_.begin() + prefix_, ids_.end()));
  static const std::string kReplacement = "\xEF\xBF\xBD";
  bool incomplete = new_text.size() >= kReplacement.size() &&
                    new_text.compare(new_text.size() - kReplacement.size(), kReplacement.size(), kReplacement) == 0;
  if (new_text.size() > prefix_text.size() && !incomplete) {
    prefix_ = read_;
    read_ = ids_.size();
    return new_text.substr(prefix_text.size());
  }
  return "";
}

std::string TokenizerDecodeStream::flush() {
  std::string prefix_text = tok_->decode(std::vector<int32_t>(ids_.begin() + prefix_, ids_.begin() + read_));
  std::string new_text = tok_->decode(std::vector<int32_t>(ids_.begin() + prefix_, ids_.end()));
  prefix_ = read_ = ids_.size();
  return new_text.substr(std::min(prefix_text.size(), new_text.size()));
}

}  // namespace dlavm
