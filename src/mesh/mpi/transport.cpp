#include "mesh/mpi/transport.hpp"

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "core/error.hpp"
#include "mesh/backoff.hpp"

namespace wgllm::mesh {

namespace {

using Clock = std::chrono::steady_clock;

double since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// Beats between rank 0 and another rank (one int each).
enum Beat : int32_t { kBeat = 0, kProbe = 1, kQuit = 2 };
constexpr int kBeatTag = 7;

std::atomic<bool> g_sigcont{false}, g_sigterm{false};
void on_sigcont(int) {
  g_sigcont = true;
}

// Rank 0's probe, as its SIGTERM handler sees it. mpirun may send SIGKILL milliseconds after its SIGTERM
// (11 ms once on this machine), before the heartbeat thread's next turn, so the handler writes the lost
// ranks' lines itself, touching only lock-free atomics, lines made before it was installed, and write(2).
struct ProbeReport {
  std::vector<std::string> lines;                // per rank: "mesh: stage R (rank R on HOST) is gone: ..."
  std::unique_ptr<std::atomic<bool>[]> waiting;  // per rank: probed and not heard from since
  std::atomic<bool> probing{false};
  std::atomic<bool> written{false};  // the lost ranks were reported, by the handler or the heartbeat thread
};
ProbeReport g_probe;

void on_sigterm(int) {
  g_sigterm = true;
  if (!g_probe.probing || g_probe.written.exchange(true)) return;
  for (size_t r = 0; r < g_probe.lines.size(); ++r)
    if (g_probe.waiting[r]) {
      const ssize_t n = write(STDERR_FILENO, g_probe.lines[r].data(), g_probe.lines[r].size());
      (void)n;  // nothing to do about a failed write in a signal handler
    }
}

std::string mpi_error(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(code, text, &len);
  return std::string(text, len);
}

}  // namespace

// The heartbeat thread's view of one peer.
struct Transport::Beats {
  int rank = 0;
  MPI_Request in = MPI_REQUEST_NULL, out = MPI_REQUEST_NULL;
  int32_t in_value = 0, out_value = 0;
  Clock::time_point heard;
  bool lost = false, told_to_quit = false;
};

Transport::Transport(const TransportOptions& options) : options_(options) {
  int provided = 0;
  if (MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided) != MPI_SUCCESS)
    fail_runtime("mesh: MPI_Init_thread failed");
  if (provided < MPI_THREAD_MULTIPLE)
    fail_runtime("mesh: this MPI library does not support MPI_THREAD_MULTIPLE, which the heartbeats need");
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
  MPI_Comm_dup(MPI_COMM_WORLD, &data_);
  MPI_Comm_dup(MPI_COMM_WORLD, &beats_);
  MPI_Comm_set_errhandler(data_, MPI_ERRORS_RETURN);
  MPI_Comm_set_errhandler(beats_, MPI_ERRORS_RETURN);
  const char* policy = std::getenv("OMPI_MCA_orte_abort_on_non_zero_status");
  degraded_allowed_ = policy && (std::strcmp(policy, "0") == 0 || std::strcmp(policy, "false") == 0);
  // Tests lengthen the probe past mpirun's second between SIGCONT and SIGTERM to reach the SIGTERM path.
  if (const char* probe = std::getenv("WGLLM_MESH_PROBE_S")) options_.probe_s = std::atof(probe);

  // Host names before the heartbeats start (their messages name hosts). Every rank was started at once,
  // so a bounded wait suffices.
  char host[MPI_MAX_PROCESSOR_NAME + 1] = {};
  int len = 0;
  MPI_Get_processor_name(host, &len);
  std::vector<char> all(size_t(size_) * (MPI_MAX_PROCESSOR_NAME + 1));
  MPI_Request request;
  MPI_Iallgather(host, MPI_MAX_PROCESSOR_NAME + 1, MPI_CHAR, all.data(), MPI_MAX_PROCESSOR_NAME + 1, MPI_CHAR,
                 data_, &request);
  const auto start = Clock::now();
  Backoff backoff;
  for (int done = 0; !done;) {
    MPI_Test(&request, &done, MPI_STATUS_IGNORE);
    if (!done && since(start) > 30) {
      std::fprintf(stderr, "mesh: rank %d on %s: not every rank of the job answered within 30 s; ending it\n",
                   rank_, host);
      MPI_Abort(MPI_COMM_WORLD, 1);
    }
    if (!done) backoff.idle();
  }
  for (int r = 0; r < size_; ++r) hosts_.emplace_back(all.data() + size_t(r) * (MPI_MAX_PROCESSOR_NAME + 1));

  if (rank_ == 0) {
    struct sigaction sa {};
    sa.sa_handler = on_sigcont;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGCONT, &sa, nullptr);
    // mpirun's SIGTERM comes a second after its SIGCONT. On a loaded machine the probe may not have ended
    // by then: the handler names the ranks that have not answered yet (ProbeReport), the heartbeat thread
    // ends the probe with them lost, and the process ends as after any fault (MPI_Abort, or mpirun's
    // SIGKILL). Without a probe or fault the process dies of SIGTERM as before. Where a command takes
    // SIGTERM itself (blocked here for its watcher thread, as `serve` does), it is left alone.
    sigset_t blocked;
    pthread_sigmask(SIG_BLOCK, nullptr, &blocked);
    if (size_ > 1 && !sigismember(&blocked, SIGTERM)) {
      g_probe.waiting = std::make_unique<std::atomic<bool>[]>(size_);
      for (int r = 0; r < size_; ++r)
        g_probe.lines.push_back(
            "mesh: " + name(r) +
            " is gone: it did not answer before mpirun's SIGTERM, which follows its signal "
            "that a process of the job ended (see mpirun's message)\n");
      sa.sa_handler = on_sigterm;
      sigaction(SIGTERM, &sa, nullptr);
      takes_sigterm_ = true;
    }
  }
  if (size_ > 1) heartbeat_ = std::thread([this] { heartbeat_loop(); });
}

Transport::~Transport() {
  stop_ = true;
  if (heartbeat_.joinable()) heartbeat_.join();
  if (takes_sigterm_) {
    signal(SIGTERM, SIG_DFL);
    if (g_sigterm) kill(getpid(), SIGTERM);
  }
  if (!finished_ || faulted_) {
    if (faulted_)
      std::fprintf(stderr, "mesh: ending the job\n");  // the fault was reported when it was found
    else
      std::fprintf(stderr, "mesh: %s ends before the mesh's shutdown: ending the job\n", name(rank_).c_str());
    std::fflush(stderr);
    if (rank_ != 0) _exit(1);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  if (rank_ == 0) signal(SIGCONT, SIG_DFL);
  for (PendingRecv& r : recvs_) MPI_Wait(&r.request, MPI_STATUS_IGNORE);
  for (PendingSend& s : sends_) MPI_Wait(&s.request, MPI_STATUS_IGNORE);
  MPI_Comm_free(&data_);
  MPI_Comm_free(&beats_);
  MPI_Finalize();
}

int Transport::local_rank() {
  const char* v = std::getenv("OMPI_COMM_WORLD_LOCAL_RANK");
  return v ? std::atoi(v) : 0;
}

std::string Transport::name(int rank) const {
  return "stage " + std::to_string(rank) + " (rank " + std::to_string(rank) + " on " + hosts_[rank] + ")";
}

void Transport::heartbeat_loop() {
  // Signals for the process (SIGTERM, SIGINT, mpirun's SIGCONT) go to the application's threads.
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, nullptr);
  std::vector<Beats> peers;
  const auto start = Clock::now();
  for (int r = 0; r < size_; ++r)
    if (r != rank_ && (rank_ == 0 || r == 0)) peers.push_back({.rank = r, .heard = start});
  auto post_recv = [&](Beats& p) { MPI_Irecv(&p.in_value, 1, MPI_INT32_T, p.rank, kBeatTag, beats_, &p.in); };
  auto send = [&](Beats& p, Beat what) {
    int done = 1;
    if (p.out != MPI_REQUEST_NULL) MPI_Test(&p.out, &done, MPI_STATUS_IGNORE);
    if (!done) return;  // the last beat is still on its way: the peer is not receiving
    p.out_value = what;
    MPI_Isend(&p.out_value, 1, MPI_INT32_T, p.rank, kBeatTag, beats_, &p.out);
  };
  for (Beats& p : peers) post_recv(p);
  auto last_beat = Clock::time_point{};
  std::optional<Clock::time_point> fault_at;
  Clock::time_point probe_at;  // while g_probe.probing

  while (!stop_) {
    const auto now = Clock::now();
    for (Beats& p : peers) {
      for (int done = 1; done;) {
        MPI_Test(&p.in, &done, MPI_STATUS_IGNORE);
        if (!done) break;
        p.heard = now;
        if (takes_sigterm_) g_probe.waiting[p.rank] = false;
        const int32_t what = p.in_value;
        post_recv(p);
        if (what == kProbe) send(p, kBeat);
        if (what == kQuit) {
          std::fprintf(stderr, "mesh: %s: rank 0 reports that the mesh has failed; exiting\n",
                       name(rank_).c_str());
          std::fflush(stderr);
          _exit(1);
        }
      }
    }
    if (std::chrono::duration<double>(now - last_beat).count() >= options_.heartbeat_s) {
      for (Beats& p : peers)
        if (!p.lost) send(p, kBeat);
      last_beat = now;
    }
    if (rank_ == 0 && g_sigcont.exchange(false) && !g_probe.probing) {
      probe_at = now;
      for (Beats& p : peers)
        if (!p.lost) {
          if (takes_sigterm_) g_probe.waiting[p.rank] = true;
          send(p, kProbe);
        }
      g_probe.probing = true;
    }
    const bool terminated = rank_ == 0 && g_sigterm;
    const double probed = std::chrono::duration<double>(now - probe_at).count();
    if (g_probe.probing && (terminated || probed >= options_.probe_s)) {
      bool report = true;  // unless the SIGTERM handler already did
      for (Beats& p : peers)
        if (!p.lost && p.heard < probe_at) {
          if (report) report = !g_probe.written.exchange(true);
          p.lost = true;
          char why[160];
          std::snprintf(
              why, sizeof why,
              "is gone: it did not answer within %.1f s of mpirun's signal that a process of the job "
              "ended (see mpirun's message)",
              probed);
          lose(p.rank, why, report);
        }
      g_probe.probing = false;
    }
    if (terminated && !faulted_) {
      signal(SIGTERM, SIG_DFL);
      kill(getpid(), SIGTERM);  // to the process: this thread blocks every signal
      return;
    }
    if (!closing_)
      for (Beats& p : peers) {
        const double silent = std::chrono::duration<double>(now - p.heard).count();
        if (!p.lost && silent > options_.lost_after_s) {
          p.lost = true;
          char why[96];
          std::snprintf(why, sizeof why, "stopped answering: no heartbeat for %.1f s", silent);
          lose(p.rank, why);
        }
      }
    if (faulted_) {
      if (rank_ != 0) {
        std::fprintf(stderr, "mesh: %s: ending the job\n", name(rank_).c_str());
        std::fflush(stderr);
        MPI_Abort(MPI_COMM_WORLD, 1);
      }
      if (!fault_at) {
        fault_at = now;
        if (degraded_allowed_)
          std::fprintf(
              stderr,
              "mesh: rank 0 stays up (orte_abort_on_non_zero_status=0): generation fails until the job is "
              "restarted; the other ranks exit\n");
      }
      if (degraded_allowed_) {
        for (Beats& p : peers)
          if (!p.lost && !p.told_to_quit) {
            send(p, kQuit);
            p.told_to_quit = true;
          }
      } else if (std::chrono::duration<double>(now - *fault_at).count() >= options_.grace_s) {
        std::fprintf(stderr, "mesh: ending the job\n");
        std::fflush(stderr);
        MPI_Abort(MPI_COMM_WORLD, 1);
      }
    }
    usleep(20000);
  }
  for (Beats& p : peers) {
    MPI_Cancel(&p.in);
    MPI_Wait(&p.in, MPI_STATUS_IGNORE);
    if (p.out != MPI_REQUEST_NULL) {
      // A beat to a rank that is gone may never complete; it is dropped with the communicator.
      int done = 0;
      MPI_Test(&p.out, &done, MPI_STATUS_IGNORE);
      if (!done) MPI_Request_free(&p.out);
    }
  }
}

void Transport::lose(int rank, const std::string& why, bool report) {
  record_fault(rank == rank_ ? why : name(rank) + " " + why, report);
}

void Transport::set_fault(const std::string& message) {
  record_fault(message, true);
}

void Transport::record_fault(const std::string& message, bool report) {
  {
    std::lock_guard lock(mutex_);
    if (fault_) return;
    fault_ = message;
  }
  if (report) {
    std::fprintf(stderr, "mesh: %s\n", message.c_str());
    std::fflush(stderr);
  }
  faulted_ = true;
}

std::optional<std::string> Transport::fault() const {
  std::lock_guard lock(mutex_);
  return fault_;
}

void Transport::check() const {
  if (faulted_) fail_runtime("mesh: " + *fault());
}

void Transport::closing() {
  closing_ = true;
}

void Transport::send(int dst, Tag tag, std::vector<uint8_t> bytes) {
  check();
  if (bytes.size() > size_t(INT_MAX))
    fail_runtime("mesh: a message of " + std::to_string(bytes.size()) + " bytes to " + name(dst) +
                 " exceeds MPI's 2 GiB limit: use a smaller batch");
  PendingSend s{MPI_REQUEST_NULL, std::move(bytes)};
  const int rc =
      MPI_Isend(s.bytes.data(), static_cast<int>(s.bytes.size()), MPI_BYTE, dst, tag, data_, &s.request);
  if (rc != MPI_SUCCESS) {
    set_fault("sending to " + name(dst) + " failed: " + mpi_error(rc));
    check();
  }
  sends_.push_back(std::move(s));
}

void Transport::take_errors() {
  if (rank_ != 0) return;
  int from = 0;
  if (std::optional<std::vector<uint8_t>> text = poll(MPI_ANY_SOURCE, kError, &from))
    set_fault(name(from) + " failed: " + std::string(text->begin(), text->end()));
}

void Transport::report_error(const std::string& what) {
  if (rank_ == 0 || faulted_) return;
  send(0, kError, std::vector<uint8_t>(what.begin(), what.end()));
  const auto start = Clock::now();
  Backoff backoff;
  while (!sends_.empty() && since(start) < 2) {
    progress();
    backoff.idle();
  }
}

bool Transport::progress() {
  take_errors();
  check();
  for (size_t i = 0; i < sends_.size();) {
    int done = 0;
    const int rc = MPI_Test(&sends_[i].request, &done, MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS) {
      set_fault(std::string("a send failed: ") + mpi_error(rc));
      check();
    }
    if (done)
      sends_.erase(sends_.begin() + static_cast<ptrdiff_t>(i));
    else
      ++i;
  }
  return sends_.empty();
}

std::optional<std::vector<uint8_t>> Transport::poll(int src, Tag tag, int* from) {
  check();
  for (int flag = 1; flag;) {  // match whatever has arrived, so that its transfer can proceed
    MPI_Message message;
    MPI_Status status;
    MPI_Improbe(MPI_ANY_SOURCE, MPI_ANY_TAG, data_, &flag, &message, &status);
    if (!flag) break;
    int count = 0;
    MPI_Get_count(&status, MPI_BYTE, &count);
    PendingRecv r;
    r.bytes.resize(size_t(count));
    r.src = status.MPI_SOURCE;
    r.tag = static_cast<Tag>(status.MPI_TAG);
    MPI_Imrecv(r.bytes.data(), count, MPI_BYTE, &message, &r.request);
    recvs_.push_back(std::move(r));
  }
  for (size_t i = 0; i < recvs_.size(); ++i) {
    PendingRecv& r = recvs_[i];
    if (r.tag != tag || (src != MPI_ANY_SOURCE && r.src != src)) continue;
    int done = 0;
    MPI_Test(&r.request, &done, MPI_STATUS_IGNORE);
    if (!done) return std::nullopt;  // the earliest of this sender and tag comes first
    std::vector<uint8_t> bytes = std::move(r.bytes);
    if (from) *from = r.src;
    recvs_.erase(recvs_.begin() + static_cast<ptrdiff_t>(i));
    return bytes;
  }
  return std::nullopt;
}

void Transport::wait(MPI_Request& request, const char* what) {
  Backoff backoff;
  for (;;) {
    int done = 0;
    const int rc = MPI_Test(&request, &done, MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS) set_fault(std::string(what) + " failed: " + mpi_error(rc));
    if (done) return;
    take_errors();
    check();
    backoff.idle();
  }
}

std::vector<std::vector<uint8_t>> Transport::all_gather(const std::vector<uint8_t>& mine) {
  int my_size = static_cast<int>(mine.size());
  std::vector<int> sizes(size_t(size_), 0);
  MPI_Request request;
  MPI_Iallgather(&my_size, 1, MPI_INT, sizes.data(), 1, MPI_INT, data_, &request);
  wait(request, "gathering the ranks' reports");
  std::vector<int> offsets(size_t(size_), 0);
  size_t total = 0;
  for (int r = 0; r < size_; ++r) {
    offsets[r] = static_cast<int>(total);
    total += size_t(sizes[r]);
  }
  std::vector<uint8_t> all(total);
  MPI_Iallgatherv(mine.data(), my_size, MPI_BYTE, all.data(), sizes.data(), offsets.data(), MPI_BYTE, data_,
                  &request);
  wait(request, "gathering the ranks' reports");
  std::vector<std::vector<uint8_t>> out;
  for (int r = 0; r < size_; ++r)
    out.emplace_back(all.begin() + offsets[r], all.begin() + offsets[r] + sizes[r]);
  return out;
}

void Transport::barrier() {
  MPI_Request request;
  MPI_Ibarrier(data_, &request);
  wait(request, "waiting for every rank");
}

}  // namespace wgllm::mesh
