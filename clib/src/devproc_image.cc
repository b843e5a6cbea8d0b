// DevProc's image operations (dlavm/devproc_image.h): the same bytes and messages as devproc/lang/image.py.
// Compiled with -ffp-contract=off (FP_EXACT_SRCS): the resampling coefficients are double arithmetic
// operation by operation as Pillow's Resample.c computes them, and normalize is float32 arithmetic.
#include "dlavm/devproc_image.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

namespace dlavm {
namespace devproc {

namespace {

[[noreturn]] void fail(const std::string& name, const std::string& rule) { throw ImageError(name + ": " + rule); }

std::string str(int64_t v) { return std::to_string(v); }

std::string hex32(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", v);
  return buf;
}

void check_size(int64_t width, int64_t height, const std::string& name) {
  const std::string size = "image size " + str(width) + "x" + str(height) + " (width x height)";
  if (width < 1 || height < 1) fail(name, size + " is empty");
  if (width > kMaxImageSide || height > kMaxImageSide || width * height > kMaxImagePixels)
    fail(name, size + " exceeds the limit (" + str(kMaxImageSide) + " per side, " + str(kMaxImagePixels) + " pixels)");
}

uint32_t be32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

// ---------------------------------------------------------------------------- checksums

uint32_t crc32(const uint8_t* p, size_t n) {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < n; ++i) c = table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

uint32_t adler32(const std::vector<uint8_t>& data) {
  uint32_t a = 1, b = 0;
  size_t i = 0;
  while (i < data.size()) {
    const size_t end = std::min(data.size(), i + 5552);  // no overflow of b before the reduction
    for (; i < end; ++i) {
      a += data[i];
      b += a;
    }
    a %= 65521;
    b %= 65521;
  }
  return (b << 16) | a;
}

// ---------------------------------------------------------------------------- inflate (RFC 1951)
// Accepts exactly what zlib's inflate accepts: over-subscribed Huffman codes are refused, incomplete ones
// too except a lone one-bit literal/length or distance code (zlib's rule); a code-lengths code of only
// zero lengths reads one bit per length, as zlib's table does. Messages are zlib's.

struct ZlibError {
  const char* msg;
};
struct Truncated {};   // the input ended inside the stream
struct OutputFull {};  // a byte had to be written past the cap

class BitReader {
 public:
  BitReader(const uint8_t* p, size_t n) : p_(p), n_(n) {}

  void fill() {
    while (cnt_ <= 56 && pos_ < n_) {
      buf_ |= uint64_t{p_[pos_++]} << cnt_;
      cnt_ += 8;
    }
  }
  int available() {
    fill();
    return cnt_;
  }
  uint64_t peek() const { return buf_; }
  void drop(int k) {
    buf_ >>= k;
    cnt_ -= k;
  }
  uint32_t get(int k) {  // k <= 32
    if (k == 0) return 0;
    if (cnt_ < k) fill();
    if (cnt_ < k) throw Truncated{};
    const uint32_t v = static_cast<uint32_t>(buf_ & ((uint64_t{1} << k) - 1));
    drop(k);
    return v;
  }
  void align() { drop(cnt_ % 8); }
  // The first byte not consumed (after align()).
  size_t byte_pos() const { return pos_ - static_cast<size_t>(cnt_ / 8); }
  // A whole byte after align(): from the buffer first, then the input.
  bool byte(uint8_t* out) {
    if (cnt_ >= 8) {
      *out = static_cast<uint8_t>(buf_ & 0xFF);
      drop(8);
      return true;
    }
    if (pos_ < n_) {
      *out = p_[pos_++];
      return true;
    }
    return false;
  }

 private:
  const uint8_t* p_;
  size_t n_;
  size_t pos_ = 0;
  uint64_t buf_ = 0;
  int cnt_ = 0;
};

enum class CodeKind { kCodes, kLens, kDists };

constexpr int kRootBits = 9;
constexpr int32_t kInvalid = -1;
constexpr int32_t kLong = -2;

class Huffman {
 public:
  // false: the lengths do not form a code zlib accepts.
  bool build(const uint16_t* lens, int n, CodeKind kind) {
    count_.fill(0);
    for (int s = 0; s < n; ++s) ++count_[lens[s]];
    max_ = 0;
    for (int len = 15; len >= 1; --len)
      if (count_[len]) {
        max_ = len;
        break;
      }
    if (max_ == 0) {  // no codes: every read fails (the code-lengths code: each bit reads length 0)
      root_bits_ = 1;
      root_.assign(2, kind == CodeKind::kCodes ? entry(0, 1) : entry(kInvalid, 1));
      return true;
    }
    int left = 1;
    for (int len = 1; len <= 15; ++len) {
      left <<= 1;
      left -= count_[len];
      if (left < 0) return false;  // over-subscribed
    }
    if (left > 0 && (kind == CodeKind::kCodes || max_ != 1)) return false;  // incomplete
    // symbols sorted by (length, symbol), for the canonical codes
    std::array<int, 16> offs{};
    for (int len = 1; len < 15; ++len) offs[len + 1] = offs[len] + count_[len];
    symbols_.assign(static_cast<size_t>(n), 0);
    for (int s = 0; s < n; ++s)
      if (lens[s]) symbols_[static_cast<size_t>(offs[lens[s]]++)] = s;
    root_bits_ = std::min(max_, kRootBits);
    root_.assign(size_t{1} << root_bits_, max_ > root_bits_ ? entry(kLong, 0) : entry(kInvalid, 1));
    int code = 0, index = 0;
    for (int len = 1; len <= root_bits_; ++len) {
      for (int k = 0; k < count_[len]; ++k, ++code, ++index) {
        int rev = 0;
        for (int b = 0; b < len; ++b) rev |= ((code >> b) & 1) << (len - 1 - b);
        for (int j = rev; j < (1 << root_bits_); j += 1 << len)
          root_[static_cast<size_t>(j)] = entry(symbols_[static_cast<size_t>(index)], len);
      }
      code <<= 1;
    }
    return true;
  }

  // The next symbol, kInvalid for a bit pattern the code does not use.
  int32_t decode(BitReader& in) const {
    const int avail = in.available();
    const uint32_t e = root_[static_cast<size_t>(in.peek() & ((uint64_t{1} << root_bits_) - 1))];
    const int32_t sym = static_cast<int32_t>(e) >> 4;
    if (sym != kLong) {
      const int len = static_cast<int>(e & 15);
      if (len > avail) throw Truncated{};
      in.drop(len);
      return sym;
    }
    // a code longer than the root table: canonical decoding bit by bit
    int code = 0, first = 0, index = 0;
    for (int len = 1; len <= max_; ++len) {
      code |= static_cast<int>(in.get(1));
      const int count = count_[len];
      if (code - count < first) return symbols_[static_cast<size_t>(index + (code - first))];
      index += count;
      first = (first + count) << 1;
      code <<= 1;
    }
    return kInvalid;  // not reached: a code with long codes is complete
  }

 private:
  static uint32_t entry(int32_t sym, int len) {
    return (static_cast<uint32_t>(sym) << 4) | static_cast<uint32_t>(len);
  }
  std::array<int, 16> count_{};
  std::vector<int> symbols_;
  std::vector<uint32_t> root_;
  int root_bits_ = 1;
  int max_ = 0;
};

const uint16_t kLenBase[29] = {3,  4,  5,  6,  7,  8,  9,  10, 11,  13,  15,  17,  19,  23, 27,
                               31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258};
const uint8_t kLenExtra[29] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
const uint16_t kDistBase[30] = {1,   2,   3,   4,   5,   7,    9,    13,   17,   25,   33,   49,   65,    97,    129,
                                193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577};
const uint8_t kDistExtra[30] = {0, 0, 0, 0, 1, 1, 2, 2,  3,  3,  4,  4,  5,  5,  6,
                                6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13};
const uint8_t kCodeOrder[19] = {16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15};

class Inflater {
 public:
  Inflater(const uint8_t* p, size_t n, size_t cap) : in_(p, n), cap_(cap) {}

  // Inflates the raw deflate stream to its end; then in.byte_pos() is the first byte after it.
  void run() {
    bool last = false;
    while (!last) {
      const uint32_t head = in_.get(3);
      last = head & 1;
      switch (head >> 1) {
        case 0: stored(); break;
        case 1: fixed(); break;
        case 2: dynamic(); break;
        default: throw ZlibError{"invalid block type"};
      }
    }
    in_.align();
  }
  std::vector<uint8_t>& out() { return out_; }
  BitReader& input() { return in_; }

 private:
  void put(uint8_t b) {
    if (out_.size() >= cap_) throw OutputFull{};
    out_.push_back(b);
  }

  void stored() {
    in_.align();
    const uint32_t v = in_.get(32);
    if ((v & 0xFFFF) != ((v >> 16) ^ 0xFFFF)) throw ZlibError{"invalid stored block lengths"};
    for (uint32_t k = 0; k < (v & 0xFFFF); ++k) {
      if (out_.size() >= cap_) throw OutputFull{};
      uint8_t b;
      if (!in_.byte(&b)) throw Truncated{};
      out_.push_back(b);
    }
  }

  void fixed() {
    if (!fixed_built_) {
      uint16_t lens[288 + 32];
      for (int s = 0; s < 288; ++s) lens[s] = s < 144 ? 8 : s < 256 ? 9 : s < 280 ? 7 : 8;
      for (int s = 0; s < 32; ++s) lens[288 + s] = 5;
      fixed_lit_.build(lens, 288, CodeKind::kLens);
      fixed_dist_.build(lens + 288, 32, CodeKind::kDists);
      fixed_built_ = true;
    }
    codes(fixed_lit_, fixed_dist_);
  }

  void dynamic() {
    const uint32_t v = in_.get(14);
    const int nlen = static_cast<int>(v & 31) + 257, ndist = static_cast<int>((v >> 5) & 31) + 1;
    const int ncode = static_cast<int>(v >> 10) + 4;
    if (nlen > 286 || ndist > 30) throw ZlibError{"too many length or distance symbols"};
    uint16_t lens[320] = {};
    for (int k = 0; k < ncode; ++k) lens[kCodeOrder[k]] = static_cast<uint16_t>(in_.get(3));
    Huffman cl;
    if (!cl.build(lens, 19, CodeKind::kCodes)) throw ZlibError{"invalid code lengths set"};
    std::fill(lens, lens + 320, uint16_t{0});
    int have = 0;
    while (have < nlen + ndist) {
      const int32_t sym = cl.decode(in_);
      if (sym < 16) {
        lens[have++] = static_cast<uint16_t>(sym);
        continue;
      }
      uint16_t len = 0;
      int copy;
      if (sym == 16) {
        const uint32_t extra = in_.get(2);
        if (have == 0) throw ZlibError{"invalid bit length repeat"};
        len = lens[have - 1];
        copy = 3 + static_cast<int>(extra);
      } else if (sym == 17) {
        copy = 3 + static_cast<int>(in_.get(3));
      } else {
        copy = 11 + static_cast<int>(in_.get(7));
      }
      if (have + copy > nlen + ndist) throw ZlibError{"invalid bit length repeat"};
      while (copy--) lens[have++] = len;
    }
    if (lens[256] == 0) throw ZlibError{"invalid code -- missing end-of-block"};
    Huffman lit, dist;
    if (!lit.build(lens, nlen, CodeKind::kLens)) throw ZlibError{"invalid literal/lengths set"};
    if (!dist.build(lens + nlen, ndist, CodeKind::kDists)) throw ZlibError{"invalid distances set"};
    codes(lit, dist);
  }

  void codes(const Huffman& lit, const Huffman& dist) {
    for (;;) {
      const int32_t sym = lit.decode(in_);
      if (sym < 0 || sym > 285) throw ZlibError{"invalid literal/length code"};
      if (sym < 256) {
        put(static_cast<uint8_t>(sym));
        continue;
      }
      if (sym == 256) return;
      const int li = sym - 257;
      const uint32_t length = kLenBase[li] + in_.get(kLenExtra[li]);
      const int32_t dsym = dist.decode(in_);
      if (dsym < 0 || dsym > 29) throw ZlibError{"invalid distance code"};
      const uint32_t d = kDistBase[dsym] + in_.get(kDistExtra[dsym]);
      // zlib checks the distance when it copies: with the output already full it stops before the check
      if (out_.size() >= cap_) throw OutputFull{};
      if (d > out_.size()) throw ZlibError{"invalid distance too far back"};
      for (uint32_t k = 0; k < length; ++k) put(out_[out_.size() - d]);
    }
  }

  BitReader in_;
  size_t cap_;
  std::vector<uint8_t> out_;
  Huffman fixed_lit_, fixed_dist_;
  bool fixed_built_ = false;
};

// The zlib stream of the IDAT chunks inflated to exactly `expected` bytes (the checks and messages of
// devproc/lang/image.py's _inflate, in its order).
std::vector<uint8_t> inflate_idat(const std::vector<uint8_t>& z, size_t expected, const std::string& name) {
  const std::string what = "IDAT data";
  if (z.size() < 2) fail(name, what + ": the zlib stream is truncated");
  const uint8_t cmf = z[0], flg = z[1];
  if ((cmf & 15) != 8) fail(name, what + ": zlib compression method " + str(cmf & 15) + " is not deflate (8)");
  if ((cmf >> 4) > 7) fail(name, what + ": zlib window size exponent " + str(cmf >> 4) + " exceeds 7");
  if ((cmf * 256 + flg) % 31) fail(name, what + ": the zlib header check fails");
  if (flg & 0x20) fail(name, what + ": a zlib preset dictionary is not allowed");
  Inflater inf(z.data() + 2, z.size() - 2, expected + 1);
  const std::string more = what + " inflates to more than the " + str(static_cast<int64_t>(expected)) +
                           " bytes the image needs";
  try {
    inf.run();
  } catch (const ZlibError& e) {
    fail(name, what + ": corrupt deflate stream (" + e.msg + ")");
  } catch (const OutputFull&) {
    fail(name, more);
  } catch (const Truncated&) {
    if (inf.out().size() > expected) fail(name, more);
    fail(name, what + ": the deflate stream is truncated");
  }
  std::vector<uint8_t>& out = inf.out();
  if (out.size() > expected) fail(name, more);
  const size_t tail_at = 2 + inf.input().byte_pos();
  const size_t tail = z.size() - tail_at;
  if (tail < 4) fail(name, what + ": the zlib stream is truncated (no Adler-32 checksum)");
  const uint32_t stored = be32(z.data() + tail_at), computed = adler32(out);
  if (stored != computed)
    fail(name, what + ": Adler-32 mismatch (stored " + hex32(stored) + ", computed " + hex32(computed) + ")");
  if (tail > 4)
    fail(name, what + ": " + str(static_cast<int64_t>(tail - 4)) + " bytes after the end of the zlib stream");
  if (out.size() != expected)
    fail(name, what + " inflates to " + str(static_cast<int64_t>(out.size())) + " bytes, the image needs " +
                   str(static_cast<int64_t>(expected)));
  return std::move(out);
}

// ---------------------------------------------------------------------------- PNG

int channels_of(int ctype) { return ctype == 0 || ctype == 3 ? 1 : ctype == 2 ? 3 : ctype == 4 ? 2 : 4; }

struct Header {
  int64_t width = 0, height = 0;
  int depth = 0, ctype = 0;
};

Header parse_ihdr(const uint8_t* body, uint32_t length, const std::string& name) {
  if (length != 13) fail(name, "the IHDR chunk holds " + str(length) + " bytes, not 13");
  Header h;
  h.width = be32(body);
  h.height = be32(body + 4);
  h.depth = body[8];
  h.ctype = body[9];
  const int compression = body[10], filter = body[11], interlace = body[12];
  if (h.ctype != 0 && h.ctype != 2 && h.ctype != 3 && h.ctype != 4 && h.ctype != 6)
    fail(name, "PNG colour type " + str(h.ctype) + " is invalid");
  if (h.depth == 16 && h.ctype != 3)
    fail(name, "16-bit PNG samples are not supported (bit depth 8, or 1, 2, 4 for grey and palette)");
  const bool low = h.ctype == 0 || h.ctype == 3;
  if (!(h.depth == 8 || (low && (h.depth == 1 || h.depth == 2 || h.depth == 4))))
    fail(name, "PNG bit depth " + str(h.depth) + " is invalid for colour type " + str(h.ctype));
  if (compression != 0) fail(name, "PNG compression method " + str(compression) + " is invalid");
  if (filter != 0) fail(name, "PNG filter method " + str(filter) + " is invalid");
  if (interlace == 1) fail(name, "interlaced (Adam7) PNG is not supported");
  if (interlace != 0) fail(name, "PNG interlace method " + str(interlace) + " is invalid");
  check_size(h.width, h.height, name);
  return h;
}

int paeth(int a, int b, int c) {
  const int p = a + b - c;
  const int pa = std::abs(p - a), pb = std::abs(p - b), pc = std::abs(p - c);
  if (pa <= pb && pa <= pc) return a;
  return pb <= pc ? b : c;
}

// The scanlines [H, rowbytes] with the filters undone.
std::vector<uint8_t> unfilter(const std::vector<uint8_t>& raw, int64_t height, size_t rowbytes, size_t bpp,
                              const std::string& name) {
  for (int64_t r = 0; r < height; ++r) {
    const uint8_t t = raw[static_cast<size_t>(r) * (rowbytes + 1)];
    if (t > 4) fail(name, "PNG row " + str(r) + " has filter type " + str(t) + " (0..4)");
  }
  std::vector<uint8_t> out(static_cast<size_t>(height) * rowbytes);
  const std::vector<uint8_t> zero(rowbytes, 0);
  for (int64_t r = 0; r < height; ++r) {
    const uint8_t* x = raw.data() + static_cast<size_t>(r) * (rowbytes + 1);
    const uint8_t t = *x++;
    uint8_t* cur = out.data() + static_cast<size_t>(r) * rowbytes;
    const uint8_t* prev = r ? cur - rowbytes : zero.data();
    for (size_t i = 0; i < rowbytes; ++i) {
      const int a = i >= bpp ? cur[i - bpp] : 0, b = prev[i], c = i >= bpp ? prev[i - bpp] : 0;
      int pred = 0;
      switch (t) {
        case 1: pred = a; break;
        case 2: pred = b; break;
        case 3: pred = (a + b) >> 1; break;
        case 4: pred = paeth(a, b, c); break;
        default: break;
      }
      cur[i] = static_cast<uint8_t>((x[i] + pred) & 255);
    }
  }
  return out;
}

Image decode_png(const std::vector<uint8_t>& data, const std::string& name) {
  size_t pos = 8;
  bool have_header = false;
  Header hd;
  std::vector<uint8_t> palette;  // RGB triples
  bool have_palette = false;
  std::vector<uint8_t> idat;
  int idat_state = 0;  // 0 none yet, 1 in the IDAT run, 2 after it
  for (;;) {
    if (data.size() - pos < 8)
      fail(name, "truncated PNG: no IEND chunk (a chunk header at byte " + str(static_cast<int64_t>(pos)) +
                     " needs 8 bytes, " + str(static_cast<int64_t>(data.size() - pos)) + " left)");
    const uint32_t length = be32(&data[pos]);
    const uint8_t* type = &data[pos + 4];
    const std::string at = " at byte " + str(static_cast<int64_t>(pos));
    if (length > 0x7FFFFFFFu) fail(name, "PNG chunk" + at + ": length " + str(length) + " exceeds 2^31-1");
    for (int k = 0; k < 4; ++k)
      if (!((type[k] >= 'A' && type[k] <= 'Z') || (type[k] >= 'a' && type[k] <= 'z')))
        fail(name, "PNG chunk" + at + ": type " + hex32(be32(type)) + " is not four ASCII letters");
    const std::string cname(reinterpret_cast<const char*>(type), 4);
    if (data.size() - pos < size_t{length} + 12)
      fail(name, "truncated PNG: chunk " + cname + at + " needs " + str(int64_t{length} + 12) + " bytes, " +
                     str(static_cast<int64_t>(data.size() - pos)) + " left");
    const uint8_t* body = &data[pos + 8];
    const uint32_t stored = be32(body + length), computed = crc32(type, size_t{length} + 4);
    if (stored != computed)
      fail(name, "PNG chunk " + cname + at + " has a bad CRC (stored " + hex32(stored) + ", computed " +
                     hex32(computed) + ")");
    pos += size_t{length} + 12;
    if (!have_header && cname != "IHDR") fail(name, "the first PNG chunk is " + cname + ", not IHDR");
    if (idat_state == 1 && cname != "IDAT") idat_state = 2;
    if (cname == "IHDR") {
      if (have_header) fail(name, "a second IHDR chunk");
      hd = parse_ihdr(body, length, name);
      have_header = true;
    } else if (cname == "PLTE") {
      if (hd.ctype == 3) {
        if (have_palette) fail(name, "a second PLTE chunk");
        if (length == 0 || length % 3 || length > 768)
          fail(name, "the PLTE chunk holds " + str(length) + " bytes (a multiple of 3 in 3..768)");
        palette.assign(body, body + length);
        have_palette = true;
      }
    } else if (cname == "IDAT") {
      if (idat_state == 2) fail(name, "the IDAT chunks are not consecutive");
      if (hd.ctype == 3 && !have_palette) fail(name, "palette image without a PLTE chunk before IDAT");
      idat_state = 1;
      idat.insert(idat.end(), body, body + length);
    } else if (cname == "IEND") {
      break;
    } else if (type[0] <= 'Z') {
      fail(name, "unknown critical PNG chunk " + cname);
    }
  }
  if (!idat_state) fail(name, "PNG without an IDAT chunk");
  const int channels = channels_of(hd.ctype);
  const size_t rowbytes = static_cast<size_t>((hd.width * channels * hd.depth + 7) / 8);
  const size_t expected = static_cast<size_t>(hd.height) * (rowbytes + 1);
  const std::vector<uint8_t> raw = inflate_idat(idat, expected, name);
  const size_t bpp = std::max<size_t>(1, static_cast<size_t>(channels * hd.depth / 8));
  const std::vector<uint8_t> rows = unfilter(raw, hd.height, rowbytes, bpp, name);

  Image img;
  img.height = hd.height;
  img.width = hd.width;
  img.rgb.resize(static_cast<size_t>(hd.height * hd.width) * 3);
  const size_t W = static_cast<size_t>(hd.width);
  const int depth = hd.depth;
  const int scale = depth < 8 ? 255 / ((1 << depth) - 1) : 1;
  const size_t npal = palette.size() / 3;
  for (int64_t y = 0; y < hd.height; ++y) {
    const uint8_t* row = rows.data() + static_cast<size_t>(y) * rowbytes;
    uint8_t* o = img.rgb.data() + static_cast<size_t>(y) * W * 3;
    for (size_t x = 0; x < W; ++x, o += 3) {
      if (hd.ctype == 2 || hd.ctype == 6) {
        const uint8_t* s = row + x * static_cast<size_t>(channels);
        o[0] = s[0];
        o[1] = s[1];
        o[2] = s[2];
        continue;
      }
      if (hd.ctype == 4) {
        o[0] = o[1] = o[2] = row[x * 2];
        continue;
      }
      int v;  // grey or palette index
      if (depth == 8) {
        v = row[x];
      } else {
        const size_t bit = x * static_cast<size_t>(depth);
        v = (row[bit / 8] >> (8 - depth - static_cast<int>(bit % 8))) & ((1 << depth) - 1);
      }
      if (hd.ctype == 0) {
        o[0] = o[1] = o[2] = static_cast<uint8_t>(v * scale);
      } else {
        if (static_cast<size_t>(v) >= npal)
          fail(name, "pixel (" + str(static_cast<int64_t>(x)) + ", " + str(y) + ") (x, y) uses palette index " +
                         str(v) + ", the PLTE chunk has " + str(static_cast<int64_t>(npal)) + " entries");
        o[0] = palette[static_cast<size_t>(v) * 3];
        o[1] = palette[static_cast<size_t>(v) * 3 + 1];
        o[2] = palette[static_cast<size_t>(v) * 3 + 2];
      }
    }
  }
  return img;
}

// ---------------------------------------------------------------------------- PPM

bool ppm_space(uint8_t c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == 0x0b || c == 0x0c; }

Image decode_ppm(const std::vector<uint8_t>& data, const std::string& name) {
  size_t pos = 2;
  int64_t fields[3];
  const char* names[3] = {"width", "height", "maxval"};
  for (int f = 0; f < 3; ++f) {
    const size_t start = pos;
    while (pos < data.size()) {
      if (ppm_space(data[pos])) {
        ++pos;
      } else if (data[pos] == '#') {
        while (pos < data.size() && data[pos] != '\n' && data[pos] != '\r') ++pos;
      } else {
        break;
      }
    }
    if (pos == start)
      fail(name, std::string("PPM header: no whitespace before the ") + names[f] + " at byte " +
                     str(static_cast<int64_t>(pos)));
    const size_t digits = pos;
    while (pos < data.size() && data[pos] >= '0' && data[pos] <= '9') ++pos;
    const std::string field_at =
        std::string("PPM header: the ") + names[f] + " at byte " + str(static_cast<int64_t>(digits));
    if (pos == digits) fail(name, field_at + " is not a decimal number");
    if (pos - digits > 9) fail(name, field_at + " has more than 9 digits");
    int64_t v = 0;
    for (size_t k = digits; k < pos; ++k) v = v * 10 + (data[k] - '0');
    fields[f] = v;
  }
  if (pos >= data.size() || !ppm_space(data[pos]))
    fail(name, "PPM header: the maxval must be followed by one whitespace byte (byte " +
                   str(static_cast<int64_t>(pos)) + ")");
  ++pos;
  const int64_t width = fields[0], height = fields[1], maxval = fields[2];
  check_size(width, height, name);
  if (maxval != 255) fail(name, "PPM maxval " + str(maxval) + " is not supported (only 255)");
  const size_t need = static_cast<size_t>(width * height * 3);
  if (data.size() - pos < need)
    fail(name, "truncated PPM: " + str(static_cast<int64_t>(data.size() - pos)) + " pixel bytes, " +
                   str(static_cast<int64_t>(need)) + " needed");
  Image img;
  img.height = height;
  img.width = width;
  img.rgb.assign(data.begin() + static_cast<std::ptrdiff_t>(pos),
                 data.begin() + static_cast<std::ptrdiff_t>(pos + need));
  return img;
}

// ---------------------------------------------------------------------------- resize (Pillow's Resample.c)

constexpr int kPrecisionBits = 32 - 8 - 2;

double bilinear_filter(double x) {
  if (x < 0.0) x = -x;
  if (x < 1.0) return 1.0 - x;
  return 0.0;
}

double bicubic_filter(double x) {
  const double a = -0.5;
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

struct Coeffs {
  int ksize = 0;
  std::vector<int> bounds;  // per output index: first input index, number of inputs
  std::vector<int32_t> kk;  // per output index: ksize fixed-point coefficients
};

// precompute_coeffs then normalize_coeffs_8bpc, for the whole extent (box 0..in_size).
Coeffs precompute(int in_size, int out_size, bool bicubic) {
  double (*filter)(double) = bicubic ? bicubic_filter : bilinear_filter;
  const double fsupport = bicubic ? 2.0 : 1.0;
  const float in0 = 0.0f, in1 = static_cast<float>(in_size);
  double filterscale, scale;
  filterscale = scale = static_cast<double>(in1 - in0) / out_size;
  if (filterscale < 1.0) filterscale = 1.0;
  const double support = fsupport * filterscale;
  Coeffs c;
  c.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  c.bounds.assign(static_cast<size_t>(out_size) * 2, 0);
  c.kk.assign(static_cast<size_t>(out_size) * static_cast<size_t>(c.ksize), 0);
  std::vector<double> k(static_cast<size_t>(c.ksize));
  for (int xx = 0; xx < out_size; ++xx) {
    const double center = in0 + (xx + 0.5) * scale;
    double ww = 0.0;
    const double ss = 1.0 / filterscale;
    int xmin = static_cast<int>(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int xmax = static_cast<int>(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    for (int x = 0; x < xmax; ++x) {
      const double w = filter((x + xmin - center + 0.5) * ss);
      k[static_cast<size_t>(x)] = w;
      ww += w;
    }
    int32_t* out = &c.kk[static_cast<size_t>(xx) * static_cast<size_t>(c.ksize)];
    for (int x = 0; x < xmax; ++x) {
      double v = k[static_cast<size_t>(x)];
      if (ww != 0.0) v /= ww;
      out[x] = v < 0 ? static_cast<int32_t>(-0.5 + v * (1 << kPrecisionBits))
                     : static_cast<int32_t>(0.5 + v * (1 << kPrecisionBits));
    }
    c.bounds[static_cast<size_t>(xx) * 2] = xmin;
    c.bounds[static_cast<size_t>(xx) * 2 + 1] = xmax;
  }
  return c;
}

uint8_t clip8(int64_t ss) {
  const int64_t v = ss >> kPrecisionBits;
  return static_cast<uint8_t>(v < 0 ? 0 : v > 255 ? 255 : v);
}

// One pass along the width (horizontal) or the height.
Image convolve(const Image& in, int64_t out_size, bool bicubic, bool horizontal) {
  const int in_size = static_cast<int>(horizontal ? in.width : in.height);
  const Coeffs c = precompute(in_size, static_cast<int>(out_size), bicubic);
  Image out;
  out.height = horizontal ? in.height : out_size;
  out.width = horizontal ? out_size : in.width;
  out.rgb.resize(static_cast<size_t>(out.height * out.width) * 3);
  const size_t W = static_cast<size_t>(in.width), OW = static_cast<size_t>(out.width);
  const int64_t half = int64_t{1} << (kPrecisionBits - 1);
  for (int64_t yy = 0; yy < out.height; ++yy) {
    for (size_t xx = 0; xx < OW; ++xx) {
      const size_t o = horizontal ? xx : static_cast<size_t>(yy);
      const int xmin = c.bounds[o * 2], xmax = c.bounds[o * 2 + 1];
      const int32_t* k = &c.kk[o * static_cast<size_t>(c.ksize)];
      int64_t ss[3] = {half, half, half};
      for (int x = 0; x < xmax; ++x) {
        const uint8_t* p = horizontal ? &in.rgb[(static_cast<size_t>(yy) * W + static_cast<size_t>(x + xmin)) * 3]
                                      : &in.rgb[(static_cast<size_t>(x + xmin) * W + xx) * 3];
        for (int ch = 0; ch < 3; ++ch) ss[ch] += int64_t{p[ch]} * k[x];
      }
      uint8_t* q = &out.rgb[(static_cast<size_t>(yy) * OW + xx) * 3];
      for (int ch = 0; ch < 3; ++ch) q[ch] = clip8(ss[ch]);
    }
  }
  return out;
}

// Geometry.c's ImagingScaleAffine: the source index of each output index (-1: none, filled with 0).
std::vector<int64_t> nearest_index(int64_t in_size, int64_t out_size) {
  const double a = static_cast<double>(static_cast<float>(in_size)) / static_cast<double>(out_size);
  double xo = 0.0 + a * 0.5;
  std::vector<int64_t> idx(static_cast<size_t>(out_size));
  for (int64_t x = 0; x < out_size; ++x) {
    const int64_t xin = xo < 0.0 ? -1 : static_cast<int64_t>(xo);
    idx[static_cast<size_t>(x)] = xin >= 0 && xin < in_size ? xin : -1;
    xo += a;
  }
  return idx;
}

void check_image(const Image& img, const std::string& op) {
  check_size(img.width, img.height, op);
  const size_t need = static_cast<size_t>(img.width * img.height) * 3;
  if (img.rgb.size() != need)
    fail(op, "the image holds " + str(static_cast<int64_t>(img.rgb.size())) + " bytes, " + str(img.width) + "x" +
                 str(img.height) + "x3 needs " + str(static_cast<int64_t>(need)));
}

}  // namespace

Image decode_image(const std::vector<uint8_t>& data, const std::string& name) {
  static const uint8_t kSig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (data.size() >= 8 && std::equal(kSig, kSig + 8, data.begin())) return decode_png(data, name);
  if (data.size() >= 2 && data[0] == 'P' && data[1] == '6') return decode_ppm(data, name);
  fail(name, "not a PNG or binary PPM (P6) file");
}

Image load_image(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(path, std::string("cannot read the file (") + std::strerror(errno) + ")");
  std::vector<uint8_t> data;
  uint8_t buf[65536];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd);
      fail(path, std::string("cannot read the file (") + std::strerror(err) + ")");
    }
    if (n == 0) break;
    data.insert(data.end(), buf, buf + n);
  }
  ::close(fd);
  return decode_image(data, path);
}

Image resize(const Image& img, int64_t height, int64_t width, const std::string& method) {
  check_image(img, "resize");
  if (method != "bilinear" && method != "bicubic" && method != "nearest")
    fail("resize", "method '" + method + "' is not one of bilinear, bicubic, nearest");
  check_size(width, height, "resize");
  if (img.height == height && img.width == width) return img;
  if (method == "nearest") {
    const std::vector<int64_t> ys = nearest_index(img.height, height), xs = nearest_index(img.width, width);
    Image out;
    out.height = height;
    out.width = width;
    out.rgb.assign(static_cast<size_t>(height * width) * 3, 0);
    for (int64_t y = 0; y < height; ++y) {
      if (ys[static_cast<size_t>(y)] < 0) continue;
      for (int64_t x = 0; x < width; ++x) {
        if (xs[static_cast<size_t>(x)] < 0) continue;
        const int64_t src = ys[static_cast<size_t>(y)] * img.width + xs[static_cast<size_t>(x)];
        const uint8_t* p = &img.rgb[static_cast<size_t>(src) * 3];
        std::copy(p, p + 3, &out.rgb[static_cast<size_t>(y * width + x) * 3]);
      }
    }
    return out;
  }
  const bool bicubic = method == "bicubic";
  // Two passes, each rounded to 8 bits; Pillow 13 runs the vertical one first when it shrinks the height by
  // more than twice what the horizontal one takes off the width.
  if (width != img.width && height != img.height && img.height - height > 0 &&
      img.height - height > 2 * (img.width - width))
    return convolve(convolve(img, height, bicubic, false), width, bicubic, true);
  if (width != img.width) {
    Image tmp = convolve(img, width, bicubic, true);
    return height != img.height ? convolve(tmp, height, bicubic, false) : tmp;
  }
  return convolve(img, height, bicubic, false);
}

std::vector<float> normalize(const Image& img, const float mean[3], const float std[3]) {
  check_image(img, "normalize");
  for (const auto& [key, v] : {std::make_pair("mean", mean), std::make_pair("std", std)})
    for (int c = 0; c < 3; ++c)
      if (!std::isfinite(v[c])) fail("normalize", std::string(key) + "[" + str(c) + "] is not a finite float32");
  for (int c = 0; c < 3; ++c)
    if (std[c] == 0.0f) fail("normalize", "std[" + str(c) + "] is 0 in float32");
  const size_t hw = static_cast<size_t>(img.height * img.width);
  std::vector<float> out(hw * 3);
  for (size_t i = 0; i < hw; ++i)
    for (int c = 0; c < 3; ++c) {
      const float x = static_cast<float>(img.rgb[i * 3 + static_cast<size_t>(c)]) / 255.0f;
      out[static_cast<size_t>(c) * hw + i] = (x - mean[c]) / std[c];
    }
  return out;
}

}  // namespace devproc
}  // namespace dlavm
