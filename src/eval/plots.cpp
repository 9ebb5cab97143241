#include "psm/eval/plots.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <spawn.h>
#include <sys/wait.h>
#include <torch/torch.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "psm/core/atomic_file.h"
#include "psm/core/error.h"

extern char** environ;

namespace psm {

namespace fs = std::filesystem;

namespace {

/// A gnuplot single-quoted string literal (a quote inside is written twice).
std::string gnuplot_string(const std::string& text) {
  std::string out = "'";
  for (char c : text) out += (c == '\'') ? std::string("''") : std::string(1, c);
  return out + "'";
}

void write_text(const fs::path& path, const std::string& text) {
  write_atomically(path, [&](const fs::path& tmp) {
    std::ofstream out(tmp);
    out << text;
    check(static_cast<bool>(out), fmt::format("{}: cannot write", tmp.string()));
  });
}

std::string last_nonempty_line(const fs::path& path) {
  std::ifstream in(path);
  std::string line, last;
  while (std::getline(in, line)) {
    if (line.find_first_not_of(" \t\r") != std::string::npos) last = line;
  }
  return last;
}

/// Runs `gnuplot -e "outfile='OUT'; cd 'DIR'" SCRIPT` without a shell; throws with gnuplot's
/// last message on failure.
void run_gnuplot(const fs::path& dir, const std::string& script, const std::string& outfile) {
  const std::optional<fs::path> gnuplot = find_gnuplot();
  check(gnuplot.has_value(),
        "gnuplot not found on PATH; plots need it (Debian/Ubuntu: apt-get install gnuplot-nox)");
  const fs::path log = dir / fmt::format(".{}.log.{}", script, ::getpid());
  const std::string commands =
      fmt::format("outfile={}; cd {}", gnuplot_string(outfile), gnuplot_string(dir.string()));
  const std::string program = gnuplot->string();
  std::vector<char*> argv = {const_cast<char*>(program.c_str()), const_cast<char*>("-e"),
                             const_cast<char*>(commands.c_str()), const_cast<char*>(script.c_str()),
                             nullptr};
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  pid_t pid = 0;
  const int spawn_error =
      posix_spawn(&pid, program.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  int status = 0;
  if (spawn_error == 0) waitpid(pid, &status, 0);
  const std::string message = last_nonempty_line(log);
  std::error_code ignored;
  fs::remove(log, ignored);
  check(spawn_error == 0, fmt::format("cannot start {}: {}", program, std::strerror(spawn_error)));
  check(WIFEXITED(status) && WEXITSTATUS(status) == 0,
        fmt::format("gnuplot failed on {}: {}", (dir / script).string(), message));
}

/// Writes NAME.dat and NAME.gp beside `png`, then draws the PNG atomically.
void render(const fs::path& png, const std::string& data, const std::string& script_body) {
  check(png.extension() == ".png", fmt::format("{}: plot file must end in .png", png.string()));
  const fs::path dir = fs::absolute(png).parent_path();
  fs::create_directories(dir);
  const std::string stem = png.stem().string();
  const fs::path script = dir / (stem + ".gp");
  write_text(dir / (stem + ".dat"), data);
  write_text(script, fmt::format("# Written by psm. Redraw: cd into this directory, gnuplot {}\n"
                                 "if (!exists(\"outfile\")) outfile = {}\n"
                                 "set terminal pngcairo size 1000,700 noenhanced font 'sans,13'\n"
                                 "set output outfile\n{}",
                                 script.filename().string(),
                                 gnuplot_string(png.filename().string()), script_body));
  write_atomically(fs::absolute(png), [&](const fs::path& tmp) {
    run_gnuplot(dir, script.filename().string(), tmp.filename().string());
    check(fs::exists(tmp) && fs::file_size(tmp) > 0,
          fmt::format("gnuplot wrote no image for {}", png.string()));
  });
}

std::string axes(const std::string& title, const std::string& x_label, const std::string& y_label) {
  return fmt::format("set title {}\nset xlabel {}\nset ylabel {}\nset grid\nset key top right\n",
                     gnuplot_string(title), gnuplot_string(x_label), gnuplot_string(y_label));
}

/// The series' weights as float64 summing to 1, one per value (equal weights when it has none).
torch::Tensor series_weights(const HistogramSeries& series, const fs::path& png) {
  const int64_t n = series.values.numel();
  if (!series.weights.defined())
    return torch::full({n}, 1.0 / static_cast<double>(n), torch::kFloat64);
  check(series.weights.numel() == n,
        fmt::format("{}: series '{}' has {} weights for {} values", png.string(), series.label,
                    series.weights.numel(), n));
  const torch::Tensor w = series.weights.detach().flatten().to(torch::kCPU, torch::kFloat64);
  const double total = w.sum().item<double>();
  check(torch::isfinite(w).all().item<bool>() && (w >= 0).all().item<bool>() && total > 0,
        fmt::format("{}: series '{}' needs finite, non-negative weights that are not all zero",
                    png.string(), series.label));
  return w / total;
}

}  // namespace

std::optional<fs::path> find_gnuplot() {
  const char* path = std::getenv("PATH");
  if (path == nullptr) return std::nullopt;
  std::stringstream dirs(path);
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    if (dir.empty()) continue;
    const fs::path candidate = fs::path(dir) / "gnuplot";
    if (::access(candidate.c_str(), X_OK) == 0 && fs::is_regular_file(candidate)) return candidate;
  }
  return std::nullopt;
}

void plot_histograms(const fs::path& png, const std::vector<HistogramSeries>& series,
                     const HistogramOptions& options) {
  check(!series.empty(), fmt::format("{}: nothing to plot", png.string()));
  check(options.bins >= 1, fmt::format("{}: bins must be >= 1", png.string()));
  std::vector<torch::Tensor> samples, weights;
  for (const auto& s : series) {
    check(s.values.defined() && s.values.numel() > 0,
          fmt::format("{}: series '{}' is empty", png.string(), s.label));
    samples.push_back(s.values.detach().flatten().to(torch::kCPU, torch::kFloat64));
    weights.push_back(series_weights(s, png));
  }
  double lo = 0, hi = 0;
  if (options.range) {
    std::tie(lo, hi) = *options.range;
  } else {
    const torch::Tensor first = samples[0].masked_select(torch::isfinite(samples[0]));
    check(first.numel() > 0,
          fmt::format("{}: series '{}' has no finite value", png.string(), series[0].label));
    lo = first.min().item<double>();
    hi = first.max().item<double>();
    const double margin = hi > lo ? 0.05 * (hi - lo) : 0.5;
    lo -= margin;
    hi += margin;
  }
  check(hi > lo, fmt::format("{}: empty histogram range [{}, {}]", png.string(), lo, hi));
  const double width = (hi - lo) / static_cast<double>(options.bins);
  const torch::Tensor centres = lo + width * (torch::arange(options.bins, torch::kFloat64) + 0.5);

  std::string data, plot = "plot ";
  for (size_t k = 0; k < series.size(); ++k) {
    const torch::Tensor& x = samples[k];
    const torch::Tensor in_range = torch::isfinite(x) & (x >= lo) & (x <= hi);
    const torch::Tensor bin = ((x.masked_select(in_range) - lo) / width)
                                  .floor()
                                  .to(torch::kInt64)
                                  .clamp(0, options.bins - 1);
    const torch::Tensor inside_weights = weights[k].masked_select(in_range);
    const torch::Tensor density =
        torch::bincount(bin, inside_weights, options.bins).to(torch::kFloat64) / width;
    const double outside = 1.0 - inside_weights.sum().item<double>();
    std::string label = series[k].label;
    if (outside > 0) label += fmt::format(" ({:.2g}% outside range)", 100 * outside);
    data += fmt::format("# {}\n# bin centre, density\n", label);
    auto c = centres.accessor<double, 1>();
    auto d = density.accessor<double, 1>();
    for (int64_t i = 0; i < options.bins; ++i) data += fmt::format("{:.10g} {:.10g}\n", c[i], d[i]);
    data += "\n\n";
    const std::string style = k == 0
                                  ? "with boxes fs transparent solid 0.35 noborder lc rgb 'gray40'"
                                  : fmt::format("with histeps lw 2.5 lc {}", k);
    plot +=
        fmt::format("{}{} index {} using 1:2 {} title {}", k == 0 ? "" : ", \\\n     ",
                    gnuplot_string(png.stem().string() + ".dat"), k, style, gnuplot_string(label));
  }
  render(png, data,
         axes(options.title, options.x_label, options.y_label) +
             fmt::format("set xrange [{:.10g}:{:.10g}]\nset yrange [0:*]\nset boxwidth {:.10g}\n",
                         lo, hi, width) +
             plot + "\n");
}

void plot_lines(const fs::path& png, const std::vector<LineSeries>& series,
                const LinePlotOptions& options) {
  check(!series.empty(), fmt::format("{}: nothing to plot", png.string()));
  std::string data, plot = "plot ";
  for (size_t k = 0; k < series.size(); ++k) {
    const LineSeries& s = series[k];
    check(s.x.size() == s.y.size() && !s.x.empty(),
          fmt::format("{}: series '{}' needs equally many x and y values (got {} and {})",
                      png.string(), s.label, s.x.size(), s.y.size()));
    data += fmt::format("# {}\n", s.label);
    for (size_t i = 0; i < s.x.size(); ++i)
      data += fmt::format("{:.10g} {:.10g}\n", s.x[i], s.y[i]);
    data += "\n\n";
    plot += fmt::format("{}{} index {} using 1:2 with lines lw 2 lc {} title {}",
                        k == 0 ? "" : ", \\\n     ", gnuplot_string(png.stem().string() + ".dat"),
                        k, k + 1, gnuplot_string(s.label));
  }
  render(png, data,
         axes(options.title, options.x_label, options.y_label) +
             (options.log_y ? "set logscale y\n" : "") + plot + "\n");
}

}  // namespace psm
