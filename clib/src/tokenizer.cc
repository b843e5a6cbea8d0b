// Byte-level BPE from a Hugging Face tokenizer.json (doc/tokenizer.md).
#include "dlavm/tokenizer.h"

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <sstream>

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

    const json::Value* norm = root.find("normalizer");
    if (norm && !norm->is_null())
      t.fail("unsupported normalizer (type '" +
             (norm->find("type") ? norm->at("type").dump() : std::string("?")) + "'): only null is supported");

    const json::Value& pre = root.at("pre_tokenizer");
    if (pre.is_null() || !pre.find("type") || pre.at("type").as_string() != "ByteLevel")
      t.fail("unsupported pre_tokenizer.type " + (pre.is_null() ? std::string("null") : pre.at("type").dump()) +
             ": only 'ByteLevel' is supported");
    if (const json::Value* v = pre.find("add_prefix_space")) t.add_prefix_space_ = v->as_bool();
    if (const json::Value* v = pre.find("use_regex")) t.use_regex_ = v->as_bool();

    const json::Value& dec = root.at("decoder");
    if (dec.is_null() || !dec.find("type") || dec.at("type").as_string() != "ByteLevel")
      t.fail("unsupported decoder.type " + (dec.is_null() ? std::string("null") : dec.at("type").dump()) +
             ": only 'ByteLevel' is supported");

    const json::Value& model = root.at("model");
    if (!model.find("type") || model.at("type").as_string() != "BPE")
      t.fail("unsupported model.type " + (model.find("type") ? model.at("type").dump() : std::string("(none)")) +
             ": only 'BPE' is supported");
    if (!is_null_or(model.find("dropout"), [](const json::Value& v) { return v.is_number() && v.as_double() == 0; }))
      t.fail("unsupported model.dropout (BPE dropout is random; must be null)");
    if (!is_null_or(model.find("byte_fallback"), falsy)) t.fail("unsupported model.byte_fallback: must be false");
    if (!is_null_or(model.find("continuing_subword_prefix"), empty_str))
      t.fail("unsupported model.continuing_subword_prefix: must be null");
    if (!is_null_or(model.find("end_of_word_suffix"), empty_str))
      t.fail("unsupported model.end_of_word_suffix: must be null");
    if (const json::Value* v = model.find("fuse_unk"); v && !v->is_null()) t.fuse_unk_ = v->as_bool();
    if (const json::Value* v = model.find("ignore_merges"); v && !v->is_null()) t.ignore_merges_ = v->as_bool();

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
      t.merges_.emplace(std::make_pair(ia->second, ib->second), std::make_pair(static_cast<int32_t>(r), iab->second));
    }
    if (const json::Value* u = model.find("unk_token"); u && !u->is_null()) {
      auto it = t.vocab_.find(u->as_string());
      if (it == t.vocab_.end()) t.fail("model.unk_token '" + u->as_string() + "' is not in model.vocab");
      t.unk_id_ = it->second;
    }

    {
      const json::Value::Array& arr = added_arr;
      for (size_t i = 0; i < arr.size(); ++i) {
        const json::Value& a = arr[i];
        std::string field = "added_tokens[" + std::to_string(i) + "]";
        for (const char* flag : {"single_word", "lstrip", "rstrip"})
          if (const json::Value* v = a.find(flag); v && v->as_bool())
            t.fail("unsupported " + field + "." + flag + " = true");
        AddedToken tok{a.at("content").as_string(), 0, a.find("special") && a.at("special").as_bool()};
        if (tok.content.empty()) t.fail(field + ".content is empty");
        set_token(tok.content, a.at("id").as_int());
        tok.id = t.vocab_[tok.content];
        t.is_special_[tok.id] = tok.special;
        t.added_.push_back(tok);
      }
    }
    std::stable_sort(t.added_.begin(), t.added_.end(),
                     [](const AddedToken& x, const AddedToken& y) { return x.content.size() > y.content.size(); });
  } catch (const json::TypeError& e) {
    t.fail(std::string("unexpected tokenizer.json structure: ") + e.what());
  }
  for (size_t id = 0; id < t.id_to_token_.size(); ++id)
    if (t.id_to_token_[id].empty()) t.fail("id " + std::to_string(id) + " has no token (the ids have a gap)");
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

void Tokenizer::encode_plain(const std::string& text, std::vector<int32_t>& out) const {
  if (text.empty()) return;
  std::string seg = add_prefix_space_ && text[0] != ' ' ? " " + text : text;
  const ByteMap& bm = byte_map();
  auto encode_piece = [&](const std::string& piece) {
    std::string mapped;
    for (unsigned char b : piece) mapped += bm.byte_to_char[b];
    encode_word(mapped, out);
  };
  if (!use_regex_) {
    encode_piece(seg);
    return;
  }
  for (const std::string& piece : gpt2_split(seg)) encode_piece(piece);
}

std::vector<int32_t> Tokenizer::encode(const std::string& text) const {
  // Added tokens are cut out first, as HF does: those matched on the raw text
  // (all here, there being no normalizer), leftmost, longest at a position.
  std::vector<int32_t> out;
  size_t start = 0, i = 0;
  while (i < text.size()) {
    const AddedToken* hit = nullptr;
    for (const AddedToken& a : added_) {
      if (text.compare(i, a.content.size(), a.content) == 0) {
        hit = &a;
        break;  // longest first
      }
    }
    if (!hit) {
      ++i;
      continue;
    }
    encode_plain(text.substr(start, i - start), out);
    out.push_back(hit->id);
    i += hit->content.size();
    start = i;
  }
  encode_plain(text.substr(start), out);
  return out;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const {
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
