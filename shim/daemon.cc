#include "shim/daemon.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <string>

#include "checkpoint/base/sys.h"

namespace crshim {

namespace {

void signal_ready(const Options& opts) {
  if (!opts.status_fd) return;
  char ready = 0;
  (void)!::write(*opts.status_fd, &ready, 1);
  ::close(*opts.status_fd);
}

}  // namespace

Result<pid_t> start_serving(const Options& opts, const char* what) {
  if (!opts.daemonize()) {
    if (opts.pidfile) CR_OK(sys::write_file(*opts.pidfile, std::to_string(::getpid()) + "\n"));
    signal_ready(opts);
    return 0;
  }
  pid_t child = ::fork();
  if (child < 0) return fail(sys_error("fork", what));
  if (child > 0) {
    // The parent writes the pidfile and says ready, so both hold once `VERB -d` returns.
    if (opts.pidfile)
      if (Status st = sys::write_file(*opts.pidfile, std::to_string(child) + "\n"); !st) {
        ::kill(child, SIGTERM);
        return fail(st.error());
      }
    signal_ready(opts);
    return child;
  }
  if (opts.status_fd) ::close(*opts.status_fd);
  ::setsid();
  int null = ::open("/dev/null", O_RDWR);
  if (null >= 0) {
    ::dup2(null, 0);
    ::dup2(null, 1);
    ::dup2(null, 2);
    if (null > 2) ::close(null);
  }
  return 0;
}

}  // namespace crshim
