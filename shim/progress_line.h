// A progress line on the user's terminal for long dumps and restores: bytes moved, share of the
// total when known, and rate; redrawn in place at most ten times a second, closed by a summary.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "checkpoint/base/progress.h"

namespace crshim {

class TerminalProgress : public ProgressSink {
 public:
  explicit TerminalProgress(int fd) : fd_(fd) {}
  void begin(const char* what, uint64_t total_pages) override;
  void advance(uint64_t pages) override;
  void end() override;

  // The text of the line for `done` of `total` pages (0: unknown) after `seconds`.
  static std::string render(const std::string& what, uint64_t done, uint64_t total, double seconds);

 private:
  using Clock = std::chrono::steady_clock;
  void draw(bool final);

  int fd_;
  std::string what_;
  uint64_t total_ = 0, done_ = 0;
  Clock::time_point start_{}, drawn_{};
  bool active_ = false;
};

}  // namespace crshim
