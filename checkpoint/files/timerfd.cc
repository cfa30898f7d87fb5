// Timerfd files (timerfds): not supported yet; recognised so the dump refuses them before freezing.
#include <sys/stat.h>

#include "checkpoint/files/kinds.h"

namespace crshim::files {

namespace {

bool matches(const OpenFd& f) { return f.link == "anon_inode:[timerfd]"; }

std::string unsupported(const OpenFd&, bool) { return "timerfd"; }

}  // namespace

extern const FileKind kTimerfdKind{"timerfd", TIMERFD, matches, unsupported, nullptr, nullptr, nullptr};

}  // namespace crshim::files
