#include "shim/progress_line.h"

#include <unistd.h>

#include <cstdio>

namespace crshim {

namespace {

constexpr double kPage = 4096;

std::string size_text(double bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (bytes >= 1024 && u < 4) bytes /= 1024, u++;
  char buf[32];
  snprintf(buf, sizeof buf, u ? "%.1f %s" : "%.0f %s", bytes, units[u]);
  return buf;
}

}  // namespace

std::string TerminalProgress::render(const std::string& what, uint64_t done, uint64_t total, double seconds) {
  std::string line = what + ": " + size_text(double(done) * kPage);
  if (total) {
    char pct[16];
    snprintf(pct, sizeof pct, " (%d%%)", int(double(done) * 100 / double(total)));
    line += " of " + size_text(double(total) * kPage) + pct;
  }
  if (seconds > 0) line += ", " + size_text(double(done) * kPage / seconds) + "/s";
  return line;
}

void TerminalProgress::begin(const char* what, uint64_t total_pages) {
  what_ = what;
  total_ = total_pages;
  done_ = 0;
  start_ = drawn_ = Clock::now();
  active_ = true;
}

void TerminalProgress::advance(uint64_t pages) {
  if (!active_) return;
  done_ += pages;
  if (Clock::now() - drawn_ >= std::chrono::milliseconds(100)) draw(false);
}

void TerminalProgress::end() {
  if (active_ && done_) draw(true);
  active_ = false;
}

void TerminalProgress::draw(bool final) {
  drawn_ = Clock::now();
  double seconds = std::chrono::duration<double>(drawn_ - start_).count();
  // \r and clear-to-end-of-line: each redraw replaces the last; the summary ends the line.
  std::string text = "\r" + render(what_, done_, total_, seconds) + "\033[K" + (final ? "\n" : "");
  (void)!::write(fd_, text.data(), text.size());
}

}  // namespace crshim
