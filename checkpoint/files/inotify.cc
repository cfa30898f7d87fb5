// Inotify files (inotify instances): not supported yet; recognised so the dump refuses them before freezing.
#include <sys/stat.h>

#include "checkpoint/files/kinds.h"

namespace crshim::files {

namespace {

bool matches(const OpenFd& f) { return f.link == "anon_inode:inotify"; }

std::string unsupported(const OpenFd&, bool) { return "inotify"; }

}  // namespace

extern const FileKind kInotifyKind{"inotify", INOTIFY, matches, unsupported, nullptr, nullptr, nullptr};

}  // namespace crshim::files
