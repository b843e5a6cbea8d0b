// Test driver of dlavm/devproc_image.h (tests/devproc/test_image.py).
//
//   image_tool decode FILE OUT                          load_image(FILE) -> OUT (raw image)
//   image_tool resize IN OUT HEIGHT WIDTH METHOD        resize of the raw image IN -> OUT (raw image)
//   image_tool normalize IN OUT M0 M1 M2 S0 S1 S2       normalize of IN -> OUT (float32, little-endian)
//   image_tool batch JOBS                               one command per line of JOBS, its fields separated by
//                                                       tabs; a refused one writes its message to OUT.err
//
// A raw image is int64 height, int64 width (little-endian) then the RGB bytes as they are (not checked here:
// the library checks them). Floats are parsed with strtof (hexadecimal floats are exact). A single command
// that is refused prints the message on stderr and exits 1; a usage error exits 2.
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "dlavm/devproc_image.h"

namespace {

using dlavm::devproc::Image;
using dlavm::devproc::ImageError;

struct UsageError {
  std::string msg;
};

std::vector<uint8_t> read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw UsageError{"cannot open " + path};
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

void write_file(const std::string& path, const void* data, size_t n) {
  std::ofstream f(path, std::ios::binary);
  f.write(static_cast<const char*>(data), static_cast<std::streamsize>(n));
  if (!f) throw UsageError{"cannot write " + path};
}

int64_t le64(const uint8_t* p) {
  uint64_t v = 0;
  for (int k = 7; k >= 0; --k) v = (v << 8) | p[k];
  return static_cast<int64_t>(v);
}

Image read_raw(const std::string& path) {
  const std::vector<uint8_t> bytes = read_file(path);
  if (bytes.size() < 16) throw UsageError{path + " is not a raw image"};
  Image img;
  img.height = le64(bytes.data());
  img.width = le64(bytes.data() + 8);
  img.rgb.assign(bytes.begin() + 16, bytes.end());
  return img;
}

void write_raw(const std::string& path, const Image& img) {
  std::vector<uint8_t> out(16 + img.rgb.size());
  const int64_t dims[2] = {img.height, img.width};
  for (int d = 0; d < 2; ++d)
    for (int k = 0; k < 8; ++k)
      out[static_cast<size_t>(d * 8 + k)] = static_cast<uint8_t>(static_cast<uint64_t>(dims[d]) >> (8 * k));
  std::copy(img.rgb.begin(), img.rgb.end(), out.begin() + 16);
  write_file(path, out.data(), out.size());
}

int64_t parse_int(const std::string& s) {
  char* end = nullptr;
  errno = 0;
  const long long v = std::strtoll(s.c_str(), &end, 10);
  if (s.empty() || *end || errno) throw UsageError{"not an integer: " + s};
  return v;
}

float parse_float(const std::string& s) {
  char* end = nullptr;
  const float v = std::strtof(s.c_str(), &end);
  if (s.empty() || *end) throw UsageError{"not a float: " + s};
  return v;
}

// Runs one command; ImageError propagates.
void run(const std::vector<std::string>& a) {
  if (a.empty()) throw UsageError{"no command"};
  const std::string& cmd = a[0];
  if (cmd == "decode" && a.size() == 3) {
    write_raw(a[2], dlavm::devproc::load_image(a[1]));
  } else if (cmd == "resize" && a.size() == 6) {
    write_raw(a[2], dlavm::devproc::resize(read_raw(a[1]), parse_int(a[3]), parse_int(a[4]), a[5]));
  } else if (cmd == "normalize" && a.size() == 9) {
    float mean[3], std[3];
    for (int c = 0; c < 3; ++c) {
      mean[c] = parse_float(a[static_cast<size_t>(3 + c)]);
      std[c] = parse_float(a[static_cast<size_t>(6 + c)]);
    }
    const std::vector<float> out = dlavm::devproc::normalize(read_raw(a[1]), mean, std);
    write_file(a[2], out.data(), out.size() * sizeof(float));
  } else {
    throw UsageError{"unknown command or wrong number of arguments: " + cmd};
  }
}

std::vector<std::string> split_tabs(const std::string& line) {
  std::vector<std::string> out;
  std::string field;
  std::istringstream in(line);
  while (std::getline(in, field, '\t')) out.push_back(field);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  try {
    if (args.size() == 2 && args[0] == "batch") {
      std::ifstream jobs(args[1]);
      if (!jobs) throw UsageError{"cannot open " + args[1]};
      std::string line;
      while (std::getline(jobs, line)) {
        if (line.empty()) continue;
        const std::vector<std::string> job = split_tabs(line);
        try {
          run(job);
        } catch (const ImageError& e) {
          const std::string msg = e.what();
          write_file(job.at(2) + ".err", msg.data(), msg.size());
        }
      }
      return 0;
    }
    run(args);
    return 0;
  } catch (const ImageError& e) {
    std::cerr << e.what() << "\n";
    return 1;
  } catch (const UsageError& e) {
    std::cerr << "usage error: " << e.msg << "\n";
    return 2;
  }
}
