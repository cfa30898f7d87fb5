// `crshim swrk FD`: serve one CRIU RPC session on an inherited SOCK_SEQPACKET socket (runc, crun, go-criu, pycriu).
#include <fcntl.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdio>

#include "shim/rpc.h"
#include "shim/verbs.h"

namespace crshim {

namespace {

// Clients may exec us with stdio closed (pycriu does); fill the holes so no file we open lands on 0..2.
void fill_stdio() {
  for (int fd = 0; fd < 3; ++fd) {
    if (::fcntl(fd, F_GETFD) >= 0 || errno != EBADF) continue;
    int n = ::open("/dev/null", O_RDWR);
    if (n >= 0 && n != fd) ::close(n);  // cannot happen while `fd` is the lowest free number
  }
}

}  // namespace

int run_swrk(const Options& opts) {
  fill_stdio();
  int sock = opts.swrk_fd;
  int type = 0;
  socklen_t len = sizeof type;
  if (::getsockopt(sock, SOL_SOCKET, SO_TYPE, &type, &len) < 0 || type != SOCK_SEQPACKET) {
    fprintf(stderr, "Error: swrk: descriptor %d is not a SOCK_SEQPACKET socket\n", sock);
    return 1;
  }
  // Action scripts and anything else we exec must not inherit the client's connection.
  ::fcntl(sock, F_SETFD, FD_CLOEXEC);
  rpc::ServeConfig cfg;
  cfg.mode = rpc::Mode::swrk;
  cfg.base = opts;
  return rpc::serve(sock, cfg);
}

}  // namespace crshim
