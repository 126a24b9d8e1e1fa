#include "runtime/prompt_checks.hpp"

#include <string>

#include "core/error.hpp"

namespace wgllm::runtime {

void check_token_ids(std::span<const int32_t> ids, uint32_t n_vocab) {
  for (int32_t id : ids)
    if (id < 0 || static_cast<uint32_t>(id) >= n_vocab)
      fail_input("token id " + std::to_string(id) + " is outside the vocabulary of " +
                 std::to_string(n_vocab));
}

void check_prompt(std::span<const int32_t> prompt, uint32_t n_ctx, uint32_t n_vocab) {
  if (prompt.empty()) fail_input("the prompt has no tokens");
  if (prompt.size() >= n_ctx)
    fail_input("the prompt of " + std::to_string(prompt.size()) +
               " tokens leaves no room for a generated token in the context of " + std::to_string(n_ctx) +
               " tokens");
  check_token_ids(prompt, n_vocab);
}

}  // namespace wgllm::runtime
