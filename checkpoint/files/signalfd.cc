// Signalfd files (signalfds): not supported yet; recognised so the dump refuses them before freezing.
#include <sys/stat.h>

#include "checkpoint/files/kinds.h"

namespace crshim::files {

namespace {

bool matches(const OpenFd& f) { return f.link == "anon_inode:[signalfd]"; }

std::string unsupported(const OpenFd&, bool) { return "signalfd"; }

}  // namespace

extern const FileKind kSignalfdKind{"signalfd", SIGNALFD, matches, unsupported, nullptr, nullptr, nullptr};

}  // namespace crshim::files
