// Fifo files (FIFOs): not supported yet; recognised so the dump refuses them before freezing.
#include <sys/stat.h>

#include "checkpoint/files/kinds.h"

namespace crshim::files {

namespace {

bool matches(const OpenFd& f) { return S_ISFIFO(f.st.st_mode) && !f.link.empty() && f.link[0] == '/'; }

std::string unsupported(const OpenFd&, bool) { return "fifo"; }

}  // namespace

extern const FileKind kFifoKind{"fifo", FIFO, matches, unsupported, nullptr, nullptr, nullptr};

}  // namespace crshim::files
