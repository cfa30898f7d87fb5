// `crshim service`: a listening SEQPACKET socket serving CRIU RPC, one forked worker per connection.
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "checkpoint/base/sys.h"
#include "checkpoint/base/unique_fd.h"
#include "shim/daemon.h"
#include "shim/rpc.h"
#include "shim/verbs.h"

namespace crshim {

namespace {

constexpr const char* kDefaultAddress = "criu_service.socket";  // CRIU's default, relative to the cwd
constexpr int kBacklog = 16;

int service_error(const Error& e) {
  fprintf(stderr, "Error: service: %s\n", e.render().c_str());
  return 1;
}

// A group by name or number.
Result<gid_t> group_id(const std::string& name) {
  uint64_t v;
  if (sys::parse_u64(name, v)) return gid_t(v);
  group* g = ::getgrnam(name.c_str());
  if (!g)
    return fail(make_error(Errc::not_found, "service", "--allow-group " + name, "no such group")
                    .with_hint("name an existing group, or its number"));
  return g->gr_gid;
}

Result<UniqueFd> listen_on(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof addr.sun_path)
    return fail(make_error(Errc::invalid_argument, "bind", path, "socket path is empty or too long")
                    .with_hint("give --address a path of at most " + std::to_string(sizeof addr.sun_path - 1) + " bytes"));
  memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  UniqueFd sk(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  if (!sk) return fail(sys_error("socket(AF_UNIX, SOCK_SEQPACKET)"));
  // A socket left by an earlier run would make bind() fail; anything that is not a socket stays.
  struct stat st;
  if (::lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) ::unlink(path.c_str());
  if (::bind(sk.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0) return fail(sys_error("bind", path));
  // CRIU's mode: any local user may connect; workers check who did.
  if (::chmod(path.c_str(), 0666) < 0) return fail(sys_error("chmod", path));
  if (::listen(sk.get(), kBacklog) < 0) return fail(sys_error("listen", path));
  return sk;
}

void reap_workers() {
  while (::waitpid(-1, nullptr, WNOHANG) > 0) {
  }
}

}  // namespace

int run_service(const Options& opts) {
  const std::string path = opts.address.value_or(kDefaultAddress);
  std::optional<gid_t> allowed_group;
  if (opts.allow_group) {
    auto gid = group_id(*opts.allow_group);
    if (!gid) return service_error(gid.error());
    allowed_group = *gid;
  }
  // SIGTERM/SIGINT end the service cleanly (socket file removed); SIGCHLD reaps a worker as soon as it
  // ends. Blocked before the socket exists, so a SIGTERM sent once it appears is never lost. Workers
  // get the old mask back.
  sigset_t handled, old;
  sigemptyset(&handled);
  sigaddset(&handled, SIGTERM);
  sigaddset(&handled, SIGINT);
  sigaddset(&handled, SIGCHLD);
  ::sigprocmask(SIG_BLOCK, &handled, &old);
  auto sk = listen_on(path);
  if (!sk) return service_error(sk.error());

  auto background = start_serving(opts, "service daemon");
  if (!background) return service_error(background.error());
  if (*background > 0) return 0;

  UniqueFd sigfd(::signalfd(-1, &handled, SFD_CLOEXEC));
  if (!sigfd) return service_error(sys_error("signalfd"));

  rpc::ServeConfig cfg;
  cfg.mode = rpc::Mode::service;
  cfg.base = opts;
  // These options describe the service itself, not the jobs it runs: a restore must not write the
  // service's pidfile, nor detach or report readiness on its status fd.
  cfg.base.pidfile.reset();
  cfg.base.status_fd.reset();
  cfg.base.restore_detached = false;
  cfg.base.address.reset();
  cfg.base.allow_group.reset();
  // Root only, unless a group is let in: it then acts with crshim's privileges on their behalf.
  cfg.require_root = true;
  cfg.allowed_group = allowed_group;
  for (;;) {
    pollfd fds[2] = {{sk->get(), POLLIN, 0}, {sigfd.get(), POLLIN, 0}};
    int r = ::poll(fds, 2, -1);
    if (r < 0) {
      if (errno == EINTR) continue;
      return service_error(sys_error("poll", path));
    }
    if (fds[1].revents) {
      signalfd_siginfo si{};
      if (::read(sigfd.get(), &si, sizeof si) == sizeof si && si.ssi_signo != SIGCHLD) break;
      reap_workers();  // one SIGCHLD may stand for several workers
      continue;
    }
    if (!fds[0].revents) continue;
    UniqueFd conn(::accept4(sk->get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!conn) {
      if (errno == EINTR || errno == ECONNABORTED || errno == EAGAIN) continue;
      return service_error(sys_error("accept", path));
    }
    pid_t worker = ::fork();
    if (worker < 0) {
      fprintf(stderr, "Error: service: fork: %s\n", strerror(errno));
      continue;
    }
    if (worker == 0) {
      // The service is single-threaded, so the worker may allocate freely without exec'ing.
      sk->reset();
      sigfd.reset();
      ::sigprocmask(SIG_SETMASK, &old, nullptr);
      ::_exit(rpc::serve(conn.get(), cfg));
    }
  }
  ::unlink(path.c_str());
  return 0;
}

}  // namespace crshim
