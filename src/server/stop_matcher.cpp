#include "server/stop_matcher.hpp"

#include <algorithm>

namespace wgllm::server {

StopMatcher::StopMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {
  std::erase_if(stops_, [](const std::string& s) { return s.empty(); });
}

StopMatcher::Result StopMatcher::push(std::string_view text) {
  pending_ += text;
  // The first position where a stop sequence begins, or may still begin once more text comes: all before
  // it is safe to send. A complete match counts only when no earlier position is still open, since the
  // earliest occurrence in the whole text is the one that ends it.
  const std::string_view p = pending_;
  size_t at = 0;
  bool complete = false;
  for (; at < p.size(); ++at) {
    const std::string_view rest = p.substr(at);
    bool open = false;
    for (const std::string& s : stops_) {
      if (rest.starts_with(s))
        complete = true;
      else if (rest.size() < s.size() && std::string_view(s).starts_with(rest))
        open = true;
    }
    if (complete || open) break;
  }
  Result r;
  r.text = pending_.substr(0, at);
  r.stopped = complete;
  pending_ = complete ? std::string() : pending_.substr(at);
  return r;
}

StopMatcher::Result StopMatcher::flush() {
  // No more text: a stop sequence that waited on an earlier open position may end the text after all.
  Result r;
  size_t first = std::string::npos;
  for (const std::string& s : stops_) first = std::min(first, pending_.find(s));
  r.stopped = first != std::string::npos;
  r.text = pending_.substr(0, first);
  pending_.clear();
  return r;
}

}  // namespace wgllm::server
