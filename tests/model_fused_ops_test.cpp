// The fused float32 kernels against the composite ATen path evaluated in float64.

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "model/internal/fused_ops.h"
#include "psm/core/random.h"

namespace {

double relative_error(const torch::Tensor& a, const torch::Tensor& b) {
  auto a64 = a.to(torch::kFloat64), b64 = b.to(torch::kFloat64);
  return (a64 - b64).norm().item<double>() / b64.norm().item<double>();
}

// Leaf copies of `inputs` in `dtype` that require grad.
std::vector<torch::Tensor> leaves(const std::vector<torch::Tensor>& inputs, torch::Dtype dtype) {
  std::vector<torch::Tensor> out;
  for (const auto& t : inputs) out.push_back(t.to(dtype).detach().requires_grad_(true));
  return out;
}

// Runs `op` on float32 (fused) and float64 (composite) copies of `inputs`, backpropagates the
// same random upstream gradient, and compares outputs and every input gradient.
template <class Op>
void expect_fused_matches_composite(const std::vector<torch::Tensor>& inputs, const Op& op) {
  ASSERT_TRUE(psm::fused::has_fused_kernel(inputs[0].to(torch::kFloat32), inputs[0].size(-1)));
  auto f32 = leaves(inputs, torch::kFloat32), f64 = leaves(inputs, torch::kFloat64);
  auto out32 = op(f32), out64 = op(f64);
  ASSERT_EQ(out32.size(), out64.size());
  auto gen = psm::make_generator(31);
  for (size_t k = 0; k < out32.size(); ++k) {
    SCOPED_TRACE(k);
    ASSERT_EQ(out32[k].scalar_type(), torch::kFloat32);
    EXPECT_LT(relative_error(out32[k], out64[k]), 1e-6);
    auto upstream = torch::randn(out64[k].sizes(), gen, torch::kFloat64);
    (out32[k] * upstream.to(torch::kFloat32)).sum().backward({}, /*retain_graph=*/true);
    (out64[k] * upstream).sum().backward({}, /*retain_graph=*/true);
  }
  for (size_t i = 0; i < inputs.size(); ++i) {
    SCOPED_TRACE(i);
    ASSERT_TRUE(f32[i].grad().defined());
    // Looser than the values: scalar gradients (the attention bias) are sums of many terms of
    // both signs, so float32 rounding is amplified by cancellation; a wrong formula is O(1) off.
    EXPECT_LT(relative_error(f32[i].grad(), f64[i].grad()), 1e-4);
  }
}

TEST(ModelFusedOps, PairActivationMatchesComposite) {
  auto gen = psm::make_generator(32);
  const int64_t b = 3, n = 5, h = 32;
  // Wide pre-activations (|x| up to ~100) to cover both tails of the SiLU.
  auto a = 20 * torch::randn({b, n, h}, gen, torch::kFloat64);
  auto t = torch::randn({b, n, h}, gen, torch::kFloat64);
  auto d2 = torch::rand({b, n, n}, gen, torch::kFloat64) * 4;
  auto w = torch::randn({h}, gen, torch::kFloat64);
  auto e = torch::randn({b, n, n, h}, gen, torch::kFloat64);
  expect_fused_matches_composite({a, t, d2, w}, [](const std::vector<torch::Tensor>& v) {
    return std::vector<torch::Tensor>{
        psm::fused::pair_activation("silu", v[0], v[1], v[2], v[3], torch::Tensor())};
  });
  expect_fused_matches_composite({a, t, d2, w, e}, [](const std::vector<torch::Tensor>& v) {
    return std::vector<torch::Tensor>{
        psm::fused::pair_activation("silu", v[0], v[1], v[2], v[3], v[4])};
  });
}

TEST(ModelFusedOps, BiasActivationAndHeadMatchComposite) {
  auto gen = psm::make_generator(33);
  // 600 rows: more than two blocks of the bias-gradient reduction, the last one partial.
  auto z = 10 * torch::randn({4, 150, 48}, gen, torch::kFloat64);
  auto bias = torch::randn({48}, gen, torch::kFloat64);
  auto head = torch::randn({48}, gen, torch::kFloat64);
  expect_fused_matches_composite({z, bias}, [](const std::vector<torch::Tensor>& v) {
    return std::vector<torch::Tensor>{psm::fused::bias_activation("silu", v[0], v[1])};
  });
  expect_fused_matches_composite({z, bias, head}, [](const std::vector<torch::Tensor>& v) {
    return std::vector<torch::Tensor>{psm::fused::bias_activation_head("silu", v[0], v[1], v[2])};
  });
}

TEST(ModelFusedOps, MessageAggregateMatchesComposite) {
  auto gen = psm::make_generator(34);
  const int64_t b = 3, n = 5, h = 32;
  auto z = 5 * torch::randn({b, n, n, h}, gen, torch::kFloat64);
  auto bias = torch::randn({h}, gen, torch::kFloat64);
  auto att_w = torch::randn({h}, gen, torch::kFloat64) / 4;
  auto att_b = torch::randn({1}, gen, torch::kFloat64);
  auto weight = torch::rand({b, n, n}, gen, torch::kFloat64);
  auto shared_weight = torch::rand({1, n, n}, gen, torch::kFloat64);
  auto op = [](const std::vector<torch::Tensor>& v) {
    const bool attention = v.size() == 5;
    auto [m, agg] =
        psm::fused::message_aggregate("silu", v[0], v[1], attention ? v[3] : torch::Tensor(),
                                      attention ? v[4] : torch::Tensor(), v[2]);
    return std::vector<torch::Tensor>{m, agg};
  };
  expect_fused_matches_composite({z, bias, weight, att_w, att_b}, op);
  expect_fused_matches_composite({z, bias, shared_weight, att_w, att_b}, op);
  expect_fused_matches_composite({z, bias, weight}, op);
}

TEST(ModelFusedOps, InferencePairMlpMatchesComposite) {
  // The fused inference kernel (float32, no autograd) against the composition of operations
  // evaluated in float64, for the widths with kernels, an odd atom count (the two-row blocks
  // leave one row over), with and without radial-basis term, attention and aggregation.
  auto gen = psm::make_generator(35);
  for (int64_t h : {16, 32, 64, 128}) {
    SCOPED_TRACE(h);
    const int64_t b = 2, n = 7;
    auto r = [&](std::vector<int64_t> shape, double scale = 1.0) {
      return scale * torch::randn(shape, gen, torch::kFloat64);
    };
    auto src = r({b, n, h}), dst = r({b, n, h}), e = r({b, n, n, h}, 0.5);
    auto d2 = torch::rand({b, n, n}, gen, torch::kFloat64) * 3;
    // Weights zero on the diagonal (an EGNN's: the kernel skips those self-pairs) and not.
    auto some_self_weight = torch::rand({b, n, n}, gen, torch::kFloat64);
    auto off_diagonal = 1.0 - torch::eye(n, torch::kFloat64);
    auto no_self_weight = some_self_weight * off_diagonal;
    const double scale = 1.0 / std::sqrt(static_cast<double>(h));
    psm::fused::PairMlpWeights w64{r({h}), r({h, h}, scale), r({h}), r({h, h}, scale),
                                   r({h}), r({h}),           r({h}), r({1})};
    auto to32 = [](const psm::fused::PairMlpWeights& w) {
      auto f = [](const torch::Tensor& t) {
        return t.defined() ? t.to(torch::kFloat32) : torch::Tensor();
      };
      return psm::fused::PairMlpWeights{f(w.distance),         f(w.edge_weight),   f(w.edge_bias),
                                        f(w.coord_weight),     f(w.coord_bias),    f(w.coord_head),
                                        f(w.attention_weight), f(w.attention_bias)};
    };
    for (const auto& pair_weight : {some_self_weight, no_self_weight}) {
      const bool skips_self = pair_weight.diagonal(0, 1, 2).eq(0).all().item<bool>();
      for (bool attention : {true, false}) {
        for (bool with_e : {true, false}) {
          for (bool aggregate : {true, false}) {
            auto w = w64;
            if (!attention) w.attention_weight = w.attention_bias = torch::Tensor();
            auto e64 = with_e ? e : torch::Tensor();
            auto [coord64, agg64] =
                psm::fused::pair_mlp("silu", src, dst, d2, e64, pair_weight, w, aggregate);
            ASSERT_TRUE(psm::fused::has_fused_pair_mlp("silu", src.to(torch::kFloat32), h));
            auto f = [](const torch::Tensor& t) {
              return t.defined() ? t.to(torch::kFloat32) : torch::Tensor();
            };
            auto [coord32, agg32] = psm::fused::pair_mlp("silu", f(src), f(dst), f(d2), f(e64),
                                                         f(pair_weight), to32(w), aggregate);
            if (skips_self) {
              EXPECT_TRUE(coord32.diagonal(0, 1, 2).eq(0).all().item<bool>());
              EXPECT_LT(relative_error(coord32 * off_diagonal, coord64 * off_diagonal), 1e-5);
            } else {
              EXPECT_LT(relative_error(coord32, coord64), 1e-5);
            }
            EXPECT_EQ(agg32.defined(), aggregate);
            if (aggregate) {
              EXPECT_LT(relative_error(agg32, agg64), 1e-5);
            }
          }
        }
      }
    }
  }
}

TEST(ModelFusedOps, FusedKernelsOnlyForFloat32WidthsOfSixteen) {
  EXPECT_TRUE(psm::fused::has_fused_kernel(torch::zeros({2, 64}), 64));
  EXPECT_FALSE(psm::fused::has_fused_kernel(torch::zeros({2, 24}), 24));
  EXPECT_FALSE(psm::fused::has_fused_kernel(torch::zeros({2, 64}, torch::kFloat64), 64));
}

}  // namespace
