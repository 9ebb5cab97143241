#include "psm/core/progress.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>
#include <utility>

namespace psm {

namespace {
std::string format_duration(double seconds) {
  if (seconds < 0 || seconds > 1e7) return "--:--";
  const auto s = static_cast<int64_t>(seconds + 0.5);
  if (s >= 3600) return fmt::format("{}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60);
  return fmt::format("{:02}:{:02}", s / 60, s % 60);
}
thread_local ProgressObserver current_observer;

}  // namespace

ProgressObserverScope::ProgressObserverScope(ProgressObserver observer)
    : previous_(std::exchange(current_observer, std::move(observer))) {}

ProgressObserverScope::~ProgressObserverScope() { current_observer = std::move(previous_); }

ProgressBar::ProgressBar(std::string label, int64_t total, bool enabled)
    : label_(std::move(label)),
      total_(total > 0 ? total : 1),
      enabled_(enabled),
      tty_(::isatty(STDERR_FILENO) != 0),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {}

ProgressBar::~ProgressBar() {
  if (!finished_ && done_ > 0) finish();
}

void ProgressBar::update(int64_t done, const std::vector<std::pair<std::string, double>>& values) {
  done_ = done;
  if (!values.empty()) values_ = values;
  const auto now = std::chrono::steady_clock::now();
  // Terminals redraw 5x a second; logs get a line every 10 s.
  const double interval = tty_ ? 0.2 : 10.0;
  if (std::chrono::duration<double>(now - last_draw_).count() >= interval) {
    last_draw_ = now;
    draw(false);
  }
  if (current_observer) current_observer(label_, done_, total_);
}

void ProgressBar::finish() {
  if (finished_) return;
  finished_ = true;
  draw(true);
}

void ProgressBar::draw(bool final) {
  if (!enabled_) return;
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double fraction = std::min(1.0, static_cast<double>(done_) / static_cast<double>(total_));
  const double rate = elapsed > 0 ? static_cast<double>(done_) / elapsed : 0.0;
  const double eta = rate > 0 ? static_cast<double>(total_ - done_) / rate : -1.0;
  constexpr int width = 24;
  const int filled = static_cast<int>(fraction * width);
  std::string line =
      fmt::format("{} [{}{}] {:3.0f}% {}/{} {:.4g}/s {} eta {}", label_, std::string(filled, '#'),
                  std::string(width - filled, '.'), 100 * fraction, done_, total_, rate,
                  format_duration(elapsed), format_duration(final ? 0.0 : eta));
  for (const auto& [name, value] : values_) line += fmt::format(" {}={:.4g}", name, value);
  if (tty_) {
    std::fprintf(stderr, "\r\033[K%s%s", line.c_str(), final ? "\n" : "");
  } else {
    std::fprintf(stderr, "%s\n", line.c_str());
  }
  std::fflush(stderr);
}

std::function<void(int64_t, int64_t)> LazyProgressBar::callback() {
  return [this](int64_t done, int64_t total) {
    if (!bar_) bar_ = std::make_unique<ProgressBar>(label_, total, enabled_);
    bar_->update(done);
  };
}

void LazyProgressBar::finish() {
  if (bar_) bar_->finish();
}

}  // namespace psm
