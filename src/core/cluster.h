// The processes a calibration run is spread over (internal; the public side is llmq/distributed.h).
//
// One process unless distributed_start joined an MPI job of several ranks. Every call is
// blocking and every rank makes the collective ones (Broadcast, Barrier) in the same order;
// messages longer than MPI's int count are sent in pieces. MPI's default error handler stays in
// place: a failed call, or a peer that died, ends the job instead of hanging it.
#ifndef LLMQ_CORE_CLUSTER_H_
#define LLMQ_CORE_CLUSTER_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace llmq::internal {

class Cluster {
 public:
  // The job this process belongs to (MPI_COMM_WORLD after distributed_start, else itself alone).
  static const Cluster& World();

  int rank() const { return rank_; }
  int size() const { return size_; }
  bool root() const { return rank_ == 0; }
  bool distributed() const { return size_ > 1; }

  // The windows [begin, end) of `n` that rank `r` owns: contiguous ranges in rank order, so the
  // ranks' windows one after the other are the windows in order.
  std::pair<int64_t, int64_t> Share(int64_t n, int r) const;
  std::pair<int64_t, int64_t> Share(int64_t n) const { return Share(n, rank_); }

  // The rank that does each of several jobs of the given costs: the most costly first, each to
  // the rank with the least work so far. Decides how long a run takes, never its result.
  std::vector<int> Assign(const std::vector<double>& costs) const;

  void Send(const void* data, uint64_t bytes, int to, int tag) const;
  void Recv(void* data, uint64_t bytes, int from, int tag) const;
  // `bytes` bytes at `data` from `root` to every rank.
  void Broadcast(void* data, uint64_t bytes, int root) const;
  // A vector whose size only `root` knows.
  template <typename T>
  void Broadcast(std::vector<T>* v, int root) const {
    uint64_t n = v->size();
    Broadcast(&n, sizeof n, root);
    v->resize(size_t(n));
    if (n) Broadcast(v->data(), n * sizeof(T), root);
  }
  void Broadcast(std::string* s, int root) const;
  void Broadcast(bool* b, int root) const;
  // Ends every rank (MPI_Abort) after printing `message` to stderr.
  [[noreturn]] void Abort(const std::string& message, int exit_code) const;

 private:
  friend struct ClusterAccess;
  int rank_ = 0, size_ = 1;
};

}  // namespace llmq::internal

#endif  // LLMQ_CORE_CLUSTER_H_
