// Stop sequences over streamed text: text that could still turn out to be the start of a stop sequence is
// held back until it can't, so a client never sees any part of a stop sequence.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace wgllm::server {

class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops);

  struct Result {
    std::string text;      // safe to send now
    bool stopped = false;  // a stop sequence was found: `text` ends where it begins; nothing follows
  };
  Result push(std::string_view text);
  // The held-back text once the generation has ended for another reason; it may still hold a stop
  // sequence (one that waited on an earlier, longer candidate).
  Result flush();

 private:
  std::vector<std::string> stops_;  // non-empty strings
  std::string pending_;             // held back: from the first position where a stop sequence may begin
};

}  // namespace wgllm::server
