#pragma once
// Several processes (MPI ranks) working on one run. A Communicator is passed down explicitly to
// whatever shares out work; without MPI (or when psm was not started by an MPI launcher) it is
// the one-process communicator, on which every collective returns its input.
//
//   int main(int argc, char** argv) {
//     psm::MpiSession session(argc, argv);          // MPI_Init when started by mpirun / srun
//     const psm::Communicator world = session.world();
//     torch::Tensor total = world.allreduce_sum(part);   // [..] on every rank
//   }
//
// No header of MPI is included here: only src/core/communicator.cpp sees it (PSM_WITH_MPI).

#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <utility>

namespace psm {

/// A group of ranks (MPI_COMM_WORLD, or one process). Cheap to copy; copies share the group.
/// Collectives must be called by every rank of the group in the same order. Tensors are CPU
/// tensors; float64, float32 and int64 are supported.
class Communicator {
 public:
  /// The one-process communicator: rank 0 of 1.
  Communicator();

  int rank() const { return rank_; }
  int size() const { return size_; }
  /// Rank 0 writes outputs and prints.
  bool is_root() const { return rank_ == 0; }

  /// Returns when every rank has called it (as soon as the last one does: waiting ranks spin).
  void barrier() const;
  /// barrier() for long waits: waiting ranks sleep rather than spin, leaving the cores to the
  /// ranks at work, and return up to 50 ms after the last one arrives.
  void wait_for_all() const;
  /// Elementwise sum over ranks of `tensor` (same shape and dtype on every rank), on every rank.
  torch::Tensor allreduce_sum(const torch::Tensor& tensor) const;
  /// allreduce_sum / size() (floating tensors).
  torch::Tensor allreduce_mean(const torch::Tensor& tensor) const;
  /// Whether `value` is true on every rank, on every rank.
  bool all(bool value) const;
  /// The ranks' tensors concatenated along dim 0 in rank order, on rank 0; an undefined tensor
  /// on the others. Every rank's tensor must have the same dtype and the same sizes after dim 0
  /// (dim 0 may differ, and may be 0).
  torch::Tensor gather(const torch::Tensor& part) const;
  /// Rank 0's `tensor`, on every rank; the others pass a tensor of the same shape and dtype
  /// (its values are ignored).
  torch::Tensor broadcast(const torch::Tensor& tensor) const;

  /// Rows [begin, end) of `count` rows that this rank takes when rows are shared out in
  /// contiguous blocks, in rank order, the first count % size() ranks taking one more.
  std::pair<int64_t, int64_t> block(int64_t count) const;

 private:
  friend class MpiSession;
  struct Group;  // the MPI communicator; null for one process
  std::shared_ptr<const Group> group_;
  int rank_ = 0;
  int size_ = 1;
};

/// MPI for the life of the process: initialised by the constructor when psm was built with MPI
/// and started by an MPI launcher (mpirun, mpiexec, srun), finalised by the destructor.
/// Otherwise nothing happens and world() is the one-process communicator. One per process,
/// constructed first thing in main().
class MpiSession {
 public:
  MpiSession(int& argc, char**& argv);
  ~MpiSession();
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;

  const Communicator& world() const { return world_; }
  /// Ends every rank of the run with exit code `code` (MPI_Abort): one rank's failure must not
  /// leave the others waiting in a collective. Without MPI, std::exit(code).
  [[noreturn]] void abort(int code) const;

 private:
  bool initialised_ = false;
  Communicator world_;
};

/// Whether this build has MPI (PSM_WITH_MPI).
bool built_with_mpi();

}  // namespace psm
