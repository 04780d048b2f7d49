// The cluster of a calibration run (core/cluster.h) and the public llmq/distributed.h.
#include "core/cluster.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "core/phase_clock.h"
#include "llmq/distributed.h"

#ifdef LLMQ_HAVE_MPI
#define OMPI_SKIP_MPICXX 1  // the C API only: no libmpi_cxx
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>
#endif

namespace llmq {
namespace internal {

struct ClusterAccess {
  static Cluster& world() {
    static Cluster c;
    return c;
  }
  static void set(int rank, int size) {
    world().rank_ = rank;
    world().size_ = size;
  }
};

const Cluster& Cluster::World() { return ClusterAccess::world(); }

std::pair<int64_t, int64_t> Cluster::Share(int64_t n, int r) const {
  return {n * r / size_, n * (r + 1) / size_};
}

std::vector<int> Cluster::Assign(const std::vector<double>& costs) const {
  std::vector<size_t> order(costs.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return costs[a] > costs[b]; });
  std::vector<double> load(size_t(size_), 0.0);
  std::vector<int> rank(costs.size(), 0);
  for (size_t i : order) {
    const int r = int(std::min_element(load.begin(), load.end()) - load.begin());
    rank[i] = r;
    load[size_t(r)] += costs[i];
  }
  return rank;
}

#ifdef LLMQ_HAVE_MPI
namespace {
bool g_started = false;  // this process called MPI_Init_thread
// MPI counts are ints: pieces of at most 1 GiB.
constexpr uint64_t kPiece = uint64_t(1) << 30;
}  // namespace

void Cluster::Send(const void* data, uint64_t bytes, int to, int tag) const {
  ScopedPhase phase(Phase::kExchange);
  const auto* p = static_cast<const char*>(data);
  for (uint64_t off = 0; off < bytes; off += kPiece)
    MPI_Send(p + off, int(std::min(kPiece, bytes - off)), MPI_BYTE, to, tag, MPI_COMM_WORLD);
}

void Cluster::Recv(void* data, uint64_t bytes, int from, int tag) const {
  ScopedPhase phase(Phase::kExchange);
  auto* p = static_cast<char*>(data);
  for (uint64_t off = 0; off < bytes; off += kPiece)
    MPI_Recv(p + off, int(std::min(kPiece, bytes - off)), MPI_BYTE, from, tag, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
}

void Cluster::Broadcast(void* data, uint64_t bytes, int root) const {
  if (size_ == 1) return;
  ScopedPhase phase(Phase::kExchange);
  auto* p = static_cast<char*>(data);
  for (uint64_t off = 0; off < bytes; off += kPiece)
    MPI_Bcast(p + off, int(std::min(kPiece, bytes - off)), MPI_BYTE, root, MPI_COMM_WORLD);
}

void Cluster::Abort(const std::string& message, int exit_code) const {
  if (!message.empty()) std::fprintf(stderr, "%s\n", message.c_str());
  std::fflush(stderr);
  if (g_started) MPI_Abort(MPI_COMM_WORLD, exit_code);
  std::exit(exit_code);
}
#else
void Cluster::Send(const void*, uint64_t, int, int) const { Abort("llmq: internal error: Send without MPI", 70); }
void Cluster::Recv(void*, uint64_t, int, int) const { Abort("llmq: internal error: Recv without MPI", 70); }
void Cluster::Broadcast(void*, uint64_t, int) const {}
void Cluster::Abort(const std::string& message, int exit_code) const {
  if (!message.empty()) std::fprintf(stderr, "%s\n", message.c_str());
  std::exit(exit_code);
}
#endif

void Cluster::Broadcast(std::string* s, int root) const {
  std::vector<char> v(s->begin(), s->end());
  Broadcast(&v, root);
  s->assign(v.begin(), v.end());
}

void Cluster::Broadcast(bool* b, int root) const {
  uint8_t v = *b ? 1 : 0;
  Broadcast(&v, 1, root);
  *b = v != 0;
}

}  // namespace internal

bool distributed_built() {
#ifdef LLMQ_HAVE_MPI
  return true;
#else
  return false;
#endif
}

Status distributed_start(int* argc, char*** argv) {
#ifdef LLMQ_HAVE_MPI
  if (internal::g_started) return Status::Ok();
  // Started by a launcher (Open MPI's mpirun, or a PMI one such as MPICH's or Slurm's)? A plain
  // `llmq quantize` must not become an MPI singleton.
  const bool launched = std::getenv("OMPI_COMM_WORLD_SIZE") || std::getenv("PMI_SIZE") || std::getenv("PMIX_RANK");
  if (!launched) return Status::Ok();
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) {
    int provided = 0;
    // Only the main thread calls MPI (OpenMP threads never do).
    if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
      return Status::Internal("MPI_Init_thread failed: cannot join the mpirun job");
    internal::g_started = true;
  }
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  internal::ClusterAccess::set(rank, size);
  return Status::Ok();
#else
  (void)argc, (void)argv;
  return Status::Ok();
#endif
}

int distributed_rank() { return internal::Cluster::World().rank(); }
int distributed_size() { return internal::Cluster::World().size(); }

void distributed_stop() {
#ifdef LLMQ_HAVE_MPI
  if (!internal::g_started) return;
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
  internal::g_started = false;
  internal::ClusterAccess::set(0, 1);
#endif
}

void distributed_abort(int exit_code) { internal::Cluster::World().Abort("", exit_code); }

}  // namespace llmq
