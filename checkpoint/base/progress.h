// How far a long dump or restore has got, reported as memory pages move; the shim draws it as a
// progress line on a terminal. Engine code calls it from the job's own thread.
#pragma once

#include <cstdint>

namespace crshim {

class ProgressSink {
 public:
  virtual ~ProgressSink() = default;
  // A phase starts: `what` ("dump", "restore") with `total_pages` to move (0: not known in advance).
  virtual void begin(const char* what, uint64_t total_pages) = 0;
  // `pages` more pages written or restored.
  virtual void advance(uint64_t pages) = 0;
  // The phase is over (finished or failed).
  virtual void end() = 0;
};

// Reports to `sink` if there is one: engine code need not check.
inline void progress_advance(ProgressSink* sink, uint64_t pages) {
  if (sink) sink->advance(pages);
}

// A phase from construction to destruction, so that it ends whatever the outcome.
class ProgressPhase {
 public:
  ProgressPhase(ProgressSink* sink, const char* what, uint64_t total_pages) : sink_(sink) {
    if (sink_) sink_->begin(what, total_pages);
  }
  ~ProgressPhase() {
    if (sink_) sink_->end();
  }
  ProgressPhase(const ProgressPhase&) = delete;
  ProgressPhase& operator=(const ProgressPhase&) = delete;

 private:
  ProgressSink* sink_;
};

}  // namespace crshim
