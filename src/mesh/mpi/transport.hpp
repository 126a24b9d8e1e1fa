// MPI for the mesh: non-blocking messages between ranks, and the fault detection OpenMPI 4.1 leaves to the
// application (docs/mesh.md, "What OpenMPI 4.1 does when a rank fails"). A heartbeat thread exchanges a
// beat between rank 0 and every other rank on a communicator of its own; a rank not heard from for
// `lost_after_s` is lost. On rank 0 a SIGCONT (mpirun's first signal when a process of the job dies)
// starts an immediate check: every rank is pinged, and one that does not answer within `probe_s` is lost;
// mpirun's SIGTERM (a second after its SIGCONT) ends that check at once, before rank 0 dies of it.
//
// What happens to a lost rank: it is reported on stderr naming its stage and host, and every later call
// that waits on another rank throws Error(Runtime) with that message (fault()). Then, on rank 0: under
// mpirun's default policy the job is ended with MPI_Abort after `grace_s` (time for the server to answer
// its running requests); under `--mca orte_abort_on_non_zero_status 0` rank 0 stays up (degraded), tells
// the other ranks to exit, and ends the job with MPI_Abort when it is destroyed. A rank other than 0 that
// loses rank 0 ends the job at once.
#pragma once

#include <mpi.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace wgllm::mesh {

struct TransportOptions {
  double heartbeat_s = 0.2;   // between beats
  double lost_after_s = 3.0;  // silence after which a rank is lost
  double probe_s = 0.5;       // after SIGCONT, how long rank 0 waits for every rank's answer
  double grace_s = 1.0;       // from a fault to MPI_Abort on rank 0 (mpirun's default policy)
};

class Transport {
 public:
  enum Tag : int { kPass = 1, kResult = 2, kError = 3 };

  // MPI_Init_thread (MPI_THREAD_MULTIPLE), every rank's host name, the heartbeat thread. Collective.
  explicit Transport(const TransportOptions& options = {});
  // After finished() and without a fault: stops the heartbeats and calls MPI_Finalize. Otherwise (a fault,
  // an exception on its way out) MPI_Finalize would wait for ranks that are gone or still working: rank 0
  // ends the job with MPI_Abort(1), another rank exits with status 1 (which ends the job under mpirun's
  // default policy, and leaves rank 0 serving under orte_abort_on_non_zero_status=0).
  ~Transport();
  Transport(const Transport&) = delete;
  Transport& operator=(const Transport&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  const std::string& host(int rank) const { return hosts_[rank]; }
  static int local_rank();  // among the ranks on this host (OMPI_COMM_WORLD_LOCAL_RANK), 0 outside mpirun
  // "stage S (rank R on HOST)": the mesh runs stage R on rank R.
  std::string name(int rank) const;

  // Posts a send; it completes in the background (progress()). Messages between two ranks with one tag
  // arrive in order.
  void send(int dst, Tag tag, std::vector<uint8_t> bytes);
  // A whole message from `src` (MPI_ANY_SOURCE: any rank) with `tag` when one has arrived; never blocks.
  std::optional<std::vector<uint8_t>> poll(int src, Tag tag, int* from = nullptr);
  // Advances the posted sends and takes the errors other ranks reported (rank 0); throws the fault once
  // there is one. True when no send is pending.
  bool progress();
  // Error(Runtime) with the fault's message, when a rank has been lost.
  void check() const;
  std::optional<std::string> fault() const;
  // Marks a fault found by the caller: the same path as a lost rank.
  void set_fault(const std::string& message);
  // Not rank 0: sends rank 0 this rank's error (it becomes rank 0's fault, "stage S (...) failed: what")
  // and waits up to 2 s for it to leave.
  void report_error(const std::string& what);

  // Every rank's bytes, in rank order; polls with the fault checks. Collective.
  std::vector<std::vector<uint8_t>> all_gather(const std::vector<uint8_t>& mine);
  // Collective: returns when every rank has called it.
  void barrier();

  // An orderly end is coming (rank 0 has sent the shutdown pass): silence no longer means a fault.
  void closing();
  // The orderly end is done: the destructor may call MPI_Finalize.
  void finished() { finished_ = true; }

 private:
  struct Beats;
  void heartbeat_loop();
  // report: print the fault on stderr (not where rank 0's SIGTERM handler already has).
  void lose(int rank, const std::string& why, bool report = true);
  void record_fault(const std::string& message, bool report);
  void wait(MPI_Request& request, const char* what);
  void take_errors();

  TransportOptions options_;
  bool takes_sigterm_ = false;  // rank 0's SIGTERM handler is installed (restored by the destructor)
  int rank_ = 0, size_ = 1;
  std::vector<std::string> hosts_;
  MPI_Comm data_ = MPI_COMM_NULL, beats_ = MPI_COMM_NULL;
  bool degraded_allowed_ = false;  // mpirun runs with orte_abort_on_non_zero_status=0

  struct PendingSend {
    MPI_Request request;
    std::vector<uint8_t> bytes;
  };
  std::vector<PendingSend> sends_;
  struct PendingRecv {
    MPI_Request request = MPI_REQUEST_NULL;
    std::vector<uint8_t> bytes;
    int src = 0;
    Tag tag = kPass;
  };
  std::vector<PendingRecv> recvs_;  // matched, still arriving

  mutable std::mutex mutex_;  // guards fault_
  std::optional<std::string> fault_;
  std::atomic<bool> stop_{false}, closing_{false}, faulted_{false};
  bool finished_ = false;
  std::thread heartbeat_;
};

}  // namespace wgllm::mesh
