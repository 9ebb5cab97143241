#include "psm/model/fused_ops.h"

#include <ATen/Parallel.h>
#include <torch/autograd.h>

#include <bit>
#include <cstdint>
#include <cstring>

#include "psm/core/error.h"

// The kernels use GCC vector extensions, one source for SSE, AVX2 and AVX-512 (target_clones
// picks the widest the CPU has when the program loads). Passing 64-byte vectors between the
// always-inlined helpers only triggers a note about an ABI that no call here uses.
#pragma GCC diagnostic ignored "-Wpsabi"

namespace psm::fused {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

constexpr int64_t kLanes = 16;
using Vec = float __attribute__((vector_size(kLanes * sizeof(float))));
using IntVec = int32_t __attribute__((vector_size(kLanes * sizeof(int32_t))));

// Rows per block of the bias kernels: each block writes its own partial bias gradient, so the
// reduction order (and the result) does not depend on the thread count.
constexpr int64_t kRowsPerBlock = 256;

[[gnu::always_inline]] inline Vec load(const float* p) {
  Vec v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

[[gnu::always_inline]] inline void store(float* p, Vec v) { std::memcpy(p, &v, sizeof v); }

[[gnu::always_inline]] inline float horizontal_sum(Vec v) {
  float s = 0;
  for (int64_t k = 0; k < kLanes; ++k) s += v[k];
  return s;
}

// exp(x), relative error ~2 ulp: Cody-Waite reduction x = n ln2 + r, the Cephes expf polynomial
// on r, 2^n assembled in the exponent bits. Rounding by adding 1.5 * 2^23 keeps it branch-free.
[[gnu::always_inline]] inline Vec exp(Vec x) {
  const Vec lo = Vec{} - 87.3f, hi = Vec{} + 88.7f;
  x = x < lo ? lo : x;
  x = x > hi ? hi : x;
  const Vec n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  const Vec r = (x - n * 0.693359375f) + n * 2.12194440e-4f;
  Vec p = Vec{} + 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const IntVec bits = (__builtin_convertvector(n, IntVec) + 127) << 23;
  return p * std::bit_cast<Vec>(bits);
}

[[gnu::always_inline]] inline Vec sigmoid(Vec x) { return 1.0f / (1.0f + exp(-x)); }

// d silu / dx = s (1 + x (1 - s)) with s = sigmoid(x).
[[gnu::always_inline]] inline Vec silu_slope(Vec x, Vec s) { return s * (1.0f + x * (1.0f - s)); }

// ---- pair_silu ------------------------------------------------------------------------------

struct PairInputs {
  const float* a;   // [B, N, H]
  const float* b;   // [B, N, H]
  const float* d2;  // [B, N, N]
  const float* w;   // [H]
  const float* e;   // [B, N, N, H] or null
  int64_t n, h;
};

[[gnu::always_inline]] inline Vec pair_pre(const PairInputs& in, int64_t batch, int64_t i,
                                           int64_t j, int64_t k) {
  const int64_t pair = (batch * in.n + i) * in.n + j;
  Vec pre = load(in.a + (batch * in.n + i) * in.h + k) +
            load(in.b + (batch * in.n + j) * in.h + k) + in.d2[pair] * load(in.w + k);
  if (in.e) pre += load(in.e + pair * in.h + k);
  return pre;
}

// Samples [begin, end).
[[gnu::target_clones("avx512f", "avx2", "default")]] void pair_silu_forward(const PairInputs& in,
                                                                            float* out,
                                                                            int64_t begin,
                                                                            int64_t end) {
  for (int64_t batch = begin; batch < end; ++batch) {
    for (int64_t i = 0; i < in.n; ++i) {
      for (int64_t j = 0; j < in.n; ++j) {
        float* row = out + ((batch * in.n + i) * in.n + j) * in.h;
        for (int64_t k = 0; k < in.h; k += kLanes) {
          const Vec pre = pair_pre(in, batch, i, j, k);
          store(row + k, pre * sigmoid(pre));
        }
      }
    }
  }
}

struct PairGrads {
  float* a;          // [B, N, H], zero-initialised
  float* b;          // [B, N, H], zero-initialised
  float* d2;         // [B, N, N] or null
  float* w_partial;  // [B, H], zero-initialised: per-sample parts of the gradient of w
  float* e;          // [B, N, N, H] or null
};

// Samples [begin, end). Recomputes the pre-activation instead of reading a stored one.
[[gnu::target_clones("avx512f", "avx2", "default")]] void pair_silu_backward(const PairInputs& in,
                                                                             const float* grad_out,
                                                                             const PairGrads& grad,
                                                                             int64_t begin,
                                                                             int64_t end) {
  for (int64_t batch = begin; batch < end; ++batch) {
    float* gw = grad.w_partial + batch * in.h;
    for (int64_t i = 0; i < in.n; ++i) {
      float* ga = grad.a + (batch * in.n + i) * in.h;
      for (int64_t j = 0; j < in.n; ++j) {
        const int64_t pair = (batch * in.n + i) * in.n + j;
        float* gb = grad.b + (batch * in.n + j) * in.h;
        const float d2 = in.d2[pair];
        Vec gd2 = Vec{};
        for (int64_t k = 0; k < in.h; k += kLanes) {
          const Vec pre = pair_pre(in, batch, i, j, k);
          const Vec g = load(grad_out + pair * in.h + k) * silu_slope(pre, sigmoid(pre));
          store(ga + k, load(ga + k) + g);
          store(gb + k, load(gb + k) + g);
          store(gw + k, load(gw + k) + g * d2);
          gd2 += g * load(in.w + k);
          if (grad.e) store(grad.e + pair * in.h + k, g);
        }
        if (grad.d2) grad.d2[pair] = horizontal_sum(gd2);
      }
    }
  }
}

// Custom autograd functions cannot take undefined tensors (1.13 records a device for every
// input); an absent optional input travels as an empty tensor.
torch::Tensor optional_input(const torch::Tensor& t, const torch::Tensor& like) {
  return t.defined() ? t : torch::empty({0}, like.options());
}

bool present(const torch::Tensor& t) { return t.defined() && t.numel() > 0; }

const float* data_or_null(const torch::Tensor& t) {
  return present(t) ? t.data_ptr<float>() : nullptr;
}

PairInputs pair_inputs(const torch::Tensor& a, const torch::Tensor& b, const torch::Tensor& d2,
                       const torch::Tensor& w, const torch::Tensor& e) {
  return {a.data_ptr<float>(),
          b.data_ptr<float>(),
          d2.data_ptr<float>(),
          w.data_ptr<float>(),
          data_or_null(e),
          a.size(1),
          a.size(2)};
}

class PairSiluFunction : public torch::autograd::Function<PairSiluFunction> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, torch::Tensor a, torch::Tensor b,
                               torch::Tensor d2, torch::Tensor w, torch::Tensor e) {
    a = a.contiguous(), b = b.contiguous(), d2 = d2.contiguous(), w = w.contiguous();
    e = e.contiguous();
    const int64_t batch = a.size(0), n = a.size(1), h = a.size(2);
    auto out = torch::empty({batch, n, n, h}, a.options());
    const auto in = pair_inputs(a, b, d2, w, e);
    float* out_data = out.data_ptr<float>();
    at::parallel_for(0, batch, 1, [&](int64_t begin, int64_t end) {
      pair_silu_forward(in, out_data, begin, end);
    });
    ctx->save_for_backward({a, b, d2, w, e});
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    check(!torch::GradMode::is_enabled(), "fused pair_silu: double backward is not supported");
    const auto saved = ctx->get_saved_variables();
    const auto &a = saved[0], &b = saved[1], &d2 = saved[2], &w = saved[3], &e = saved[4];
    const auto grad_out = grads[0].contiguous();
    const int64_t batch = a.size(0), h = a.size(2);
    auto ga = torch::zeros_like(a), gb = torch::zeros_like(b);
    auto gw_partial = torch::zeros({batch, h}, a.options());
    torch::Tensor gd2, ge;
    if (ctx->needs_input_grad(2)) gd2 = torch::empty_like(d2);
    if (present(e) && ctx->needs_input_grad(4)) ge = torch::empty_like(e);
    const auto in = pair_inputs(a, b, d2, w, e);
    const PairGrads out{
        ga.data_ptr<float>(), gb.data_ptr<float>(), gd2.defined() ? gd2.data_ptr<float>() : nullptr,
        gw_partial.data_ptr<float>(), ge.defined() ? ge.data_ptr<float>() : nullptr};
    const float* g = grad_out.data_ptr<float>();
    at::parallel_for(0, batch, 1, [&](int64_t begin, int64_t end) {
      pair_silu_backward(in, g, out, begin, end);
    });
    return {ga, gb, gd2, gw_partial.sum(0), ge};
  }
};

// ---- bias_silu_head -------------------------------------------------------------------------

struct BiasInputs {
  const float* z;     // [R, H]
  const float* bias;  // [H]
  const float* head;  // [H] or null
  int64_t h;
};

// Rows [begin, end); y and dot may be null.
[[gnu::target_clones("avx512f", "avx2", "default")]] void bias_silu_forward(const BiasInputs& in,
                                                                            float* y, float* dot,
                                                                            int64_t begin,
                                                                            int64_t end) {
  for (int64_t r = begin; r < end; ++r) {
    Vec acc = Vec{};
    for (int64_t k = 0; k < in.h; k += kLanes) {
      const Vec pre = load(in.z + r * in.h + k) + load(in.bias + k);
      const Vec act = pre * sigmoid(pre);
      if (y) store(y + r * in.h + k, act);
      if (dot) acc += act * load(in.head + k);
    }
    if (dot) dot[r] = horizontal_sum(acc);
  }
}

struct BiasGrads {
  const float* y;    // [R, H] upstream gradient of y, or null
  const float* dot;  // [R] upstream gradient of the head, or null
  float* z;          // [R, H]
  float* bias;       // [H] partial of this block, zero-initialised
  float* head;       // [H] partial of this block, zero-initialised; or null
};

[[gnu::target_clones("avx512f", "avx2", "default")]] void bias_silu_backward(const BiasInputs& in,
                                                                             const BiasGrads& grad,
                                                                             int64_t begin,
                                                                             int64_t end) {
  for (int64_t r = begin; r < end; ++r) {
    const float gdot = grad.dot ? grad.dot[r] : 0.0f;
    for (int64_t k = 0; k < in.h; k += kLanes) {
      const Vec pre = load(in.z + r * in.h + k) + load(in.bias + k);
      const Vec s = sigmoid(pre);
      Vec upstream = grad.y ? load(grad.y + r * in.h + k) : Vec{};
      if (grad.dot) upstream += gdot * load(in.head + k);
      const Vec g = upstream * silu_slope(pre, s);
      store(grad.z + r * in.h + k, g);
      store(grad.bias + k, load(grad.bias + k) + g);
      if (grad.head) store(grad.head + k, load(grad.head + k) + gdot * (pre * s));
    }
  }
}

int64_t num_blocks(int64_t rows) { return (rows + kRowsPerBlock - 1) / kRowsPerBlock; }

template <class Body>
void for_each_block(int64_t rows, const Body& body) {
  at::parallel_for(0, num_blocks(rows), 1, [&](int64_t first, int64_t last) {
    for (int64_t block = first; block < last; ++block) {
      body(block, block * kRowsPerBlock, std::min(rows, (block + 1) * kRowsPerBlock));
    }
  });
}

// Inputs: z [R, H], bias [H], head [H] or undefined. Outputs: y [R, H] (empty when not kept)
// and dot [R] (empty without a head).
class BiasSiluFunction : public torch::autograd::Function<BiasSiluFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, torch::Tensor z, torch::Tensor bias,
                               torch::Tensor head, bool keep_y) {
    z = z.contiguous(), bias = bias.contiguous(), head = head.contiguous();
    const int64_t rows = z.size(0);
    auto y = keep_y ? torch::empty_like(z) : torch::empty({0}, z.options());
    auto dot = present(head) ? torch::empty({rows}, z.options()) : torch::empty({0}, z.options());
    const BiasInputs in{z.data_ptr<float>(), bias.data_ptr<float>(), data_or_null(head), z.size(1)};
    float* y_data = keep_y ? y.data_ptr<float>() : nullptr;
    float* dot_data = present(head) ? dot.data_ptr<float>() : nullptr;
    for_each_block(rows, [&](int64_t, int64_t begin, int64_t end) {
      bias_silu_forward(in, y_data, dot_data, begin, end);
    });
    ctx->save_for_backward({z, bias, head});
    ctx->set_materialize_grads(false);
    if (!keep_y) ctx->mark_non_differentiable({y});
    if (!present(head)) ctx->mark_non_differentiable({dot});
    return {y, dot};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    check(!torch::GradMode::is_enabled(), "fused bias_silu: double backward is not supported");
    const auto saved = ctx->get_saved_variables();
    const auto &z = saved[0], &bias = saved[1], &head = saved[2];
    const auto gy = grads[0].defined() ? grads[0].contiguous() : torch::Tensor();
    const auto gdot = grads[1].defined() ? grads[1].contiguous() : torch::Tensor();
    const int64_t rows = z.size(0), h = z.size(1), blocks = num_blocks(rows);
    auto gz = torch::empty_like(z);
    auto gbias = torch::zeros({blocks, h}, z.options());
    const bool want_head = present(head) && gdot.defined() && ctx->needs_input_grad(2);
    auto ghead = want_head ? torch::zeros({blocks, h}, z.options()) : torch::Tensor();
    const BiasInputs in{z.data_ptr<float>(), bias.data_ptr<float>(), data_or_null(head), h};
    for_each_block(rows, [&](int64_t block, int64_t begin, int64_t end) {
      const BiasGrads g{data_or_null(gy), data_or_null(gdot), gz.data_ptr<float>(),
                        gbias.data_ptr<float>() + block * h,
                        want_head ? ghead.data_ptr<float>() + block * h : nullptr};
      bias_silu_backward(in, g, begin, end);
    });
    return {gz, gbias.sum(0), want_head ? ghead.sum(0) : torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

bool has_fused_kernel(const torch::Tensor& t, int64_t width) {
  return t.device().is_cpu() && t.scalar_type() == torch::kFloat32 && width % kLanes == 0;
}

bool is_known_activation(const std::string& name) {
  return name == "silu" || name == "gelu" || name == "relu" || name == "tanh";
}

torch::Tensor activation(const std::string& name, torch::Tensor x) {
  // In place when autograd does not need the input (inference): saves a pass and a buffer.
  const bool in_place = !x.requires_grad();
  if (name == "silu") return in_place ? torch::silu_(x) : torch::silu(x);
  if (name == "gelu") return torch::gelu(x);
  if (name == "relu") return in_place ? torch::relu_(x) : torch::relu(x);
  return in_place ? torch::tanh_(x) : torch::tanh(x);
}

torch::Tensor pair_activation(const std::string& name, const torch::Tensor& a,
                              const torch::Tensor& b, const torch::Tensor& d2,
                              const torch::Tensor& w, const torch::Tensor& e) {
  if (name == "silu" && has_fused_kernel(a, a.size(-1))) {
    return PairSiluFunction::apply(a, b, d2, w, optional_input(e, a));
  }
  auto pre = a.unsqueeze(2) + b.unsqueeze(1) + d2.unsqueeze(-1) * w;
  if (e.defined()) pre = pre + e;
  return activation(name, pre);
}

torch::Tensor bias_activation(const std::string& name, const torch::Tensor& z,
                              const torch::Tensor& bias) {
  if (name != "silu" || !has_fused_kernel(z, z.size(-1))) return activation(name, z + bias);
  auto rows = z.reshape({-1, z.size(-1)});
  return BiasSiluFunction::apply(rows, bias, optional_input(torch::Tensor(), z), true)[0].view(
      z.sizes());
}

std::pair<torch::Tensor, torch::Tensor> bias_activation_head(const std::string& name,
                                                             const torch::Tensor& z,
                                                             const torch::Tensor& bias,
                                                             const torch::Tensor& head,
                                                             bool keep_y) {
  if (name != "silu" || !has_fused_kernel(z, z.size(-1))) {
    auto y = activation(name, z + bias);
    return {keep_y ? y : torch::Tensor(), torch::matmul(y, head)};
  }
  auto rows = z.reshape({-1, z.size(-1)});
  auto out = BiasSiluFunction::apply(rows, bias, head, keep_y);
  auto head_shape = z.sizes().vec();
  head_shape.pop_back();
  return {keep_y ? out[0].view(z.sizes()) : torch::Tensor(), out[1].view(head_shape)};
}

}  // namespace psm::fused
