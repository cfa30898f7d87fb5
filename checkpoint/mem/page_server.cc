#include "checkpoint/mem/page_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "checkpoint/base/fault.h"
#include "checkpoint/image/catalog.h"
#include "checkpoint/mem/page_protocol.h"
#include "checkpoint/mem/parent_pages.h"

namespace crshim::mem {

namespace {

constexpr size_t kMaxIov = 1024;        // IOV_MAX
constexpr size_t kBuffer = 1u << 20;    // page data is received in pieces of this size
constexpr uint64_t kMaxEntryPages = 1ull << 31;

std::string endpoint(const sockaddr* sa) {
  char host[INET6_ADDRSTRLEN] = "?";
  uint16_t port = 0;
  if (sa->sa_family == AF_INET) {
    auto* in = reinterpret_cast<const sockaddr_in*>(sa);
    inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
    port = ntohs(in->sin_port);
    return std::string(host) + ":" + std::to_string(port);
  }
  auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
  inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
  port = ntohs(in6->sin6_port);
  return "[" + std::string(host) + "]:" + std::to_string(port);
}

void set_nodelay(int sk) {
  int one = 1;
  // Requests wait for answers (OPEN2, CLOSE): nothing may sit in Nagle's buffer.
  (void)::setsockopt(sk, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

// Receives until `size` bytes are in or the peer closes: the bytes received, or -1 with errno.
ssize_t recv_full(int sk, void* buf, size_t size) {
  size_t done = 0;
  while (done < size) {
    ssize_t n = ::recv(sk, static_cast<char*>(buf) + done, size - done, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return -1;
    if (n == 0) break;
    done += size_t(n);
  }
  return ssize_t(done);
}

Status write_exact(int sk, const void* buf, size_t size, const std::string& peer) {
  iovec iov{const_cast<void*>(buf), size};
  return send_iov(sk, &iov, 1, "page server connection " + peer);
}

Error malformed(const std::string& peer, const std::string& what) {
  return make_error(Errc::corrupt_image, "receive", "page server connection " + peer, what)
      .with_hint("the dumper speaks another protocol, or the stream is damaged");
}

}  // namespace

Result<bool> recv_exact(int sk, void* buf, size_t size, bool eof_ok, const std::string& what) {
  ssize_t got = recv_full(sk, buf, size);
  if (got < 0) return fail(sys_error("recv", what));
  if (got == 0 && eof_ok) return false;
  if (size_t(got) < size) return fail(make_error(Errc::system, "recv", what, "the connection was closed mid-message"));
  return true;
}

Status send_iov(int sk, iovec* iov, size_t count, const std::string& what) {
  while (count > 0) {
    msghdr mh{};
    mh.msg_iov = iov;
    mh.msg_iovlen = std::min(kMaxIov, count);
    ssize_t n = ::sendmsg(sk, &mh, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail(sys_error("send", what));
    // Skip what went out; a partly sent piece is resumed where it stopped.
    size_t left = size_t(n);
    while (count > 0 && left >= iov->iov_len) {
      left -= iov->iov_len;
      iov++;
      count--;
    }
    if (count > 0) {
      iov->iov_base = static_cast<char*>(iov->iov_base) + left;
      iov->iov_len -= left;
    }
  }
  return {};
}

// ---- the dump side ----

Result<Connection> connect_tcp(const std::string& address, uint16_t port, const std::string& what, const std::string& hint) {
  std::string where = address + " port " + std::to_string(port);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* res = nullptr;
  std::string service = std::to_string(port);
  if (int rc = ::getaddrinfo(address.c_str(), service.c_str(), &hints, &res); rc != 0)
    return fail(make_error(Errc::not_found, "resolve", what + " " + where, gai_strerror(rc))
                    .with_hint("give --address as an IP address or a resolvable host name"));
  Error last = make_error(Errc::not_found, "connect", what + " " + where, "no address");
  for (addrinfo* ai = res; ai; ai = ai->ai_next) {
    UniqueFd sk(::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol));
    if (!sk.valid()) {
      last = sys_error("socket", what + " " + where);
      continue;
    }
    int rc;
    do rc = ::connect(sk.get(), ai->ai_addr, ai->ai_addrlen);
    while (rc < 0 && errno == EINTR);
    if (rc < 0) {
      last = sys_error("connect", what + " " + endpoint(ai->ai_addr)).with_hint(hint);
      continue;
    }
    std::string peer = endpoint(ai->ai_addr);
    ::freeaddrinfo(res);
    set_nodelay(sk.get());
    return Connection{std::move(sk), std::move(peer)};
  }
  ::freeaddrinfo(res);
  return fail(last);
}

Result<std::unique_ptr<PageServerClient>> PageServerClient::connect(const std::string& address, uint16_t port) {
  auto c = CR_TRY(connect_tcp(address, port, "page server",
                              "start `crshim page-server` (or `criu page-server`) there first, with the same --port"));
  return std::unique_ptr<PageServerClient>(new PageServerClient(std::move(c.sock), std::move(c.peer), false));
}

std::unique_ptr<PageServerClient> PageServerClient::adopt(UniqueFd sock) {
  std::string peer = "fd " + std::to_string(sock.get());
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getpeername(sock.get(), reinterpret_cast<sockaddr*>(&ss), &len) == 0 &&
      (ss.ss_family == AF_INET || ss.ss_family == AF_INET6))
    peer = endpoint(reinterpret_cast<sockaddr*>(&ss));
  set_nodelay(sock.get());
  return std::unique_ptr<PageServerClient>(new PageServerClient(std::move(sock), std::move(peer), true));
}

Error PageServerClient::net_error(const char* op) const {
  return sys_error(op, "page server " + peer_)
      .with_hint("the page server went away or the network failed; nothing was changed in the dumped tree: "
                 "start the page server again and repeat the dump");
}

Status PageServerClient::send_all(std::vector<iovec>& iov) {
  Status st = send_iov(sk_.get(), iov.data(), iov.size(), "page server " + peer_);
  if (st) return {};
  errno = st.error().err;
  return fail(net_error("send"));
}

Status PageServerClient::recv_exact(void* buf, size_t size) {
  ssize_t got = recv_full(sk_.get(), buf, size);
  if (got >= 0 && size_t(got) < size) errno = ECONNRESET;  // closed early
  if (got < 0 || size_t(got) < size) return fail(net_error("recv"));
  return {};
}

Result<bool> PageServerClient::open(Owner owner, uint64_t id) {
  CR_OK(close());
  ps::Iov req;
  req.cmd = ps::kOpen2;
  req.dst_id = ps::encode_dst(owner == Owner::process ? ps::Target::process : ps::Target::shmem, id);
  std::vector<iovec> iov{{&req, sizeof req}};
  CR_OK(send_all(iov));
  char has_parent = 0;
  CR_OK(recv_exact(&has_parent, 1));
  open_ = true;
  owner_ = owner;
  id_ = id;
  dst_ = req.dst_id;
  return has_parent != 0;
}

Status PageServerClient::write(const std::vector<PageEntry>& entries, const char* data) {
  if (!open_) return fail(make_error(Errc::internal, "send", "page server " + peer_, "no pagemap open"));
  std::vector<ps::Iov> heads(entries.size());
  std::vector<iovec> iov;
  iov.reserve(entries.size() * 2);
  std::vector<Range>* covered = owner_ == Owner::process ? &coverage_[id_] : nullptr;
  for (size_t i = 0; i < entries.size(); i++) {
    const PageEntry& e = entries[i];
    if (e.nr_pages == 0 || e.nr_pages > kMaxEntryPages)
      return fail(make_error(Errc::internal, "send", "page server " + peer_, "entry of " + std::to_string(e.nr_pages) + " pages"));
    heads[i].cmd = ps::encode_cmd(ps::kAddF, e.flags);
    heads[i].nr_pages = uint32_t(e.nr_pages);
    heads[i].vaddr = e.vaddr;
    heads[i].dst_id = dst_;
    iov.push_back({&heads[i], sizeof heads[i]});
    if (e.flags & ps::kPePresent) {
      size_t len = e.nr_pages * kPageSize;
      iov.push_back({const_cast<char*>(data), len});
      data += len;
    }
    if (covered) {
      uint64_t end = e.vaddr + e.nr_pages * kPageSize;
      if (!covered->empty() && covered->back().end == e.vaddr) covered->back().end = end;
      else covered->push_back({e.vaddr, end});
    }
  }
  return send_all(iov);
}

Status PageServerClient::close() {
  open_ = false;  // nothing on the wire: the next OPEN2 or the final CLOSE ends a pagemap
  return {};
}

Status PageServerClient::finish() {
  CR_OK(close());
  CR_OK(fault_point("dump:page-server-close"));
  ps::Iov req;
  req.cmd = force_close_ ? ps::kForceClose : ps::kClose;
  std::vector<iovec> iov{{&req, sizeof req}};
  CR_OK(send_all(iov));
  int32_t status = -1;
  CR_OK(recv_exact(&status, sizeof status));
  if (status != 0)
    return fail(make_error(Errc::system, "finish", "page server " + peer_, "it answered status " + std::to_string(status))
                    .with_hint("see the page server's log"));
  return {};
}

// ---- the receiving side ----

Result<PageServer> PageServer::listen(const std::string& address, uint16_t port) {
  std::string where = (address.empty() ? std::string("*") : address) + " port " + std::to_string(port);
  std::vector<std::pair<sockaddr_storage, socklen_t>> candidates;
  if (address.empty()) {
    // Every address: an IPv6 socket that takes IPv4 too, or plain IPv4 where IPv6 is off.
    sockaddr_storage ss{};
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&ss);
    in6->sin6_family = AF_INET6;
    in6->sin6_addr = in6addr_any;
    in6->sin6_port = htons(port);
    candidates.push_back({ss, sizeof(sockaddr_in6)});
    sockaddr_storage s4{};
    auto* in4 = reinterpret_cast<sockaddr_in*>(&s4);
    in4->sin_family = AF_INET;
    in4->sin_addr.s_addr = htonl(INADDR_ANY);
    in4->sin_port = htons(port);
    candidates.push_back({s4, sizeof(sockaddr_in)});
  } else {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    addrinfo* res = nullptr;
    std::string service = std::to_string(port);
    if (int rc = ::getaddrinfo(address.c_str(), service.c_str(), &hints, &res); rc != 0)
      return fail(make_error(Errc::not_found, "resolve", "page server address " + where, gai_strerror(rc))
                      .with_hint("give --address as an IP address of this host"));
    for (addrinfo* ai = res; ai; ai = ai->ai_next) {
      sockaddr_storage ss{};
      memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
      candidates.push_back({ss, ai->ai_addrlen});
    }
    ::freeaddrinfo(res);
  }
  Error last = make_error(Errc::not_found, "listen", "page server " + where, "no address");
  for (auto& [ss, len] : candidates) {
    UniqueFd sk(::socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!sk.valid()) {
      last = sys_error("socket", "page server " + where);
      continue;
    }
    int one = 1, zero = 0;
    (void)::setsockopt(sk.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (ss.ss_family == AF_INET6 && address.empty())
      (void)::setsockopt(sk.get(), IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
    if (::bind(sk.get(), reinterpret_cast<sockaddr*>(&ss), len) < 0) {
      last = sys_error("bind", "page server " + endpoint(reinterpret_cast<sockaddr*>(&ss)))
                 .with_hint(errno == EADDRINUSE ? "another server uses that port: pick another --port, or 0"
                                                : "give an address of this host");
      continue;
    }
    if (::listen(sk.get(), 1) < 0) {
      last = sys_error("listen", "page server " + where);
      continue;
    }
    sockaddr_storage bound{};
    socklen_t blen = sizeof bound;
    if (::getsockname(sk.get(), reinterpret_cast<sockaddr*>(&bound), &blen) < 0)
      return fail(sys_error("getsockname", "page server " + where));
    uint16_t got = ntohs(bound.ss_family == AF_INET ? reinterpret_cast<sockaddr_in*>(&bound)->sin_port
                                                    : reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port);
    return PageServer(std::move(sk), got);
  }
  return fail(last);
}

Result<Connection> PageServer::accept(int cancel_fd) {
  pollfd fds[2] = {{sk_.get(), POLLIN, 0}, {cancel_fd, POLLIN, 0}};
  for (;;) {
    int n = ::poll(fds, cancel_fd >= 0 ? 2 : 1, -1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail(sys_error("poll", "page server port " + std::to_string(port_)));
    if (cancel_fd >= 0 && fds[1].revents)
      return fail(make_error(Errc::aborted, "accept", "page server port " + std::to_string(port_), "cancelled"));
    if (fds[0].revents) break;
  }
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  int conn;
  do conn = ::accept4(sk_.get(), reinterpret_cast<sockaddr*>(&ss), &len, SOCK_CLOEXEC);
  while (conn < 0 && errno == EINTR);
  if (conn < 0) return fail(sys_error("accept", "page server port " + std::to_string(port_)));
  sk_.reset();  // one peer per server, as CRIU's
  set_nodelay(conn);
  return Connection{UniqueFd(conn), endpoint(reinterpret_cast<sockaddr*>(&ss))};
}

Status PageServer::serve_one(int images_dir, Logger& log) {
  auto c = CR_TRY(accept());
  LOG_INFO(log, "Accepted a dumper from %s", c.peer.c_str());
  return serve(c.sock.get(), images_dir, log, c.peer, true);
}

namespace {

// One connection's state: the pagemap being written and the parent chain PARENT entries refer to.
class Receiver {
 public:
  Receiver(int sk, int dir, Logger& log, std::string peer)
      : sk_(sk), dir_(dir), log_(log), peer_(std::move(peer)), sink_(dir, next_pages_id_), chain_(dir) {}

  // Serves requests until the dumper's final one; then true. False: EOF before it.
  Result<bool> run(bool wait_eof);
  // Removes every image this connection wrote.
  void remove_written() {
    (void)sink_.close();
    for (const auto& name : sink_.created()) ::unlinkat(dir_, name.c_str(), 0);
  }

 private:
  Status open(const ps::Iov& req, bool answer);
  Status add(const ps::Iov& req, uint32_t flags);
  bool parent_has(const std::string& name) const {
    struct stat st;
    return ::fstatat(dir_, ("parent/" + name).c_str(), &st, 0) == 0;
  }

  int sk_, dir_;
  Logger& log_;
  std::string peer_;
  uint32_t next_pages_id_ = ps::kServerPagesIdBase;
  ImagePageSink sink_;
  ParentChain chain_;
  std::optional<ps::Dst> dst_;
  uint64_t dst_id_ = 0;
  bool has_parent_ = false;
  uint64_t pages_ = 0, entries_ = 0;
  std::unique_ptr<char[]> buf_;
};

Status Receiver::open(const ps::Iov& req, bool answer) {
  auto dst = ps::decode_dst(req.dst_id);
  if (!dst) return fail(malformed(peer_, "unknown pagemap type " + std::to_string(req.dst_id & ps::kTypeMask)));
  if (dst->target == ps::Target::process && dst->id > UINT32_MAX)
    return fail(malformed(peer_, "pid " + std::to_string(dst->id) + " out of range"));
  auto owner = dst->target == ps::Target::process ? PageSink::Owner::process : PageSink::Owner::shmem;
  has_parent_ = CR_TRY(sink_.open(owner, dst->id));
  dst_ = dst;
  dst_id_ = req.dst_id;
  LOG_INFO(log_, "Receiving %s (parent: %s)", sink_.current().c_str(), has_parent_ ? "yes" : "no");
  if (!answer) return {};
  char reply = has_parent_ ? 1 : 0;
  return write_exact(sk_, &reply, 1, peer_);
}

Status Receiver::add(const ps::Iov& req, uint32_t flags) {
  if (!dst_ || req.dst_id != dst_id_)
    return fail(malformed(peer_, "pages for a pagemap that is not open (dst_id " + std::to_string(req.dst_id) + ")"));
  if (req.vaddr % kPageSize || req.nr_pages == 0 || req.vaddr + uint64_t(req.nr_pages) * kPageSize < req.vaddr)
    return fail(malformed(peer_, "bad entry " + std::to_string(req.vaddr) + "+" + std::to_string(req.nr_pages)));
  if ((flags & ps::kPeParent) && !(flags & ps::kPePresent)) {
    // As a local incremental dump: every page left to the parent must be in the parent chain.
    if (!has_parent_)
      return fail(malformed(peer_, "pages left to parent images, but " + sink_.current() + " has none here")
                      .with_hint("start the page server with --prev-images-dir naming the previous dump's directory"));
    if (dst_->target == ps::Target::process) {
      auto runs = chain_.resolve(uint32_t(dst_->id), req.vaddr, req.nr_pages);
      if (!runs) return fail(runs.error().within("pages left to the parent of " + sink_.current()));
    }
  }
  CR_OK(sink_.entry({req.vaddr, req.nr_pages, flags}));
  entries_++;
  if (!(flags & ps::kPePresent)) return {};
  if (!buf_) buf_.reset(new char[kBuffer]);
  for (uint64_t left = uint64_t(req.nr_pages) * kPageSize; left > 0;) {
    size_t n = size_t(std::min<uint64_t>(left, kBuffer));
    CR_OK(recv_exact(sk_, buf_.get(), n, false, "page server connection " + peer_));
    CR_OK(sink_.data(buf_.get(), n));
    left -= n;
  }
  pages_ += req.nr_pages;
  return fault_point("page-server:pages");
}

Result<bool> Receiver::run(bool wait_eof) {
  for (;;) {
    unsigned char raw[ps::kIovSize];
    if (!CR_TRY(recv_exact(sk_, raw, sizeof raw, true, "page server connection " + peer_))) return false;
    ps::Iov req = ps::decode(raw);
    uint32_t cmd = ps::cmd_of(req.cmd);
    switch (cmd) {
      case ps::kOpen:
      case ps::kOpen2:
        CR_OK(open(req, cmd == ps::kOpen2));
        break;
      case ps::kParent: {
        auto dst = ps::decode_dst(req.dst_id);
        if (!dst) return fail(malformed(peer_, "unknown pagemap type " + std::to_string(req.dst_id & ps::kTypeMask)));
        std::string name = dst->target == ps::Target::process ? image::pagemap_file(uint32_t(dst->id))
                                                              : image::pagemap_shmem_file(dst->id);
        int32_t reply = parent_has(name) ? 1 : 0;
        CR_OK(write_exact(sk_, &reply, sizeof reply, peer_));
        break;
      }
      case ps::kAdd: CR_OK(add(req, ps::kPePresent)); break;
      case ps::kHole: CR_OK(add(req, ps::kPeParent)); break;
      case ps::kAddF: CR_OK(add(req, ps::flags_of(req.cmd))); break;
      case ps::kClose:
      case ps::kForceClose: {
        CR_OK(sink_.close());
        CR_OK(fault_point("page-server:close"));
        int32_t status = 0;
        CR_OK(write_exact(sk_, &status, sizeof status, peer_));
        LOG_INFO(log_, "The dump is complete: %llu entries, %llu pages", (unsigned long long)entries_,
                 (unsigned long long)pages_);
        if (wait_eof && cmd == ps::kClose) {
          // The dumper closes first, so that the TIME_WAIT is on its side.
          char c;
          ssize_t n;
          do n = ::recv(sk_, &c, 1, 0);
          while (n < 0 && errno == EINTR);
          if (n > 0) return fail(malformed(peer_, "data after the final request"));
        }
        return true;
      }
      case ps::kGet:
        return fail(make_error(Errc::unsupported, "serve", "page server connection " + peer_,
                               "asked for pages (lazy restore); this server only receives dumps"));
      default:
        return fail(malformed(peer_, "unknown command " + std::to_string(req.cmd)));
    }
  }
}

}  // namespace

Status PageServer::serve(int conn, int images_dir, Logger& log, const std::string& peer, bool wait_eof) {
  Receiver s(conn, images_dir, log, peer);
  auto done = s.run(wait_eof);
  if (done && *done) return {};
  s.remove_written();
  if (!done) return fail(done.error());
  return fail(make_error(Errc::system, "receive", "page server connection " + peer,
                         "the dumper closed the connection before the dump was complete")
                  .with_hint("the dump failed on the other side; its log says why; the images written here were removed"));
}

}  // namespace crshim::mem
