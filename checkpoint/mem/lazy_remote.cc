#include "checkpoint/mem/lazy_remote.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "checkpoint/base/fault.h"
#include "checkpoint/mem/page_protocol.h"
#include "checkpoint/mem/page_server.h"

namespace crshim::mem {

namespace {

constexpr uint32_t kMaxGetPages = 4096;  // 16 MiB: more than the daemon ever asks for at once

// Whether one range of `lazy` (sorted) holds all of [addr, addr + len).
bool holds(const std::vector<Range>& lazy, uint64_t addr, uint64_t len) {
  auto it = std::upper_bound(lazy.begin(), lazy.end(), addr, [](uint64_t a, const Range& r) { return a < r.start; });
  if (it == lazy.begin()) return false;
  --it;
  return addr >= it->start && addr + len <= it->end;
}

}  // namespace

// ---- the dump side ----

void LazyPagesSource::add(uint32_t vpid, pid_t pid, std::vector<Range> lazy) {
  // Adjacent ranges merge: the daemon may ask for pages across two entries at once.
  std::vector<Range> merged;
  for (const auto& r : lazy) {
    if (!merged.empty() && merged.back().end == r.start) merged.back().end = r.end;
    else merged.push_back(r);
  }
  tasks_[vpid] = Task{pid, std::move(merged)};
}

void LazyPagesSource::share(uint32_t from, uint32_t to) {
  if (auto it = tasks_.find(from); it != tasks_.end()) tasks_[to] = it->second;
}

uint64_t LazyPagesSource::pages() const {
  std::map<pid_t, uint64_t> per_mm;  // shared address spaces count once
  for (const auto& [vpid, t] : tasks_) {
    uint64_t n = 0;
    for (const auto& r : t.lazy) n += r.pages();
    per_mm[t.pid] = n;
  }
  uint64_t total = 0;
  for (const auto& [pid, n] : per_mm) total += n;
  return total;
}

Status LazyPagesSource::serve(int conn, const std::string& peer, int cancel_fd, Logger& log, LazySourceStats& stats) {
  const std::string what = "lazy-pages daemon " + peer;
  std::vector<char> buf;
  std::map<pid_t, int> mem_fds;  // /proc/PID/mem, opened where process_vm_readv cannot read
  struct CloseAll {
    std::map<pid_t, int>& fds;
    ~CloseAll() {
      for (auto& [pid, fd] : fds)
        if (fd >= 0) ::close(fd);
    }
  } close_all{mem_fds};
  for (;;) {
    pollfd fds[2] = {{conn, POLLIN, 0}, {cancel_fd, POLLIN, 0}};
    int n = ::poll(fds, cancel_fd >= 0 ? 2 : 1, -1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail(sys_error("poll", what));
    if (cancel_fd >= 0 && fds[1].revents)
      return fail(make_error(Errc::aborted, "serve", what, "cancelled"));
    ps::Iov req;
    if (!CR_TRY(recv_exact(conn, &req, sizeof req, true, what)))
      return fail(make_error(Errc::system, "serve", what, "the daemon went away before it had every page")
                      .with_hint("see the lazy-pages daemon's log on the destination"));
    uint32_t cmd = ps::cmd_of(req.cmd);
    if (cmd == ps::kClose || cmd == ps::kForceClose) {
      int32_t status = 0;
      iovec iov{&status, sizeof status};
      CR_OK(send_iov(conn, &iov, 1, what));
      LOG_INFO(log, "The lazy-pages daemon has every page");
      return {};
    }
    if (cmd != ps::kGet)
      return fail(make_error(Errc::invalid_argument, "serve", what, "unexpected command " + std::to_string(cmd))
                      .with_hint("connect `crshim lazy-pages --page-server` to a lazy dump"));
    CR_OK(fault_point("dump:lazy-get"));
    stats.requests++;
    auto dst = ps::decode_dst(req.dst_id);
    auto task = dst && dst->target == ps::Target::process ? tasks_.find(uint32_t(dst->id)) : tasks_.end();
    uint64_t len = uint64_t(req.nr_pages) * kPageSize;
    ps::Iov ans;
    ans.cmd = ps::kAdd;
    if (task != tasks_.end() && req.nr_pages > 0 && req.nr_pages <= kMaxGetPages && req.vaddr % kPageSize == 0 &&
        holds(task->second.lazy, req.vaddr, len)) {
      ans.nr_pages = req.nr_pages;
      ans.vaddr = req.vaddr;
      ans.dst_id = req.dst_id;
      buf.resize(len);
      pid_t pid = task->second.pid;
      auto [fd, fresh] = mem_fds.try_emplace(pid, -1);
      CR_OK_IN(read_task_memory(pid, fd->second, req.vaddr, len, buf.data()), what);
    } else {
      // As CRIU's: ADD {0, 0, 0} says these pages are not here.
      LOG_WARN(log, "The daemon asked for %u pages at 0x%llx of a pagemap (%llx) that holds no such lazy pages",
               req.nr_pages, (unsigned long long)req.vaddr, (unsigned long long)req.dst_id);
      len = 0;
    }
    iovec iov[2] = {{&ans, sizeof ans}, {buf.data(), size_t(len)}};
    CR_OK(send_iov(conn, iov, len ? 2 : 1, what));
    stats.pages_sent += ans.nr_pages;
  }
}

// ---- the destination side ----

Result<std::unique_ptr<RemotePages>> RemotePages::connect(const std::string& address, uint16_t port) {
  auto c = CR_TRY(connect_tcp(address, port, "lazy dump",
                              "start `crshim dump --lazy-pages --port PORT` on the source first; it listens once its images are written"));
  return std::unique_ptr<RemotePages>(new RemotePages(std::move(c.sock), std::move(c.peer)));
}

Result<const char*> RemotePages::get(uint32_t vpid, uint64_t vaddr, uint32_t nr_pages) {
  const std::string what = "lazy dump " + peer_;
  ps::Iov req;
  req.cmd = ps::kGet;
  req.nr_pages = nr_pages;
  req.vaddr = vaddr;
  req.dst_id = ps::encode_dst(ps::Target::process, vpid);
  iovec iov{&req, sizeof req};
  CR_OK(send_iov(sk_.get(), &iov, 1, what));
  ps::Iov ans;
  if (!CR_TRY(recv_exact(sk_.get(), &ans, sizeof ans, true, what)))
    return fail(make_error(Errc::system, "recv", what, "the dump closed the connection")
                    .with_hint("see the dump's log on the source"));
  if (ps::cmd_of(ans.cmd) != ps::kAdd || ans.nr_pages != nr_pages || ans.vaddr != vaddr || ans.dst_id != req.dst_id) {
    char hex[32];
    snprintf(hex, sizeof hex, "0x%llx", (unsigned long long)vaddr);
    return fail(make_error(Errc::corrupt_image, "get", std::to_string(nr_pages) + " pages at " + hex + " of pid " + std::to_string(vpid),
                           "the dump does not hold them")
                    .with_hint("the images and the dump serving them must be of the same checkpoint"));
  }
  buf_.resize(size_t(nr_pages) * kPageSize);
  CR_OK(recv_exact(sk_.get(), buf_.data(), buf_.size(), false, what));
  pages_ += nr_pages;
  return buf_.data();
}

Status RemotePages::close() {
  const std::string what = "lazy dump " + peer_;
  ps::Iov req;
  req.cmd = ps::kClose;
  iovec iov{&req, sizeof req};
  CR_OK(send_iov(sk_.get(), &iov, 1, what));
  int32_t status = -1;
  if (!CR_TRY(recv_exact(sk_.get(), &status, sizeof status, true, what)) || status != 0)
    return fail(make_error(Errc::system, "close", what, "the dump did not confirm the end of the transfer"));
  sk_.reset();
  return {};
}

}  // namespace crshim::mem
