#include "model/internal/fused_ops.h"

#include <ATen/Parallel.h>
#include <fmt/format.h>
#include <torch/autograd.h>

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>
#include <vector>

#include "psm/core/error.h"
#include "psm/model/activation.h"

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

// Pairwise halving: a short dependency chain, unlike a left-to-right scalar sum.
[[gnu::always_inline]] inline float horizontal_sum(Vec v) {
  using Half = float __attribute__((vector_size(kLanes / 2 * sizeof(float))));
  using Quarter = float __attribute__((vector_size(kLanes / 4 * sizeof(float))));
  const Half h = __builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7) +
                 __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15);
  const Quarter q =
      __builtin_shufflevector(h, h, 0, 1, 2, 3) + __builtin_shufflevector(h, h, 4, 5, 6, 7);
  return (q[0] + q[2]) + (q[1] + q[3]);
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

// Samples [begin, end). Kernels take their argument structs by value: a local copy cannot alias
// the float outputs, so the compiler keeps the pointers in registers.
[[gnu::target_clones("avx512f", "avx2", "default")]] void pair_silu_forward(PairInputs in,
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
[[gnu::target_clones("avx512f", "avx2", "default")]] void pair_silu_backward(
    PairInputs in, const float* grad_out, PairGrads grad, int64_t begin, int64_t end) {
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

float* mutable_or_null(const torch::Tensor& t) {
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
[[gnu::target_clones("avx512f", "avx2", "default")]] void bias_silu_forward(BiasInputs in, float* y,
                                                                            float* dot,
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

[[gnu::target_clones("avx512f", "avx2", "default")]] void bias_silu_backward(BiasInputs in,
                                                                             BiasGrads grad,
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

// ---- message_aggregate ----------------------------------------------------------------------

struct MessageInputs {
  const float* z;            // [B, N, N, H]
  const float* bias;         // [H]
  const float* att_w;        // [H] or null (no attention)
  float att_b;               // attention bias
  const float* pair_weight;  // [B, N, N], or [N, N] shared by the batch
  bool shared_pair_weight;
  int64_t n, h;
};

[[gnu::always_inline]] inline float pair_weight_of(const MessageInputs& in, int64_t pair) {
  return in.pair_weight[in.shared_pair_weight ? pair % (in.n * in.n) : pair];
}

int64_t padded(int64_t n) { return (n + kLanes - 1) / kLanes * kLanes; }

// values[0, n) = sigmoid(values[0, n)); `values` holds padded(n) floats.
[[gnu::always_inline]] inline void sigmoid_in_place(float* values, int64_t n) {
  for (int64_t j = n; j < padded(n); ++j) values[j] = 0;
  for (int64_t j = 0; j < n; j += kLanes) store(values + j, sigmoid(load(values + j)));
}

// Samples [begin, end): m = silu(z + bias), gate = w_ij sigmoid(m . att_w + att_b),
// aggregate_i = sum_j gate_ij m_ij. `scratch` holds padded(N) floats. The gates of a row i are
// evaluated together, one vector sigmoid for up to 16 neighbours.
[[gnu::target_clones("avx512f", "avx2", "default")]] void message_forward(
    MessageInputs in, float* message, float* aggregate, float* scratch, int64_t begin,
    int64_t end) {
  float* gates = scratch;
  for (int64_t batch = begin; batch < end; ++batch) {
    for (int64_t i = 0; i < in.n; ++i) {
      const int64_t row = (batch * in.n + i) * in.n;  // pair index of (i, 0)
      for (int64_t j = 0; j < in.n; ++j) {
        float* m = message + (row + j) * in.h;
        Vec logit = Vec{};
        for (int64_t k = 0; k < in.h; k += kLanes) {
          const Vec pre = load(in.z + (row + j) * in.h + k) + load(in.bias + k);
          const Vec act = pre * sigmoid(pre);
          store(m + k, act);
          if (in.att_w) logit += act * load(in.att_w + k);
        }
        gates[j] = horizontal_sum(logit) + in.att_b;
      }
      if (in.att_w) sigmoid_in_place(gates, in.n);
      float* agg = aggregate + (batch * in.n + i) * in.h;
      for (int64_t k = 0; k < in.h; k += kLanes) store(agg + k, Vec{});
      for (int64_t j = 0; j < in.n; ++j) {
        const float gate = pair_weight_of(in, row + j) * (in.att_w ? gates[j] : 1.0f);
        const float* m = message + (row + j) * in.h;
        for (int64_t k = 0; k < in.h; k += kLanes) {
          store(agg + k, load(agg + k) + gate * load(m + k));
        }
      }
    }
  }
}

struct MessageGrads {
  const float* message;    // [B, N, N, H] upstream gradient of m, or null
  const float* aggregate;  // [B, N, H] upstream gradient of the aggregate
  float* z;                // [B, N, N, H]
  float* bias;             // [B, H] per-sample partials, zero-initialised
  float* att_w;            // [B, H] per-sample partials, zero-initialised; or null
  float* att_b;            // [B] per-sample partials; or null
  float* pair_weight;      // [B, N, N] or null
};

// Samples [begin, end); `scratch` holds 2 N H + 2 padded(N) floats. Recomputes m from z.
[[gnu::target_clones("avx512f", "avx2", "default")]] void message_backward(
    MessageInputs in, MessageGrads grad, float* scratch, int64_t begin, int64_t end) {
  float* pre = scratch;               // [N, H] pre-activations of row i
  float* sig = pre + in.n * in.h;     // [N, H] their sigmoids
  float* attn = sig + in.n * in.h;    // [padded(N)] attention sigmoids
  float* dots = attn + padded(in.n);  // [padded(N)] m_ij . dL/daggregate_i
  for (int64_t batch = begin; batch < end; ++batch) {
    float* g_bias = grad.bias + batch * in.h;
    float* g_att_w = grad.att_w ? grad.att_w + batch * in.h : nullptr;
    float g_att_b = 0;
    for (int64_t i = 0; i < in.n; ++i) {
      const int64_t row = (batch * in.n + i) * in.n;
      const float* g_agg = grad.aggregate + (batch * in.n + i) * in.h;
      for (int64_t j = 0; j < in.n; ++j) {
        Vec logit = Vec{}, dot = Vec{};
        for (int64_t k = 0; k < in.h; k += kLanes) {
          const Vec p = load(in.z + (row + j) * in.h + k) + load(in.bias + k);
          const Vec s = sigmoid(p);
          store(pre + j * in.h + k, p);
          store(sig + j * in.h + k, s);
          if (in.att_w) logit += p * s * load(in.att_w + k);
          dot += p * s * load(g_agg + k);
        }
        attn[j] = horizontal_sum(logit) + in.att_b;
        dots[j] = horizontal_sum(dot);
      }
      if (in.att_w) sigmoid_in_place(attn, in.n);
      for (int64_t j = 0; j < in.n; ++j) {
        const int64_t pair = row + j;
        const float weight = pair_weight_of(in, pair);
        const float a = in.att_w ? attn[j] : 1.0f;
        const float g_logit = in.att_w ? dots[j] * weight * a * (1 - a) : 0.0f;
        if (grad.pair_weight) grad.pair_weight[pair] = dots[j] * a;
        g_att_b += g_logit;
        for (int64_t k = 0; k < in.h; k += kLanes) {
          const Vec p = load(pre + j * in.h + k), s = load(sig + j * in.h + k);
          Vec upstream = (weight * a) * load(g_agg + k);
          if (grad.message) upstream += load(grad.message + pair * in.h + k);
          if (in.att_w) {
            upstream += g_logit * load(in.att_w + k);
            store(g_att_w + k, load(g_att_w + k) + g_logit * (p * s));
          }
          const Vec g = upstream * silu_slope(p, s);
          store(grad.z + pair * in.h + k, g);
          store(g_bias + k, load(g_bias + k) + g);
        }
      }
    }
    if (grad.att_b) grad.att_b[batch] = g_att_b;
  }
}

// Inputs: z [B, N, N, H], bias [H], att_w [H] and att_b [1] (both empty without attention),
// pair_weight [B or 1, N, N]. Outputs: m [B, N, N, H], aggregate [B, N, H].
class MessageFunction : public torch::autograd::Function<MessageFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, torch::Tensor z, torch::Tensor bias,
                               torch::Tensor att_w, torch::Tensor att_b,
                               torch::Tensor pair_weight) {
    z = z.contiguous(), bias = bias.contiguous(), att_w = att_w.contiguous();
    pair_weight = pair_weight.contiguous();
    const int64_t batch = z.size(0), n = z.size(1), h = z.size(3);
    auto message = torch::empty_like(z);
    auto aggregate = torch::empty({batch, n, h}, z.options());
    const auto in = message_inputs(z, bias, att_w, att_b, pair_weight);
    float* m = message.data_ptr<float>();
    float* agg = aggregate.data_ptr<float>();
    at::parallel_for(0, batch, 1, [&](int64_t begin, int64_t end) {
      std::vector<float> scratch(padded(n));
      message_forward(in, m, agg, scratch.data(), begin, end);
    });
    ctx->save_for_backward({z, bias, att_w, att_b, pair_weight});
    ctx->set_materialize_grads(false);
    return {message, aggregate};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    check(!torch::GradMode::is_enabled(), "fused message: double backward is not supported");
    const auto saved = ctx->get_saved_variables();
    const auto &z = saved[0], &bias = saved[1], &att_w = saved[2], &att_b = saved[3],
               &pair_weight = saved[4];
    const int64_t batch = z.size(0), n = z.size(1), h = z.size(3);
    const auto g_message = grads[0].defined() ? grads[0].contiguous() : torch::Tensor();
    const auto g_aggregate =
        grads[1].defined() ? grads[1].contiguous() : torch::zeros({batch, n, h}, z.options());
    const bool attention = present(att_w);
    auto g_z = torch::empty_like(z);
    auto g_bias = torch::zeros({batch, h}, z.options());
    auto g_att_w = attention ? torch::zeros({batch, h}, z.options()) : torch::Tensor();
    auto g_att_b = attention ? torch::zeros({batch}, z.options()) : torch::Tensor();
    auto g_pair =
        ctx->needs_input_grad(4) ? torch::empty({batch, n, n}, z.options()) : torch::Tensor();
    const auto in = message_inputs(z, bias, att_w, att_b, pair_weight);
    const MessageGrads out{data_or_null(g_message),  g_aggregate.data_ptr<float>(),
                           g_z.data_ptr<float>(),    g_bias.data_ptr<float>(),
                           mutable_or_null(g_att_w), mutable_or_null(g_att_b),
                           mutable_or_null(g_pair)};
    at::parallel_for(0, batch, 1, [&](int64_t begin, int64_t end) {
      std::vector<float> scratch(2 * n * h + 2 * padded(n));
      message_backward(in, out, scratch.data(), begin, end);
    });
    if (g_pair.defined() && pair_weight.size(0) != batch) g_pair = g_pair.sum(0, true);
    return {g_z, g_bias.sum(0), attention ? g_att_w.sum(0) : torch::Tensor(),
            attention ? g_att_b.sum().view({1}) : torch::Tensor(), g_pair};
  }

 private:
  static MessageInputs message_inputs(const torch::Tensor& z, const torch::Tensor& bias,
                                      const torch::Tensor& att_w, const torch::Tensor& att_b,
                                      const torch::Tensor& pair_weight) {
    return {z.data_ptr<float>(),
            bias.data_ptr<float>(),
            data_or_null(att_w),
            present(att_b) ? att_b.item<float>() : 0.0f,
            pair_weight.data_ptr<float>(),
            pair_weight.size(0) != z.size(0),
            z.size(1),
            z.size(3)};
  }
};

// ---- pair_mlp_inference -----------------------------------------------------------------------

struct PairMlpArgs {
  const float* src;          // [B, N, H]
  const float* dst;          // [B, N, H]
  const float* d2;           // [B, N, N]
  const float* e;            // [B, N, N, H] or null
  const float* pair_weight;  // [B, N, N], or [N, N] shared by the batch
  bool shared_pair_weight;
  const float* distance;    // [H]
  const float* edge_t;      // [H, H], input-major (the transpose of the Linear weight)
  const float* edge_bias;   // [H]
  const float* coord_t;     // [H, H], input-major
  const float* coord_bias;  // [H]
  const float* coord_head;  // [H]
  const float* att_w;       // [H] or null
  float att_b;
  float* coord;      // [B, N, N] output
  float* aggregate;  // [B, N, H] output, or null
  int64_t n;
};

// acc[r] = bias + W x_r for kRows rows x_r of width H, with W given input-major: every weight
// vector loaded once serves all rows, and the kRows * H / 16 accumulators are independent
// chains, enough to keep both FMA units busy.
template <int H, int kRows>
[[gnu::always_inline]] inline void matvec_rows(const float* const (&x)[kRows], const float* w_t,
                                               const float* bias, Vec (&acc)[kRows][H / kLanes]) {
  constexpr int kVecs = H / kLanes;
  for (int r = 0; r < kRows; ++r)
    for (int v = 0; v < kVecs; ++v) acc[r][v] = load(bias + v * kLanes);
  for (int k = 0; k < H; ++k) {
    Vec w[kVecs];
    for (int v = 0; v < kVecs; ++v) w[v] = load(w_t + k * H + v * kLanes);
    for (int r = 0; r < kRows; ++r)
      for (int v = 0; v < kVecs; ++v) acc[r][v] += x[r][k] * w[v];
  }
}

// Pairs (i, js[0 .. kRows - 1]): first edge layer, second edge layer (messages into
// `messages`), attention logits into `logits`, coordinate MLP into in.coord.
template <int H, int kRows>
[[gnu::always_inline]] inline void pair_mlp_rows(const PairMlpArgs& in, int64_t batch, int64_t i,
                                                 const int64_t* js, float* hidden, float* messages,
                                                 float* logits) {
  constexpr int kVecs = H / kLanes;
  const int64_t row = (batch * in.n + i) * in.n;
  const float* src = in.src + (batch * in.n + i) * H;
  const float* x[kRows];
  const float* m[kRows];
  for (int r = 0; r < kRows; ++r) {
    const int64_t j = js[r];
    const float* dst = in.dst + (batch * in.n + j) * H;
    const float d2 = in.d2[row + j];
    for (int v = 0; v < kVecs; ++v) {
      Vec pre =
          load(src + v * kLanes) + load(dst + v * kLanes) + d2 * load(in.distance + v * kLanes);
      if (in.e) pre += load(in.e + (row + j) * H + v * kLanes);
      store(hidden + r * H + v * kLanes, pre * sigmoid(pre));
    }
    x[r] = hidden + r * H;
    m[r] = messages + j * H;
  }
  Vec acc[kRows][kVecs];
  matvec_rows<H, kRows>(x, in.edge_t, in.edge_bias, acc);
  for (int r = 0; r < kRows; ++r) {
    Vec logit = Vec{};
    for (int v = 0; v < kVecs; ++v) {
      const Vec act = acc[r][v] * sigmoid(acc[r][v]);
      store(messages + js[r] * H + v * kLanes, act);
      if (in.att_w) logit += act * load(in.att_w + v * kLanes);
    }
    logits[js[r]] = horizontal_sum(logit) + in.att_b;
  }
  matvec_rows<H, kRows>(m, in.coord_t, in.coord_bias, acc);
  for (int r = 0; r < kRows; ++r) {
    Vec dot = Vec{};
    for (int v = 0; v < kVecs; ++v) {
      dot += acc[r][v] * sigmoid(acc[r][v]) * load(in.coord_head + v * kLanes);
    }
    in.coord[row + js[r]] = horizontal_sum(dot);
  }
}

// Samples [begin, end); `scratch` holds 2 H + N H + padded(N) floats.
template <int H>
[[gnu::always_inline]] inline void pair_mlp_body(const PairMlpArgs& in, float* scratch,
                                                 int64_t begin, int64_t end) {
  constexpr int kVecs = H / kLanes;
  float* hidden = scratch;              // [2, H] first-layer activations of the current rows
  float* messages = hidden + 2 * H;     // [N, H] messages of row i
  float* logits = messages + in.n * H;  // [padded(N)] attention logits of row i
  for (int64_t batch = begin; batch < end; ++batch) {
    for (int64_t i = 0; i < in.n; ++i) {
      const int64_t row = (batch * in.n + i) * in.n;
      const float* weight = in.pair_weight + (in.shared_pair_weight ? i * in.n : row);
      // A self-pair of weight zero adds nothing (and moves nothing: x_i - x_i = 0), so it is
      // skipped; that is 1/N of the work for an EGNN, whose weights vanish on the diagonal.
      const bool skip_self = weight[i] == 0.0f;
      int64_t js[2];
      int count = 0;
      for (int64_t j = 0; j < in.n; ++j) {
        if (j == i && skip_self) continue;
        js[count++] = j;
        if (count == 2) {
          pair_mlp_rows<H, 2>(in, batch, i, js, hidden, messages, logits);
          count = 0;
        }
      }
      if (count == 1) pair_mlp_rows<H, 1>(in, batch, i, js, hidden, messages, logits);
      if (skip_self) in.coord[row + i] = 0.0f;
      if (!in.aggregate) continue;
      if (in.att_w) sigmoid_in_place(logits, in.n);
      Vec agg[kVecs] = {};
      for (int64_t k = 0; k < in.n; ++k) {
        if (k == i && skip_self) continue;
        const float gate = weight[k] * (in.att_w ? logits[k] : 1.0f);
        for (int v = 0; v < kVecs; ++v) agg[v] += gate * load(messages + k * H + v * kLanes);
      }
      for (int v = 0; v < kVecs; ++v) {
        store(in.aggregate + (batch * in.n + i) * H + v * kLanes, agg[v]);
      }
    }
  }
}

[[gnu::target_clones("avx512f", "avx2", "default")]] void pair_mlp_16(PairMlpArgs in,
                                                                      float* scratch, int64_t begin,
                                                                      int64_t end) {
  pair_mlp_body<16>(in, scratch, begin, end);
}
[[gnu::target_clones("avx512f", "avx2", "default")]] void pair_mlp_32(PairMlpArgs in,
                                                                      float* scratch, int64_t begin,
                                                                      int64_t end) {
  pair_mlp_body<32>(in, scratch, begin, end);
}
[[gnu::target_clones("avx512f", "avx2", "default")]] void pair_mlp_64(PairMlpArgs in,
                                                                      float* scratch, int64_t begin,
                                                                      int64_t end) {
  pair_mlp_body<64>(in, scratch, begin, end);
}
[[gnu::target_clones("avx512f", "avx2", "default")]] void pair_mlp_128(PairMlpArgs in,
                                                                       float* scratch,
                                                                       int64_t begin, int64_t end) {
  pair_mlp_body<128>(in, scratch, begin, end);
}

using PairMlpKernel = void (*)(PairMlpArgs, float*, int64_t, int64_t);

PairMlpKernel pair_mlp_kernel(int64_t width) {
  switch (width) {
    case 16:
      return pair_mlp_16;
    case 32:
      return pair_mlp_32;
    case 64:
      return pair_mlp_64;
    case 128:
      return pair_mlp_128;
    default:
      return nullptr;
  }
}

// True when autograd would record an operation on any of `tensors`.
bool records_autograd(const std::vector<torch::Tensor>& tensors) {
  if (!torch::GradMode::is_enabled()) return false;
  return std::any_of(tensors.begin(), tensors.end(),
                     [](const torch::Tensor& t) { return t.defined() && t.requires_grad(); });
}

}  // namespace

bool has_fused_kernel(const torch::Tensor& t, int64_t width) {
  return t.device().is_cpu() && t.scalar_type() == torch::kFloat32 && width % kLanes == 0;
}

torch::Tensor activation(const std::string& name, torch::Tensor x) {
  // In place when autograd does not need the input (inference): saves a pass and a buffer.
  const bool in_place = !x.requires_grad();
  switch (activation_from_string(name)) {
    case Activation::silu:
      return in_place ? torch::silu_(x) : torch::silu(x);
    case Activation::gelu:
      return torch::gelu(x);
    case Activation::relu:
      return in_place ? torch::relu_(x) : torch::relu(x);
    case Activation::tanh:
      return in_place ? torch::tanh_(x) : torch::tanh(x);
  }
  throw Error(fmt::format("activation '{}' has no function", name));
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

torch::Tensor bias_activation_head(const std::string& name, const torch::Tensor& z,
                                   const torch::Tensor& bias, const torch::Tensor& head) {
  if (name != "silu" || !has_fused_kernel(z, z.size(-1))) {
    return torch::matmul(activation(name, z + bias), head);
  }
  auto rows = z.reshape({-1, z.size(-1)});
  auto head_shape = z.sizes().vec();
  head_shape.pop_back();
  return BiasSiluFunction::apply(rows, bias, head, false)[1].view(head_shape);
}

std::pair<torch::Tensor, torch::Tensor> message_aggregate(const std::string& name,
                                                          const torch::Tensor& z,
                                                          const torch::Tensor& bias,
                                                          const torch::Tensor& attention_weight,
                                                          const torch::Tensor& attention_bias,
                                                          const torch::Tensor& pair_weight) {
  if (name == "silu" && has_fused_kernel(z, z.size(-1))) {
    auto out = MessageFunction::apply(z, bias, optional_input(attention_weight, z),
                                      optional_input(attention_bias, z), pair_weight);
    return {out[0], out[1]};
  }
  auto message = activation(name, z + bias);
  auto gate = pair_weight;
  if (attention_weight.defined()) {
    gate = gate * torch::sigmoid(torch::matmul(message, attention_weight) + attention_bias);
  }
  return {message, (message * gate.unsqueeze(-1)).sum(2)};
}

bool has_fused_pair_mlp(const std::string& name, const torch::Tensor& like, int64_t width) {
  return name == "silu" && has_fused_kernel(like, width) && pair_mlp_kernel(width) != nullptr;
}

std::pair<torch::Tensor, torch::Tensor> pair_mlp(const std::string& name, const torch::Tensor& src,
                                                 const torch::Tensor& dst, const torch::Tensor& d2,
                                                 const torch::Tensor& e,
                                                 const torch::Tensor& pair_weight,
                                                 const PairMlpWeights& w, bool want_aggregate) {
  const int64_t batch = src.size(0), n = src.size(1), h = src.size(2);
  const bool autograd = records_autograd({src, dst, d2, e, pair_weight, w.distance, w.edge_weight,
                                          w.edge_bias, w.coord_weight, w.coord_bias, w.coord_head,
                                          w.attention_weight, w.attention_bias});
  if (autograd || !has_fused_pair_mlp(name, src, h)) {
    auto hidden = pair_activation(name, src, dst, d2, w.distance, e);
    auto z = torch::matmul(hidden, w.edge_weight.t());
    torch::Tensor message, aggregate;
    if (want_aggregate) {
      std::tie(message, aggregate) = message_aggregate(name, z, w.edge_bias, w.attention_weight,
                                                       w.attention_bias, pair_weight);
    } else {
      message = bias_activation(name, z, w.edge_bias);
    }
    auto coord = bias_activation_head(name, torch::matmul(message, w.coord_weight.t()),
                                      w.coord_bias, w.coord_head);
    return {coord, aggregate};
  }
  torch::NoGradGuard no_grad;
  const auto contiguous = [](const torch::Tensor& t) {
    return t.defined() ? t.contiguous() : torch::Tensor();
  };
  const auto src_c = src.contiguous(), dst_c = dst.contiguous(), d2_c = d2.contiguous();
  const auto e_c = contiguous(e), weight_c = pair_weight.contiguous();
  const auto distance = w.distance.contiguous(), edge_bias = w.edge_bias.contiguous();
  const auto edge_t = w.edge_weight.t().contiguous(), coord_t = w.coord_weight.t().contiguous();
  const auto coord_bias = w.coord_bias.contiguous(), coord_head = w.coord_head.contiguous();
  const auto att_w = contiguous(w.attention_weight);
  auto coord = torch::empty({batch, n, n}, src.options());
  auto aggregate = want_aggregate ? torch::empty({batch, n, h}, src.options()) : torch::Tensor();
  const PairMlpArgs args{src_c.data_ptr<float>(),
                         dst_c.data_ptr<float>(),
                         d2_c.data_ptr<float>(),
                         data_or_null(e_c),
                         weight_c.data_ptr<float>(),
                         weight_c.size(0) != batch,
                         distance.data_ptr<float>(),
                         edge_t.data_ptr<float>(),
                         edge_bias.data_ptr<float>(),
                         coord_t.data_ptr<float>(),
                         coord_bias.data_ptr<float>(),
                         coord_head.data_ptr<float>(),
                         data_or_null(att_w),
                         att_w.defined() ? w.attention_bias.item<float>() : 0.0f,
                         coord.data_ptr<float>(),
                         want_aggregate ? aggregate.data_ptr<float>() : nullptr,
                         n};
  const auto kernel = pair_mlp_kernel(h);
  at::parallel_for(0, batch, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> scratch(2 * h + n * h + padded(n));
    kernel(args, scratch.data(), begin, end);
  });
  return {coord, aggregate};
}

}  // namespace psm::fused
