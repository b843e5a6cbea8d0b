// Stop strings for streamed text (doc/serve.md, "GENERATE"): the reply ends before the first stop
// string; text that might begin one is held back until it cannot.
#pragma once

#include <string>
#include <vector>

namespace dlavm {
namespace serve {

class StopFilter {
 public:
  explicit StopFilter(std::vector<std::string> stops) : stops_(std::move(stops)) {}

  // Add `text` (whole UTF-8 characters); returns the part now final. Once a stop string appeared,
  // stopped() is true, the returned text ends right before it and every later call returns "".
  std::string push(const std::string& text);
  // The text held back (at the end of the reply: its tail, nothing of a stop string in it).
  const std::string& held() const { return held_; }
  bool stopped() const { return stopped_; }

 private:
  std::vector<std::string> stops_;
  std::string held_;
  bool stopped_ = false;
};

}  // namespace serve
}  // namespace dlavm
