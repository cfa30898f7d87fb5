#include "checkpoint/mem/lazy_server.h"

#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <array>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <unordered_map>
#include <vector>

#include "checkpoint/base/sys.h"
#include "checkpoint/image/catalog.h"
#include "checkpoint/image/image.h"
#include "checkpoint/mem/compress.h"
#include "checkpoint/mem/lazy.h"
#include "checkpoint/mem/parent_pages.h"

namespace crshim::mem {

namespace {

using Clock = std::chrono::steady_clock;

// PendingPages sources with this bit are addresses in the source task (the lazy dump serves them),
// not in the daemon's mappings of the images (user addresses never have it).
constexpr uint64_t kRemoteSrc = 1ull << 63;

// One address space being served.
struct Space {
  UniqueFd uffd;
  pid_t pid = 0;  // 0: a task forked after the restore (the kernel does not say which)
  uint32_t vpid = 0;
  PendingPages pending;
  std::deque<uint64_t> faults;  // addresses read but not served yet
  bool gone = false;            // its mm is gone (task exited)
  std::string name() const {
    return pid ? "pid " + std::to_string(pid) : "a child forked from vpid " + std::to_string(vpid);
  }
};

class Server {
 public:
  Server(const LazyServerOptions& opts, Logger& log) : opts_(opts), log_(log) {}
  Result<LazyServerStats> run(UniqueFd listener);

 private:
  // A pages image in memory (decompressed if need be): UFFDIO_COPY reads the data straight from it.
  Result<const PagesImage*> map_image(int dir, const std::string& name);
  Status build_pending(Space& s, const std::vector<Range>& registered);
  Status on_connection();
  Status read_events(Space& s);
  Status serve_faults(Space& s);
  // `pages` pages of the source's `vpid` from `vaddr` on (RemotePages), reusing what a forked relative
  // fetched; valid until the next call.
  Result<const char*> fetch(uint32_t vpid, uint64_t vaddr, uint64_t pages);
  // Copies [addr, addr+len) from src; false: the caller must read the space's events first (EAGAIN).
  Result<bool> copy(Space& s, uint64_t addr, uint64_t len, uint64_t src, bool fault);
  Result<bool> zero(Space& s, uint64_t addr);
  Status push_some();
  void close_space(int fd, const char* why);
  Status reply(int err, const std::string& text);

  const LazyServerOptions& opts_;
  Logger& log_;
  LazyServerStats stats_;
  UniqueFd epoll_;
  UniqueFd conn_;
  bool done_ = false;  // the restore said the tree runs
  bool eof_ = false;   // the restore went away
  std::map<int, std::unique_ptr<Space>> spaces_;  // by uffd
  std::map<std::string, std::unique_ptr<PagesImage>> images_;
  std::optional<ParentChain> chain_;
  std::unordered_map<uint64_t, std::array<char, kPageSize>> fetched_;  // vpid << 40 | page number -> data
  std::vector<char> assembled_;
  int next_push_ = -1;
};

Status epoll_add(int ep, int fd) {
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = fd;
  if (::epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) return fail(sys_error("epoll_ctl(ADD)", "lazy-pages fd"));
  return {};
}

Result<const PagesImage*> Server::map_image(int dir, const std::string& name) {
  std::string key = std::to_string(dir) + "/" + name;
  if (auto it = images_.find(key); it != images_.end()) return it->second.get();
  auto m = std::make_unique<PagesImage>(CR_TRY(PagesImage::open(dir, name)));
  const PagesImage* p = m.get();
  images_[key] = std::move(m);
  return p;
}

Status Server::build_pending(Space& s, const std::vector<Range>& registered) {
  std::string pm_name = image::pagemap_file(s.vpid);
  auto r = CR_TRY(image::Reader::open(opts_.images_dir, pm_name, image::kind(image::Type::pagemap)));
  pagemap_head head;
  if (!CR_TRY(r.read(head))) return fail(make_error(Errc::corrupt_image, "read", pm_name, "no pagemap head"));
  std::vector<pagemap_entry> entries;
  for (;;) {
    pagemap_entry pe;
    if (!CR_TRY(r.read(pe))) break;
    entries.push_back(std::move(pe));
  }
  std::string pages_name = image::pages_file(head.pages_id());
  SplitRuns split = split_runs(index_pagemap(entries), registered);
  for (const auto& run : split.lazy) {
    if (run.flags & kPePresent) {
      const PagesImage* m = CR_TRY(map_image(opts_.images_dir, pages_name));
      if (run.page_offset + run.nr_pages > m->size() / kPageSize)
        return fail(make_error(Errc::corrupt_image, "read", pages_name, "pagemap refers past the end of the pages image"));
      s.pending.add(run.vaddr, run.end(), reinterpret_cast<uint64_t>(m->data()) + run.page_offset * kPageSize);
    } else if (run.flags & kPeParent) {
      if (!chain_) chain_.emplace(opts_.images_dir);
      for (const auto& p : CR_TRY(chain_->resolve(s.vpid, run.vaddr, run.nr_pages))) {
        const PagesImage* m = CR_TRY(map_image(p.dir, p.pages));
        if (p.page_offset + p.nr_pages > m->size() / kPageSize)
          return fail(make_error(Errc::corrupt_image, "read", "parent/" + p.pages, "pagemap refers past the end of the pages image"));
        s.pending.add(p.vaddr, p.vaddr + p.nr_pages * kPageSize, reinterpret_cast<uint64_t>(m->data()) + p.page_offset * kPageSize);
      }
    } else if (run.flags & kPeLazy) {
      if (!opts_.remote)
        return fail(make_error(Errc::invalid_argument, "read", pm_name, "lazy-only pages (PE_LAZY without PE_PRESENT) are held by the lazy dump on the source")
                        .with_hint("run `crshim lazy-pages --page-server --address SOURCE --port PORT` to fetch them from there"));
      s.pending.add(run.vaddr, run.end(), kRemoteSrc | run.vaddr);
    }
  }
  return {};
}

Result<const char*> Server::fetch(uint32_t vpid, uint64_t vaddr, uint64_t pages) {
  // Pages missing at a fork are missing in parent and child alike, with the same contents: while a
  // forked task waits for pages, what one of them fetches is kept for the other.
  bool forks_wait = false;
  for (const auto& [fd, sp] : spaces_) forks_wait |= !sp->pid && !sp->gone && !sp->pending.empty();
  auto key = [&](uint64_t i) { return uint64_t(vpid) << 40 | ((vaddr >> 12) + i); };
  if (!forks_wait) {
    fetched_.clear();
  } else {
    bool all = true;
    for (uint64_t i = 0; all && i < pages; i++) all = fetched_.count(key(i)) != 0;
    if (all) {
      assembled_.resize(pages * kPageSize);
      for (uint64_t i = 0; i < pages; i++) memcpy(assembled_.data() + i * kPageSize, fetched_[key(i)].data(), kPageSize);
      stats_.reused_pages += pages;
      return assembled_.data();
    }
  }
  const char* data = CR_TRY(opts_.remote->get(vpid, vaddr, uint32_t(pages)));
  stats_.remote_pages += pages;
  if (forks_wait)
    for (uint64_t i = 0; i < pages; i++)
      memcpy(fetched_[key(i)].data(), data + i * kPageSize, kPageSize);
  return data;
}

Status Server::reply(int err, const std::string& text) {
  LazyReply rep;
  rep.err = err;
  rep.len = uint32_t(std::min<size_t>(text.size(), 4096));
  std::string out(reinterpret_cast<const char*>(&rep), sizeof rep);
  out.append(text, 0, rep.len);
  if (::send(conn_.get(), out.data(), out.size(), MSG_NOSIGNAL) != ssize_t(out.size()))
    return fail(sys_error("send", "lazy-pages socket"));
  return {};
}

// One message from the restore: a task's userfaultfd, or the end of the restore.
Status Server::on_connection() {
  LazyTaskHeader h;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
  iovec iov{&h, sizeof h};
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = control;
  mh.msg_controllen = sizeof control;
  ssize_t n = ::recvmsg(conn_.get(), &mh, MSG_CMSG_CLOEXEC | MSG_WAITALL);
  std::vector<UniqueFd> fds = sys::take_passed_fds(mh);
  if (n == 0) {
    eof_ = true;
    return {};
  }
  if (n < 0) return fail(sys_error("recvmsg", "lazy-pages socket"));
  if (n != ssize_t(sizeof h) || h.magic != kLazyMagic)
    return fail(make_error(Errc::invalid_argument, "read", "lazy-pages socket", "not a crshim restore"));
  if (h.type == uint32_t(LazyMsg::done)) {
    LOG_INFO(log_, "The restore resumed the tree");
    done_ = true;
    return reply(0, "");
  }
  if (h.type != uint32_t(LazyMsg::task) || fds.size() != 1 || h.nr_ranges == 0 || h.nr_ranges > kLazyMaxRanges)
    return fail(make_error(Errc::invalid_argument, "read", "lazy-pages socket", "bad task message"));
  std::vector<uint64_t> pairs(h.nr_ranges * 2);
  CR_OK(sys::read_exact(conn_.get(), pairs.data(), pairs.size() * 8, "lazy-pages socket"));
  std::vector<Range> registered;
  for (size_t i = 0; i < h.nr_ranges; i++) {
    uint64_t a = pairs[2 * i], b = pairs[2 * i + 1];
    if (a % kPageSize || b % kPageSize || b <= a || (!registered.empty() && a < registered.back().end))
      return fail(make_error(Errc::invalid_argument, "read", "lazy-pages socket", "bad ranges"));
    registered.push_back({a, b});
  }
  auto s = std::make_unique<Space>();
  s->uffd = std::move(fds[0]);
  s->pid = h.pid;
  s->vpid = h.vpid;
  if (Status st = build_pending(*s, registered); !st) {
    Error e = st.error();
    e.within("serve pid " + std::to_string(h.pid));
    CR_OK(reply(e.err ? e.err : EINVAL, e.render()));
    return fail(std::move(e));
  }
  int fd = s->uffd.get();
  CR_OK(epoll_add(epoll_.get(), fd));
  stats_.tasks++;
  stats_.total_pages += s->pending.pages();
  LOG_INFO(log_, "Serving pid %d (vpid %u): %llu lazy pages in %zu areas", h.pid, h.vpid,
           (unsigned long long)s->pending.pages(), registered.size());
  spaces_[fd] = std::move(s);
  return reply(0, "");
}

void Server::close_space(int fd, const char* why) {
  auto it = spaces_.find(fd);
  if (it == spaces_.end()) return;
  Space& s = *it->second;
  stats_.dropped_pages += s.pending.pages();
  LOG_INFO(log_, "Done with %s: %s", s.name().c_str(), why);
  (void)::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
  // Closing drops the registrations: from here on the task's faults are the kernel's alone.
  spaces_.erase(it);
}

// Reads what the kernel reports: faults are queued, events applied at once (the task waits for them).
Status Server::read_events(Space& s) {
  uffd_msg msgs[64];
  for (;;) {
    ssize_t n = ::read(s.uffd.get(), msgs, sizeof msgs);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) return {};
      return fail(sys_error("read", "userfaultfd of " + s.name()));
    }
    if (n == 0) return {};
    for (size_t i = 0; i < size_t(n) / sizeof(uffd_msg); i++) {
      const uffd_msg& m = msgs[i];
      switch (m.event) {
        case UFFD_EVENT_PAGEFAULT: s.faults.push_back(m.arg.pagefault.address & ~(kPageSize - 1)); break;
        case UFFD_EVENT_FORK: {
          // The child's memory is the parent's now: what the parent still waits for, so does the child.
          auto child = std::make_unique<Space>();
          child->uffd.reset(int(m.arg.fork.ufd));
          child->vpid = s.vpid;
          child->pending = s.pending;
          int fd = child->uffd.get();
          int fl = ::fcntl(fd, F_GETFL);
          if (fl >= 0) (void)::fcntl(fd, F_SETFL, fl | O_NONBLOCK);
          CR_OK(epoll_add(epoll_.get(), fd));
          stats_.forks++;
          LOG_INFO(log_, "%s forked: serving the child's %llu pending pages", s.name().c_str(),
                   (unsigned long long)child->pending.pages());
          spaces_[fd] = std::move(child);
          break;
        }
        case UFFD_EVENT_REMAP:
          LOG_DEBUG(log_, "%s: mremap 0x%llx -> 0x%llx (%llu bytes)", s.name().c_str(), (unsigned long long)m.arg.remap.from,
                    (unsigned long long)m.arg.remap.to, (unsigned long long)m.arg.remap.len);
          s.pending.move(m.arg.remap.from, m.arg.remap.to, m.arg.remap.len);
          break;
        case UFFD_EVENT_REMOVE:
        case UFFD_EVENT_UNMAP: {
          // The pages are gone (or zero on next touch): never copy old data there.
          uint64_t before = s.pending.pages();
          s.pending.remove(m.arg.remove.start, m.arg.remove.end);
          LOG_DEBUG(log_, "%s: %s 0x%llx-0x%llx, %llu pending pages dropped", s.name().c_str(),
                    m.event == UFFD_EVENT_REMOVE ? "MADV_DONTNEED/REMOVE" : "munmap", (unsigned long long)m.arg.remove.start,
                    (unsigned long long)m.arg.remove.end, (unsigned long long)(before - s.pending.pages()));
          stats_.dropped_pages += before - s.pending.pages();
          break;
        }
        default: LOG_WARN(log_, "userfaultfd of %s: unexpected event %u", s.name().c_str(), unsigned(m.event));
      }
    }
  }
}

Result<bool> Server::copy(Space& s, uint64_t addr, uint64_t len, uint64_t src, bool fault) {
  if (src & kRemoteSrc) src = reinterpret_cast<uint64_t>(CR_TRY(fetch(s.vpid, src & ~kRemoteSrc, len / kPageSize)));
  while (len > 0) {
    uffdio_copy c{};
    c.dst = addr;
    c.src = src;
    c.len = len;
    c.mode = 0;  // wake whoever waits on these pages
    long done = 0;
    int err = 0;
    if (::ioctl(s.uffd.get(), UFFDIO_COPY, &c) == 0) {
      done = long(len);
    } else {
      err = errno;
      done = c.copy > 0 ? long(c.copy) : 0;
    }
    if (done > 0) {
      s.pending.remove(addr, addr + uint64_t(done));
      (fault ? stats_.fault_pages : stats_.pushed_pages) += uint64_t(done) / kPageSize;
      addr += uint64_t(done);
      src += uint64_t(done);
      len -= uint64_t(done);
      if (err == 0) continue;
    }
    switch (err) {
      case 0: break;
      case EAGAIN: return false;  // the address space is changing: its events come first
      case EEXIST: {
        // Already there (a racing copy, or a fork copied it): wake any waiter, go on after it.
        uffdio_range wr{addr, kPageSize};
        (void)::ioctl(s.uffd.get(), UFFDIO_WAKE, &wr);
        s.pending.remove(addr, addr + kPageSize);
        addr += kPageSize;
        src += kPageSize;
        len -= kPageSize;
        break;
      }
      case ENOENT:
        // One copy must stay within one area: a run of pages across two (adjacent areas the images
        // keep as one run, or an area split by mprotect since) goes page by page.
        if (len > kPageSize) {
          if (!CR_TRY(copy(s, addr, kPageSize, src, fault))) return false;
          addr += kPageSize;
          src += kPageSize;
          len -= kPageSize;
          break;
        }
        // The area went away before we read its event.
        LOG_DEBUG(log_, "%s: no area at 0x%llx any more: %llu pages dropped", s.name().c_str(), (unsigned long long)addr,
                  (unsigned long long)(len / kPageSize));
        stats_.dropped_pages += len / kPageSize;
        s.pending.remove(addr, addr + len);
        return true;
      case ESRCH:  // the task exited
        s.gone = true;
        return true;
      default:
        errno = err;
        return fail(sys_error("ioctl(UFFDIO_COPY)", s.name() + " at 0x" + [&] {
          char hex[32];
          snprintf(hex, sizeof hex, "%llx", (unsigned long long)addr);
          return std::string(hex);
        }()));
    }
  }
  return true;
}

Result<bool> Server::zero(Space& s, uint64_t addr) {
  uffdio_zeropage z{};
  z.range.start = addr;
  z.range.len = kPageSize;
  if (::ioctl(s.uffd.get(), UFFDIO_ZEROPAGE, &z) == 0) {
    stats_.zero_pages++;
    return true;
  }
  switch (errno) {
    case EAGAIN: return false;
    case EEXIST: {
      uffdio_range wr{addr, kPageSize};
      (void)::ioctl(s.uffd.get(), UFFDIO_WAKE, &wr);
      return true;
    }
    case ENOENT: return true;
    case ESRCH: s.gone = true; return true;
    default: return fail(sys_error("ioctl(UFFDIO_ZEROPAGE)", s.name()));
  }
}

Status Server::serve_faults(Space& s) {
  for (int rounds = 0; !s.faults.empty() && !s.gone;) {
    uint64_t addr = s.faults.front();
    bool ok;
    if (auto c = s.pending.at(addr, opts_.fault_pages)) {
      ok = CR_TRY(copy(s, c->start, c->len, c->src, true));
      if (ok) stats_.faults++;
    } else {
      ok = CR_TRY(zero(s, addr));
    }
    if (ok) {
      s.faults.pop_front();
      continue;
    }
    if (++rounds > 100000)
      return fail(make_error(Errc::timeout, "serve", s.name(), "the address space keeps changing"));
    CR_OK(read_events(s));
  }
  return {};
}

Status Server::push_some() {
  if (spaces_.empty()) return {};
  // Tasks forked after the restore come last: most exec soon, and pages pushed (or fetched from the
  // source) for them would be thrown away. Their faults are served all along.
  bool originals_wait = false;
  for (const auto& [fd, s] : spaces_) originals_wait |= s->pid && !s->gone && !s->pending.empty();
  auto it = spaces_.upper_bound(next_push_);
  for (size_t tried = 0; tried < spaces_.size(); tried++, ++it) {
    if (it == spaces_.end()) it = spaces_.begin();
    if (!originals_wait || it->second->pid) break;
  }
  if (it == spaces_.end()) it = spaces_.begin();
  next_push_ = it->first;
  Space& s = *it->second;
  if (s.gone) return {};
  if (auto c = s.pending.first(opts_.push_batch_pages))
    if (!CR_TRY(copy(s, c->start, c->len, c->src, false))) CR_OK(read_events(s));
  return serve_faults(s);
}

Result<LazyServerStats> Server::run(UniqueFd listener) {
  epoll_.reset(::epoll_create1(EPOLL_CLOEXEC));
  if (!epoll_) return fail(sys_error("epoll_create1", "lazy-pages"));
  CR_OK(epoll_add(epoll_.get(), listener.get()));
  auto started = Clock::now();
  auto last_push = Clock::now() - opts_.push_pause;
  for (;;) {
    // Finished spaces go first: their registrations end, and so does the daemon once all are done.
    std::vector<int> finished;
    for (auto& [fd, s] : spaces_)
      if (s->gone || (s->pending.empty() && s->faults.empty())) finished.push_back(fd);
    for (int fd : finished) {
      Space& s = *spaces_.at(fd);
      if (!s.gone) {
        // A fork or fault read now is still handled.
        CR_OK(read_events(s));
        CR_OK(serve_faults(s));
      }
      if (!s.gone && !s.pending.empty()) continue;
      close_space(fd, s.gone ? "its task exited" : "every page delivered");
    }
    if (spaces_.empty() && (done_ || eof_) && conn_) {
      if (done_) return stats_;
      return fail(make_error(Errc::aborted, "serve", "lazy pages", "the restore ended before it resumed the tree")
                      .with_hint("see the restore's log"));
    }
    bool pending = false;
    for (auto& [fd, s] : spaces_) pending |= !s->pending.empty();
    int timeout = -1;
    auto now = Clock::now();
    if (pending) {
      auto due = last_push + opts_.push_pause;
      timeout = due <= now ? 0 : int(std::chrono::duration_cast<std::chrono::milliseconds>(due - now).count()) + 1;
    }
    if (!conn_) {
      auto left = started + opts_.connect_timeout - now;
      if (left <= Clock::duration::zero())
        return fail(make_error(Errc::timeout, "wait for", "a restore", "no restore connected to the lazy-pages socket in time")
                        .with_hint("run `crshim restore --lazy-pages` with the same images and work dir; --timeout sets the wait"));
      timeout = int(std::chrono::duration_cast<std::chrono::milliseconds>(left).count()) + 1;
    }
    epoll_event evs[32];
    int n = ::epoll_wait(epoll_.get(), evs, 32, timeout);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail(sys_error("epoll_wait", "lazy-pages"));
    }
    for (int i = 0; i < n; i++) {
      int fd = evs[i].data.fd;
      if (fd == listener.get()) {
        UniqueFd c(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
        if (!c) continue;
        if (conn_) {
          LOG_WARN(log_, "A second restore connected: refused (one restore per daemon)");
          continue;
        }
        conn_ = std::move(c);
        CR_OK(epoll_add(epoll_.get(), conn_.get()));
        LOG_INFO(log_, "A restore connected");
      } else if (conn_ && fd == conn_.get()) {
        CR_OK(on_connection());
        if (eof_) {
          (void)::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
          if (!done_) LOG_WARN(log_, "The restore went away before it resumed the tree");
        }
      } else if (auto it = spaces_.find(fd); it != spaces_.end()) {
        Space& s = *it->second;
        CR_OK(read_events(s));
        CR_OK(serve_faults(s));
      }
    }
    // Faults first: the background push only runs when nothing waits.
    if (n == 0 || opts_.push_pause.count() == 0) {
      if (Clock::now() >= last_push + opts_.push_pause) {
        CR_OK(push_some());
        last_push = Clock::now();
      }
    }
  }
}

}  // namespace

Result<UniqueFd> lazy_listen(int work_dir) {
  std::string path = "/proc/self/fd/" + std::to_string(work_dir) + "/" + kLazySocketName;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path)
    return fail(make_error(Errc::invalid_argument, "bind", path, "socket path too long"));
  memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  UniqueFd sock(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!sock) return fail(sys_error("socket", "lazy-pages socket"));
  if (::unlinkat(work_dir, kLazySocketName, 0) < 0 && errno != ENOENT)
    return fail(sys_error("unlink", kLazySocketName));
  if (::bind(sock.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0)
    return fail(sys_error("bind", std::string(kLazySocketName) + " in the work dir"));
  if (::listen(sock.get(), 4) < 0) return fail(sys_error("listen", kLazySocketName));
  return sock;
}

Result<LazyServerStats> serve_lazy_pages(UniqueFd listener, const LazyServerOptions& opts, Logger& log) {
  Server server(opts, log);
  return server.run(std::move(listener));
}

}  // namespace crshim::mem
