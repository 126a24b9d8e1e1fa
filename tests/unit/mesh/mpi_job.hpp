// `mpirun ... wgllm ...` as a child of a test: its stdout and stderr in files, its ranks' process ids (the
// children of mpirun, by OMPI_COMM_WORLD_RANK), waits that never block past a deadline, and a destructor
// that kills whatever is left of the job, so that no test can leave processes behind or hang the suite.
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support/test_support.hpp"

extern char** environ;

namespace wgllm::test {

class MpiJob {
 public:
  using Clock = std::chrono::steady_clock;

  // mpirun --allow-run-as-root --oversubscribe -np N [mpirun_flags] wgllm args
  MpiJob(int np, const std::vector<std::string>& args, const std::vector<std::string>& mpirun_flags = {}) {
    static int jobs = 0;
    const std::string base = temp_dir() + "/mpi-job-" + std::to_string(jobs++);
    out_path_ = base + ".out";
    err_path_ = base + ".err";
    std::vector<std::string> argv = {"mpirun", "--allow-run-as-root", "--oversubscribe", "-np",
                                     std::to_string(np)};
    argv.insert(argv.end(), mpirun_flags.begin(), mpirun_flags.end());
    argv.push_back(WGLLM_BINARY);
    argv.insert(argv.end(), args.begin(), args.end());
    for (const std::string& a : argv) command_ += (command_.empty() ? "" : " ") + a;
    std::vector<char*> cargv;
    for (std::string& a : argv) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 1, out_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&actions, 2, err_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int rc = posix_spawnp(&pid_, "mpirun", &actions, nullptr, cargv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) throw std::runtime_error("cannot start mpirun (is OpenMPI installed?)");
    np_ = np;
  }
  ~MpiJob() { kill_all(); }
  MpiJob(const MpiJob&) = delete;
  MpiJob& operator=(const MpiJob&) = delete;

  const std::string& command() const { return command_; }
  std::string out() const { return read_file(out_path_); }
  std::string err() const { return read_file(err_path_); }
  pid_t pid() const { return pid_; }

  // mpirun's exit status (128 + signal when killed), once it has ended; never blocks.
  std::optional<int> status() {
    if (!status_) {
      int s = 0;
      if (waitpid(pid_, &s, WNOHANG) == pid_) status_ = WIFEXITED(s) ? WEXITSTATUS(s) : 128 + WTERMSIG(s);
    }
    return status_;
  }
  // Waits for mpirun to end; nullopt (and the job killed) when it has not within `seconds`.
  std::optional<int> wait(double seconds) {
    const auto deadline = Clock::now() + std::chrono::duration<double>(seconds);
    while (!status() && Clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    if (!status()) {
      kill_all();
      return std::nullopt;
    }
    return status_;
  }
  // Waits until stderr holds `text` (true) or mpirun ended or `seconds` passed (false).
  bool wait_for_err(const std::string& text, double seconds) { return wait_for(err_path_, text, seconds); }
  bool wait_for_out(const std::string& text, double seconds) { return wait_for(out_path_, text, seconds); }

  // rank -> process id, once every rank has started (empty if they did not within 30 s).
  std::map<int, pid_t> ranks() {
    const auto deadline = Clock::now() + std::chrono::seconds(30);
    while (Clock::now() < deadline && !status()) {
      std::map<int, pid_t> out;
      for (pid_t p : children(pid_)) {
        std::ifstream env("/proc/" + std::to_string(p) + "/environ", std::ios::binary);
        std::string var;
        while (std::getline(env, var, '\0'))
          if (var.starts_with("OMPI_COMM_WORLD_RANK=")) out[std::stoi(var.substr(21))] = p;
      }
      if (static_cast<int>(out.size()) == np_) {
        for (auto& [r, p] : out) known_.push_back(p);
        return out;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return {};
  }
  // Processes of the job (mpirun and the ranks seen by ranks()) still running `seconds` from now (a rank
  // that mpirun killed may take a moment to go, and mpirun need not wait for it).
  std::vector<pid_t> alive(double seconds = 5) const {
    const auto deadline = Clock::now() + std::chrono::duration<double>(seconds);
    for (;;) {
      std::vector<pid_t> out;
      std::vector<pid_t> all = known_;
      all.push_back(pid_);
      for (pid_t p : all)
        if (running(p)) out.push_back(p);
      if (out.empty() || Clock::now() >= deadline) return out;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  void kill_all() {
    for (pid_t p : children(pid_)) known_.push_back(p);
    for (pid_t p : known_)
      if (running(p)) kill(p, SIGKILL);
    if (!status()) {
      kill(pid_, SIGKILL);
      wait_exit();
    }
  }

 private:
  bool wait_for(const std::string& path, const std::string& text, double seconds) {
    const auto deadline = Clock::now() + std::chrono::duration<double>(seconds);
    while (Clock::now() < deadline) {
      if (read_file(path).find(text) != std::string::npos) return true;
      if (status()) return read_file(path).find(text) != std::string::npos;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }
  void wait_exit() {
    int s = 0;
    if (waitpid(pid_, &s, 0) == pid_) status_ = WIFEXITED(s) ? WEXITSTATUS(s) : 128 + WTERMSIG(s);
  }
  // Alive and not a zombie (a rank whose parent has not reaped it yet has ended).
  static bool running(pid_t p) {
    std::ifstream stat("/proc/" + std::to_string(p) + "/stat");
    std::string line;
    if (!std::getline(stat, line)) return false;
    const size_t paren = line.rfind(')');
    return paren != std::string::npos && paren + 2 < line.size() && line[paren + 2] != 'Z';
  }
  static std::vector<pid_t> children(pid_t parent) {
    std::vector<pid_t> out;
    DIR* d = opendir("/proc");
    if (!d) return out;
    while (dirent* e = readdir(d)) {
      const pid_t p = static_cast<pid_t>(std::atoi(e->d_name));
      if (p <= 0) continue;
      std::ifstream stat("/proc/" + std::to_string(p) + "/stat");
      std::string line;
      if (!std::getline(stat, line)) continue;
      const size_t paren = line.rfind(')');
      if (paren == std::string::npos) continue;
      std::istringstream rest(line.substr(paren + 2));
      std::string state;
      pid_t ppid = 0;
      rest >> state >> ppid;
      if (ppid == parent) out.push_back(p);
    }
    closedir(d);
    return out;
  }

  pid_t pid_ = -1;
  int np_ = 0;
  std::string out_path_, err_path_, command_;
  std::optional<int> status_;
  std::vector<pid_t> known_;
};

}  // namespace wgllm::test
