// Memfd files (memfds): not supported yet; recognised so the dump refuses them before freezing.
#include <sys/stat.h>

#include "checkpoint/files/kinds.h"

namespace crshim::files {

namespace {

bool matches(const OpenFd& f) { return f.link.rfind("/memfd:", 0) == 0; }

std::string unsupported(const OpenFd&, bool) { return "memfd"; }

}  // namespace

extern const FileKind kMemfdKind{"memfd", MEMFD, matches, unsupported, nullptr, nullptr, nullptr};

}  // namespace crshim::files
