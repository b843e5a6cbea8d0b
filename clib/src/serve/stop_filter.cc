#include "stop_filter.h"

#include "dlavm/serve_protocol.h"

namespace dlavm {
namespace serve {

std::string StopFilter::push(const std::string& text) {
  if (stopped_) return "";
  held_ += text;
  if (stops_.empty()) {
    std::string out;
    out.swap(held_);
    return out;
  }
  // The earliest stop string ends the reply.
  size_t first = std::string::npos;
  for (const std::string& s : stops_) {
    const size_t at = held_.find(s);
    if (at < first) first = at;
  }
  if (first != std::string::npos) {
    stopped_ = true;
    std::string out = held_.substr(0, first);
    held_.clear();
    return out;
  }
  // Hold back the longest tail that is a proper prefix of a stop string, starting at a character
  // boundary (stop strings are valid UTF-8, so a match never starts inside a character).
  size_t keep_from = held_.size();
  for (size_t k = held_.size(); k-- > 0;) {
    if ((static_cast<unsigned char>(held_[k]) & 0xC0) == 0x80) continue;
    const size_t tail = held_.size() - k;
    bool prefix = false;
    for (const std::string& s : stops_)
      if (s.size() > tail && s.compare(0, tail, held_, k, tail) == 0) {
        prefix = true;
        break;
      }
    if (prefix) keep_from = k;
    if (tail >= kMaxStopBytes) break;  // no stop string is longer
  }
  std::string out = held_.substr(0, keep_from);
  held_.erase(0, keep_from);
  return out;
}

}  // namespace serve
}  // namespace dlavm
