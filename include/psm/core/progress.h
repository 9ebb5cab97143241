#pragma once
// A progress bar on stderr for long work: fraction, rate, ETA and a few named values.
// Redraws at most a few times a second; prints plain lines when stderr is not a terminal.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace psm {

/// Sees every update of every ProgressBar made on the calling thread, drawn or not, with the
/// bar's label, the amount done and the total. A program that embeds psm (the Python module)
/// shows progress its own way through it, and stops long work by throwing from it: the exception
/// leaves ProgressBar::update and unwinds the work.
using ProgressObserver = std::function<void(const std::string& label, int64_t done, int64_t total)>;

/// Installs an observer for the calling thread while it lives; restores the previous one after.
class ProgressObserverScope {
 public:
  explicit ProgressObserverScope(ProgressObserver observer);
  ~ProgressObserverScope();
  ProgressObserverScope(const ProgressObserverScope&) = delete;
  ProgressObserverScope& operator=(const ProgressObserverScope&) = delete;

 private:
  ProgressObserver previous_;
};

class ProgressBar {
 public:
  /// `total` units of work (steps, samples); `label` is printed before the bar.
  ProgressBar(std::string label, int64_t total, bool enabled = true);
  ~ProgressBar();

  /// Sets the amount done and optional named values shown after the bar ("loss", 0.12), then
  /// calls the thread's ProgressObserver, if any (which may throw).
  void update(int64_t done, const std::vector<std::pair<std::string, double>>& values = {});
  /// Draws the final state and ends the line.
  void finish();

 private:
  void draw(bool final);

  std::string label_;
  int64_t total_;
  int64_t done_ = 0;
  bool enabled_;
  bool tty_;
  bool finished_ = false;
  std::vector<std::pair<std::string, double>> values_;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_;
};

/// A progress bar made at the first report, for work that learns its total only when it starts
/// (samplers, likelihood integration: chunks times steps).
class LazyProgressBar {
 public:
  LazyProgressBar(std::string label, bool enabled) : label_(std::move(label)), enabled_(enabled) {}
  /// A callback (done, total) that draws the bar; valid while this object lives.
  std::function<void(int64_t, int64_t)> callback();
  void finish();

 private:
  std::string label_;
  bool enabled_;
  std::unique_ptr<ProgressBar> bar_;
};

}  // namespace psm
