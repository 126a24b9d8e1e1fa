// wgllm: the command-line front end. Subcommands live in cmd_*.cpp; this file only dispatches.
#include <cstdio>
#include <string>

int main(int argc, char** argv) {
  std::fprintf(stderr, "usage: wgllm <run|info|devices|logits> [options]\n");
  return argc > 1 && std::string(argv[1]) == "--help" ? 0 : 2;
}
