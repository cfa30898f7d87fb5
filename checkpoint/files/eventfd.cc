// Eventfd files (eventfds): not supported yet; recognised so the dump refuses them before freezing.
#include <sys/stat.h>

#include "checkpoint/files/kinds.h"

namespace crshim::files {

namespace {

bool matches(const OpenFd& f) { return f.link == "anon_inode:[eventfd]"; }

std::string unsupported(const OpenFd&, bool) { return "eventfd"; }

}  // namespace

extern const FileKind kEventfdKind{"eventfd", EVENTFD, matches, unsupported, nullptr, nullptr, nullptr};

}  // namespace crshim::files
