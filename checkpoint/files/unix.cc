// Unix files (unix sockets): not supported yet; recognised so the dump refuses them before freezing.
#include <sys/stat.h>

#include "checkpoint/files/kinds.h"

namespace crshim::files {

namespace {

bool matches(const OpenFd& f) { return f.link.rfind("socket:", 0) == 0; }

std::string unsupported(const OpenFd&, bool) { return "unix socket"; }

}  // namespace

extern const FileKind kUnixKind{"unix socket", UNIXSK, matches, unsupported, nullptr, nullptr, nullptr};

}  // namespace crshim::files
