#include "model/internal/chunked.h"

#include <ATen/Parallel.h>
#include <ATen/ThreadLocalState.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <torch/autograd.h>

#if __has_include(<omp.h>)
#include <omp.h>
#define PSM_HAS_OPENMP 1
#endif
#include <vector>

#include "psm/core/error.h"

namespace psm::chunked {

namespace {

// Chunk c of a batch tensor.
torch::Tensor chunk_of(const torch::Tensor& t, int64_t c, int64_t chunk) {
  return t.narrow(0, c * chunk, std::min(chunk, t.size(0) - c * chunk));
}

int64_t num_chunks(int64_t batch, int64_t chunk) { return (batch + chunk - 1) / chunk; }

// The network on each chunk, without autograd.
torch::Tensor run_chunks(ScoreNetwork& net, int64_t chunk, const torch::Tensor& x,
                         const torch::Tensor& c_noise, const torch::Tensor& length_scale) {
  std::vector<torch::Tensor> outputs(num_chunks(x.size(0), chunk));
  for_each_chunk(static_cast<int64_t>(outputs.size()), [&](int64_t c) {
    outputs[c] = net.forward_chunk(chunk_of(x, c, chunk), chunk_of(c_noise, c, chunk),
                                   chunk_of(length_scale, c, chunk));
  });
  return torch::cat(outputs);
}

// Training path: the forward pass builds one autograd graph per chunk (in parallel), and the
// backward pass differentiates the chunks in parallel and sums their parameter gradients in
// chunk order, so the result does not depend on the thread count.
class ChunkedFunction : public torch::autograd::Function<ChunkedFunction> {
 public:
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx,
                                                ScoreNetwork* net, int64_t chunk, torch::Tensor x,
                                                torch::Tensor c_noise, torch::Tensor length_scale,
                                                at::TensorList parameters) {
    const int64_t count = num_chunks(x.size(0), chunk);
    std::vector<torch::Tensor> inputs(count), outputs(count);
    for_each_chunk(count, [&](int64_t c) {
      torch::AutoGradMode record(true);
      inputs[c] = chunk_of(x, c, chunk).detach().requires_grad_(x.requires_grad());
      outputs[c] = net->forward_chunk(inputs[c], chunk_of(c_noise, c, chunk),
                                      chunk_of(length_scale, c, chunk));
    });
    ctx->saved_data["chunk"] = chunk;
    ctx->saved_data["inputs"] = inputs;
    ctx->saved_data["outputs"] = outputs;
    ctx->saved_data["parameters"] = parameters.vec();
    ctx->saved_data["x_requires_grad"] = x.requires_grad();
    std::vector<torch::Tensor> detached;
    for (const auto& o : outputs) detached.push_back(o.detach());
    return {torch::cat(detached)};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    check(!torch::GradMode::is_enabled(), "model: double backward is not supported");
    const int64_t chunk = ctx->saved_data["chunk"].toInt();
    const auto inputs = ctx->saved_data["inputs"].toTensorVector();
    const auto outputs = ctx->saved_data["outputs"].toTensorVector();
    const auto parameters = ctx->saved_data["parameters"].toTensorVector();
    const bool x_grad = ctx->saved_data["x_requires_grad"].toBool();
    const auto count = static_cast<int64_t>(outputs.size());
    // Frozen parameters (a loaded model whose score is differentiated in x only) get no
    // gradient: autograd refuses to differentiate with respect to them.
    std::vector<size_t> trained;
    for (size_t p = 0; p < parameters.size(); ++p) {
      if (parameters[p].requires_grad()) trained.push_back(p);
    }
    std::vector<std::vector<torch::Tensor>> chunk_grads(count);
    for_each_chunk(count, [&](int64_t c) {
      std::vector<torch::Tensor> wrt;
      for (const size_t p : trained) wrt.push_back(parameters[p]);
      if (x_grad) wrt.push_back(inputs[c]);
      chunk_grads[c] = torch::autograd::grad({outputs[c]}, wrt, {chunk_of(grads[0], c, chunk)},
                                             /*retain_graph=*/true, /*create_graph=*/false,
                                             /*allow_unused=*/true);
    });
    // Returned in the order of forward's arguments: net, chunk, x, c_noise, length_scale,
    // then one per parameter.
    torch::autograd::variable_list result(5 + parameters.size());
    for (size_t k = 0; k < trained.size(); ++k) {
      torch::Tensor& sum = result[5 + trained[k]];
      for (int64_t c = 0; c < count; ++c) {
        const auto& g = chunk_grads[c][k];
        if (!g.defined()) continue;
        sum = sum.defined() ? sum + g : g;
      }
    }
    if (x_grad) {
      std::vector<torch::Tensor> gx;
      for (int64_t c = 0; c < count; ++c) gx.push_back(chunk_grads[c].back());
      result[2] = torch::cat(gx);
    }
    return result;
  }
};

}  // namespace

void for_each_chunk(int64_t count, const std::function<void(int64_t)>& body) {
  const at::ThreadLocalState state;
  at::parallel_for(0, count, 1, [&](int64_t begin, int64_t end) {
    at::ThreadLocalStateGuard guard(state);
#ifdef PSM_HAS_OPENMP
    // OpenBLAS sizes its thread team from omp_get_max_threads(), which inside a parallel region
    // still reports the outer count; its nested teams then spin. One thread per chunk here (the
    // setting belongs to this region's implicit task and ends with it).
    omp_set_num_threads(1);
#endif
    for (int64_t c = begin; c < end; ++c) body(c);
  });
}

torch::Tensor forward(ScoreNetwork& network, int64_t chunk, const torch::Tensor& x,
                      const torch::Tensor& c_noise, const torch::Tensor& length_scale,
                      const std::vector<torch::Tensor>& parameters) {
  const int64_t batch = x.size(0);
  if (chunk == 0 || batch <= chunk) return network.forward_chunk(x, c_noise, length_scale);
  const bool record =
      torch::GradMode::is_enabled() && (x.requires_grad() || parameters.front().requires_grad());
  if (!record) return run_chunks(network, chunk, x, c_noise, length_scale);
  return ChunkedFunction::apply(&network, chunk, x, c_noise, length_scale,
                                at::TensorList(parameters))[0];
}

torch::Tensor run_network(ScoreNetwork& network, const NetworkShape& shape, const torch::Tensor& x,
                          const torch::Tensor& c_noise, const torch::Tensor& length_scale,
                          const std::vector<torch::Tensor>& parameters) {
  check(x.dim() == 3 && x.size(1) == shape.atoms && x.size(2) == shape.dim,
        fmt::format("model: positions must be [B, {}, {}], got {}", shape.atoms, shape.dim,
                    fmt::join(x.sizes(), "x")));
  const int64_t batch = x.size(0);
  check(c_noise.dim() == 1 && c_noise.size(0) == batch && length_scale.dim() == 1 &&
            length_scale.size(0) == batch,
        "model: c_noise and length_scale must be [B] with the batch size of the positions");
  // Chunks spread a batch over CPU threads; a GPU gets the whole batch in each kernel instead.
  const int64_t chunk = x.device().is_cpu() ? shape.chunk_size : 0;
  return forward(network, chunk, x.to(shape.dtype), c_noise.to(shape.dtype),
                 length_scale.to(shape.dtype), parameters);
}

}  // namespace psm::chunked
