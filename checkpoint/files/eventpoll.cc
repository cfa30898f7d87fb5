// Eventpoll files (epoll instances): not supported yet; recognised so the dump refuses them before freezing.
#include <sys/stat.h>

#include "checkpoint/files/kinds.h"

namespace crshim::files {

namespace {

bool matches(const OpenFd& f) { return f.link == "anon_inode:[eventpoll]"; }

std::string unsupported(const OpenFd&, bool) { return "epoll"; }

}  // namespace

extern const FileKind kEventpollKind{"epoll", EVENTPOLL, matches, unsupported, nullptr, nullptr, nullptr};

}  // namespace crshim::files
