// Servers that may run in the background (service, page-server, lazy-pages): CRIU's -d, --pidfile and
// --status-fd, one way for all of them.
#pragma once

#include <sys/types.h>

#include "checkpoint/base/result.h"
#include "shim/options.h"

namespace crshim {

// Call once the server listens. With -d, forks: the parent gets the child's pid, written to --pidfile
// (if that fails the child is killed and the error returned), and reports ready; the child gets 0 and
// leads a new session with stdio on /dev/null. Without -d, writes our own pid to --pidfile, reports
// ready and returns 0. Ready is one NUL byte on --status-fd, which is then closed.
Result<pid_t> start_serving(const Options& opts, const char* what);

}  // namespace crshim
