// DevProc's image operations (doc/devproc.md, "Ops"): the C++ twin of devproc/lang/image.py, giving the same
// bytes and the same error messages.
//   decode_image / load_image  PNG (grey, grey+alpha, RGB, RGBA, palette; bit depths 1, 2, 4, 8 for grey and
//                              palette, 8 otherwise; not interlaced) and binary PPM (P6, maxval 255), converted
//                              to RGB as Pillow's Image.convert("RGB") (alpha and tRNS dropped, sub-byte greys
//                              scaled to 0..255). The zlib stream is inflated here (RFC 1950/1951: stored,
//                              fixed and dynamic blocks; the acceptance rules of zlib's inflate), every read
//                              bounds-checked, the output capped at the size the header implies.
//   resize                     Pillow's Image.resize((w, h), BILINEAR | BICUBIC | NEAREST) bit for bit
//                              (libImaging's Resample.c: 22-bit fixed-point coefficients, two passes each
//                              rounded to 8 bits, in Pillow 13's order; NEAREST as Geometry.c's
//                              ImagingScaleAffine).
//   normalize                  torchvision's ToTensor then Normalize: (v / 255 - mean[c]) / std[c] in float32,
//                              as float [1, 3, H, W] (row-major).
// Limits: at most kMaxImageSide pixels per side and kMaxImagePixels pixels, for decoding and resizing.
// Every refusal is an ImageError whose what() is one line naming the file (or the op) and the rule.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace dlavm {
namespace devproc {

constexpr int64_t kMaxImageSide = 16384;
constexpr int64_t kMaxImagePixels = int64_t{1} << 26;

class ImageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// An RGB image: height * width * 3 bytes, row-major, channels last.
struct Image {
  int64_t height = 0;
  int64_t width = 0;
  std::vector<uint8_t> rgb;
};

// The image in a PNG or binary PPM file's bytes; `name` names it in messages.
Image decode_image(const std::vector<uint8_t>& data, const std::string& name);
// decode_image of the file's contents ("PATH: cannot read the file (...)" if it cannot be read).
Image load_image(const std::string& path);
// `img` resized to height x width; method is "bilinear", "bicubic" or "nearest".
Image resize(const Image& img, int64_t height, int64_t width, const std::string& method);
// float32 [1, 3, H, W]: (v / 255 - mean[c]) / std[c]; mean and std finite, std without a zero.
std::vector<float> normalize(const Image& img, const float mean[3], const float std[3]);

}  // namespace devproc
}  // namespace dlavm
