// Whether the client of a request has closed its connection. cpp-httplib 0.11 hands a handler no socket and
// notices a closed peer only when a write fails, which on TCP is the second write after the close (the
// first one still succeeds and draws the reset). Sequences must stop within one step of their client
// leaving, also while they produce no text (a long prompt, text held back for a stop sequence), so the
// handler finds its own socket by its addresses and polls it for the peer's hang-up.
#pragma once

#include <httplib.h>

namespace wgllm::server {

class PeerWatch {
 public:
  explicit PeerWatch(const httplib::Request& request);
  // The peer closed or reset the connection. False when the socket was not found (writes still tell).
  bool gone() const;

 private:
  int fd_ = -1;
};

}  // namespace wgllm::server
