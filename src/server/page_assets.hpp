// The chat page's files (src/server/page/*), embedded into the binary at build time by
// cmake/embed_page.cmake, so the server reads nothing from disk to serve them.
#pragma once

#include <string_view>
#include <vector>

namespace wgllm::server {

struct PageAsset {
  std::string_view name;  // file name, e.g. "index.html"
  std::string_view content;
};

const std::vector<PageAsset>& page_assets();

}  // namespace wgllm::server
