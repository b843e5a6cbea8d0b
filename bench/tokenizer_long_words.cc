// Driver of bench/tokenizer_long_words.py: times dlavm::Tokenizer::encode on one text.
//   tokenizer_long_words TOKENIZER TEXTFILE REPEAT
// prints {"seconds": BEST, "runs": R, "ids": [...]}: the best of R encodes, R being REPEAT or fewer when
// they passed 2 seconds in all (at least one), and the ids of the last.
#include <algorithm>
#include <chrono>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "dlavm/tokenizer.h"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::cerr << "usage: tokenizer_long_words TOKENIZER TEXTFILE REPEAT\n";
    return 2;
  }
  dlavm::Tokenizer tok = dlavm::Tokenizer::from_file(argv[1]);
  std::ifstream f(argv[2], std::ios::binary);
  std::ostringstream ss;
  ss << f.rdbuf();
  const std::string text = ss.str();
  const int repeat = std::stoi(argv[3]);
  double best = 1e300, total = 0;
  int runs = 0;
  std::vector<int32_t> ids;
  while (runs < repeat && (runs == 0 || total < 2.0)) {
    auto t0 = std::chrono::steady_clock::now();
    ids = tok.encode(text);
    std::chrono::duration<double> dt = std::chrono::steady_clock::now() - t0;
    best = std::min(best, dt.count());
    total += dt.count();
    ++runs;
  }
  std::cout << "{\"seconds\": " << best << ", \"runs\": " << runs << ", \"ids\": [";
  for (size_t i = 0; i < ids.size(); ++i) std::cout << (i ? "," : "") << ids[i];
  std::cout << "]}\n";
  return 0;
}
