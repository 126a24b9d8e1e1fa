// Runs the built `wgllm` (WGLLM_BINARY) as a child process, as a user or a script would: stdout and stderr
// captured separately (into files, so that neither pipe can fill up and stall the child), and the exit code.
#pragma once

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <stdexcept>
#include <string>
#include <vector>

#include "support/test_support.hpp"

extern char** environ;

namespace wgllm::test {

struct Process {
  std::string command;  // for failure messages
  int exit_code = -1;   // 128 + signal when the child was killed
  std::string out, err;
};

inline Process run_wgllm(const std::vector<std::string>& args) {
  static int runs = 0;
  const std::string base = temp_dir() + "/wgllm-run-" + std::to_string(runs++);
  const std::string out_path = base + ".out", err_path = base + ".err";

  Process p{.command = "wgllm"};
  std::vector<char*> argv = {const_cast<char*>(WGLLM_BINARY)};
  for (const std::string& a : args) {
    argv.push_back(const_cast<char*>(a.c_str()));
    p.command += " '" + a + "'";
  }
  argv.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&actions, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  pid_t pid = 0;
  const int spawned = posix_spawn(&pid, WGLLM_BINARY, &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (spawned != 0) throw std::runtime_error(std::string("cannot start ") + WGLLM_BINARY);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) throw std::runtime_error("waitpid failed for " + p.command);
  }
  p.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  p.out = read_file(out_path);
  p.err = read_file(err_path);
  return p;
}

// CONTRACTS.md: "byte-identical to a reference text" means equal after removing one trailing '\n' from each.
inline std::string without_final_newline(std::string s) {
  if (!s.empty() && s.back() == '\n') s.pop_back();
  return s;
}

}  // namespace wgllm::test
