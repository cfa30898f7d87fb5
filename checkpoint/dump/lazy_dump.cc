#include "checkpoint/dump/lazy_dump.h"

#include <signal.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cstring>

namespace crshim::dumper {

Result<std::optional<mem::PageServer>> listen_for_lazy_pages(const DumpRequest& req) {
  if (!req.lazy_pages) return std::optional<mem::PageServer>();
  if (req.pre_dump)
    return fail(make_error(Errc::invalid_argument, "pre-dump", "lazy pages", "a pre-dump writes every page it reads")
                    .with_hint("use --lazy-pages with the final dump"));
  if (req.ps_port == 0)
    return fail(make_error(Errc::invalid_argument, "dump", "lazy pages", "no port to serve the pages on")
                    .with_hint("give --port PORT (and --address ADDR) for `crshim lazy-pages --page-server` to connect to"));
  auto server = mem::PageServer::listen(req.ps_address, req.ps_port);
  if (!server) {
    Error e = server.error();
    if (e.err == EADDRINUSE) e.with_hint("another server uses that port: pick another --port");
    return fail(std::move(e));
  }
  return std::optional<mem::PageServer>(std::move(*server));
}

namespace {

// Why a lazy dump waiting for its destination gives up (and resumes the tree): SIGINT, SIGTERM or
// SIGHUP (blocked while it lives, and taken: they asked for exactly that), or the RPC client hanging
// up. fd() is readable once one of them happened.
class Cancellation {
 public:
  explicit Cancellation(int hangup_fd) : hangup_fd_(hangup_fd) {
    sigemptyset(&set_);
    for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&set_, sig);
    ::sigprocmask(SIG_BLOCK, &set_, &old_);
    signals_.reset(::signalfd(-1, &set_, SFD_CLOEXEC | SFD_NONBLOCK));
    epoll_.reset(::epoll_create1(EPOLL_CLOEXEC));
    epoll_event ev{};
    ev.events = EPOLLIN;
    (void)::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, signals_.get(), &ev);
    if (hangup_fd >= 0) {
      ev.events = EPOLLRDHUP;
      (void)::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, hangup_fd, &ev);
    }
  }
  ~Cancellation() {
    signalfd_siginfo info;
    while (signals_ && ::read(signals_.get(), &info, sizeof info) == ssize_t(sizeof info)) {
    }
    signals_.reset();
    ::sigprocmask(SIG_SETMASK, &old_, nullptr);
  }
  Cancellation(const Cancellation&) = delete;
  Cancellation& operator=(const Cancellation&) = delete;
  int fd() const { return epoll_.get(); }
  // What happened, for the error line.
  std::string reason() {
    signalfd_siginfo info;
    if (::read(signals_.get(), &info, sizeof info) == ssize_t(sizeof info)) {
      const char* name = sigabbrev_np(int(info.ssi_signo));
      return name ? std::string("interrupted by SIG") + name : "interrupted by signal " + std::to_string(info.ssi_signo);
    }
    return hangup_fd_ >= 0 ? "the RPC client went away" : "cancelled";
  }

 private:
  int hangup_fd_;
  sigset_t set_, old_;
  UniqueFd signals_, epoll_;
};

}  // namespace

Status serve_lazy_pages(mem::PageServer& server, mem::LazyPagesSource& source, int hangup_fd, Logger& log, Hooks& hooks) {
  Cancellation cancel(hangup_fd);
  // Failures name the step; a cancelled wait says why, and every failure that the tree resumes.
  auto failed = [&](Error e, const char* hint) {
    if (e.code == Errc::aborted) e.message = cancel.reason();
    e.within("lazy dump");
    e.with_hint(hint);
    return fail(std::move(e));
  };
  LOG_INFO(log, "Serving %llu lazy pages on port %u", (unsigned long long)source.pages(), unsigned(server.port()));
  CR_OK(hooks.fire(HookPoint::status_ready, 0));
  auto conn = server.accept(cancel.fd());
  if (!conn) return failed(conn.error(), "the tree runs on here");
  LOG_INFO(log, "The lazy-pages daemon connected from %s", conn->peer.c_str());
  mem::LazySourceStats stats;
  Status st = source.serve(conn->sock.get(), conn->peer, cancel.fd(), log, stats);
  LOG_INFO(log, "Lazy pages: %llu requests, %llu pages sent", (unsigned long long)stats.requests,
           (unsigned long long)stats.pages_sent);
  if (!st) return failed(st.error(), "the tree runs on here; a copy restored from these images has lost memory: kill it");
  return {};
}

}  // namespace crshim::dumper
