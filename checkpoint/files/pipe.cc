// Pipe files (pipes): not supported yet; recognised so the dump refuses them before freezing.
#include <sys/stat.h>

#include "checkpoint/files/kinds.h"

namespace crshim::files {

namespace {

bool matches(const OpenFd& f) { return f.link.rfind("pipe:", 0) == 0; }

std::string unsupported(const OpenFd&, bool) { return "pipe"; }

}  // namespace

extern const FileKind kPipeKind{"pipe", PIPE, matches, unsupported, nullptr, nullptr, nullptr};

}  // namespace crshim::files
