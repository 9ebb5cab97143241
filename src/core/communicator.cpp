#include "psm/core/communicator.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <thread>
#include <vector>

#include "psm/core/error.h"

#if PSM_WITH_MPI
#include <mpi.h>
#endif

namespace psm {

namespace {

/// Whether an MPI launcher started this process: mpirun / mpiexec of Open MPI (OMPI_*, PMIx),
/// srun (PMIx or PMI-2) and MPICH's hydra (PMI_*). Without one, psm stays a plain process and
/// never initialises MPI (an Open MPI singleton would start a daemon for nothing).
[[maybe_unused]] bool started_by_launcher() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"}) {
    if (std::getenv(name) != nullptr) return true;
  }
  return false;
}

void check_collective_input(const torch::Tensor& tensor, const char* what) {
  check(tensor.defined() && tensor.device().is_cpu(),
        fmt::format("communicator: {} needs a defined CPU tensor", what));
  check(tensor.scalar_type() == torch::kFloat64 || tensor.scalar_type() == torch::kFloat32 ||
            tensor.scalar_type() == torch::kInt64,
        fmt::format("communicator: {} supports float64, float32 and int64, got {}", what,
                    c10::toString(tensor.scalar_type())));
}

}  // namespace

#if PSM_WITH_MPI

struct Communicator::Group {
  MPI_Comm comm = MPI_COMM_WORLD;
};

namespace {

MPI_Datatype mpi_type(torch::ScalarType type) {
  switch (type) {
    case torch::kFloat64:
      return MPI_DOUBLE;
    case torch::kFloat32:
      return MPI_FLOAT;
    default:
      return MPI_INT64_T;
  }
}

/// MPI counts are int: a message of more elements must be split by the caller.
int mpi_count(int64_t count, const char* what) {
  check(count <= INT_MAX,
        fmt::format("communicator: {} of {} elements exceeds MPI's int count", what, count));
  return static_cast<int>(count);
}

}  // namespace

#else

struct Communicator::Group {};

#endif

Communicator::Communicator() = default;

void Communicator::barrier() const {
#if PSM_WITH_MPI
  if (group_) MPI_Barrier(group_->comm);
#endif
}

void Communicator::wait_for_all() const {
#if PSM_WITH_MPI
  if (!group_) return;
  // Open MPI's MPI_Barrier spins: a rank waiting hours for another (psm run's reference stage,
  // or a model trained elsewhere) would take a core from it. Poll, sleeping up to 50 ms.
  MPI_Request request;
  MPI_Ibarrier(group_->comm, &request);
  auto pause = std::chrono::microseconds(50);
  for (int done = 0; MPI_Test(&request, &done, MPI_STATUS_IGNORE), !done;) {
    std::this_thread::sleep_for(pause);
    pause = std::min<std::chrono::microseconds>(2 * pause, std::chrono::milliseconds(50));
  }
#endif
}

torch::Tensor Communicator::allreduce_sum(const torch::Tensor& tensor) const {
  check_collective_input(tensor, "allreduce");
  torch::Tensor result = tensor.contiguous().clone();
#if PSM_WITH_MPI
  if (group_) {
    MPI_Allreduce(MPI_IN_PLACE, result.data_ptr(), mpi_count(result.numel(), "allreduce"),
                  mpi_type(result.scalar_type()), MPI_SUM, group_->comm);
  }
#endif
  return result;
}

torch::Tensor Communicator::allreduce_mean(const torch::Tensor& tensor) const {
  check(tensor.defined() && tensor.is_floating_point(),
        "communicator: allreduce_mean needs a floating tensor");
  torch::Tensor sum = allreduce_sum(tensor);
  return size_ == 1 ? sum : sum.div_(static_cast<double>(size_));
}

bool Communicator::all(bool value) const {
#if PSM_WITH_MPI
  if (group_) {
    int local = value ? 1 : 0, every = 0;
    MPI_Allreduce(&local, &every, 1, MPI_INT, MPI_LAND, group_->comm);
    return every != 0;
  }
#endif
  return value;
}

torch::Tensor Communicator::gather(const torch::Tensor& part) const {
  check_collective_input(part, "gather");
  check(part.dim() >= 1, "communicator: gather needs a tensor of at least one dimension");
  if (!group_) return part.contiguous().clone();
#if PSM_WITH_MPI
  const torch::Tensor local = part.contiguous();
  // Bytes per rank first: dim 0 may differ between ranks.
  const int bytes = mpi_count(static_cast<int64_t>(local.nbytes()), "gather");
  std::vector<int> counts(is_root() ? size_ : 0), offsets(is_root() ? size_ : 0);
  MPI_Gather(&bytes, 1, MPI_INT, counts.data(), 1, MPI_INT, 0, group_->comm);
  torch::Tensor result;
  if (is_root()) {
    int64_t total = 0;
    for (int r = 0; r < size_; ++r) {
      offsets[r] = mpi_count(total, "gather");
      total += counts[r];
    }
    std::vector<int64_t> sizes = local.sizes().vec();
    int64_t row_bytes = local.element_size();
    for (size_t d = 1; d < sizes.size(); ++d) row_bytes *= sizes[d];
    check(row_bytes > 0, "communicator: gather of empty rows");
    sizes[0] = total / row_bytes;
    result = torch::empty(sizes, local.options());
  }
  MPI_Gatherv(local.data_ptr(), bytes, MPI_BYTE, is_root() ? result.data_ptr() : nullptr,
              counts.data(), offsets.data(), MPI_BYTE, 0, group_->comm);
  return result;
#else
  return part;
#endif
}

torch::Tensor Communicator::broadcast(const torch::Tensor& tensor) const {
  check_collective_input(tensor, "broadcast");
  torch::Tensor result = tensor.contiguous().clone();
#if PSM_WITH_MPI
  if (group_) {
    MPI_Bcast(result.data_ptr(), mpi_count(static_cast<int64_t>(result.nbytes()), "broadcast"),
              MPI_BYTE, 0, group_->comm);
  }
#endif
  return result;
}

std::pair<int64_t, int64_t> Communicator::block(int64_t count) const {
  const int64_t base = count / size_, extra = count % size_;
  const int64_t begin = rank_ * base + std::min<int64_t>(rank_, extra);
  return {begin, begin + base + (rank_ < extra ? 1 : 0)};
}

MpiSession::MpiSession([[maybe_unused]] int& argc, [[maybe_unused]] char**& argv) {
#if PSM_WITH_MPI
  if (!started_by_launcher()) return;
  // Only the main thread calls MPI (LibTorch's OpenMP threads never do).
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
  initialised_ = true;
  // Errors end the run with a message instead of returning codes nobody checks.
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_ARE_FATAL);
  world_.group_ = std::make_shared<const Communicator::Group>();
  MPI_Comm_rank(MPI_COMM_WORLD, &world_.rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &world_.size_);
#endif
}

MpiSession::~MpiSession() {
#if PSM_WITH_MPI
  if (initialised_) MPI_Finalize();
#endif
}

void MpiSession::abort(int code) const {
#if PSM_WITH_MPI
  if (initialised_) MPI_Abort(MPI_COMM_WORLD, code);
#endif
  std::exit(code);
}

bool built_with_mpi() {
#if PSM_WITH_MPI
  return true;
#else
  return false;
#endif
}

}  // namespace psm
