#include "checkpoint/files/unix_diag.h"

#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include "checkpoint/base/sys.h"
#include "checkpoint/base/unique_fd.h"
#include "checkpoint/files/sock_diag.h"

namespace crshim::files::unixsk {

namespace {

using sockdiag::bad_reply;
using sockdiag::load;

Status parse_attrs(const uint8_t* p, size_t len, SockDiag& d, const std::string& what) {
  while (len >= sizeof(nlattr)) {
    auto a = load<nlattr>(p);
    if (a.nla_len < sizeof(nlattr) || a.nla_len > len) return fail(bad_reply(what, "attribute length"));
    const uint8_t* data = p + NLA_HDRLEN;
    size_t dlen = a.nla_len - NLA_HDRLEN;
    switch (a.nla_type & NLA_TYPE_MASK) {
      case UNIX_DIAG_NAME:
        d.name.assign(reinterpret_cast<const char*>(data), dlen);
        break;
      case UNIX_DIAG_VFS:
        if (dlen < sizeof(unix_diag_vfs)) return fail(bad_reply(what, "short UNIX_DIAG_VFS"));
        d.vfs_ino = load<unix_diag_vfs>(data).udiag_vfs_ino;
        d.vfs_dev = load<unix_diag_vfs>(data).udiag_vfs_dev;
        break;
      case UNIX_DIAG_PEER:
        if (dlen < 4) return fail(bad_reply(what, "short UNIX_DIAG_PEER"));
        d.peer = load<uint32_t>(data);
        break;
      case UNIX_DIAG_ICONS:
        for (size_t i = 0; i + 4 <= dlen; i += 4) d.icons.push_back(load<uint32_t>(data + i));
        break;
      case UNIX_DIAG_RQLEN:
        if (dlen < sizeof(unix_diag_rqlen)) return fail(bad_reply(what, "short UNIX_DIAG_RQLEN"));
        d.rqueue = load<unix_diag_rqlen>(data).udiag_rqueue;
        d.wqueue = load<unix_diag_rqlen>(data).udiag_wqueue;
        break;
      case UNIX_DIAG_SHUTDOWN:
        if (dlen < 1) return fail(bad_reply(what, "short UNIX_DIAG_SHUTDOWN"));
        d.shutdown = data[0];
        break;
      default:
        break;  // newer attributes we do not use
    }
    size_t step = NLA_ALIGN(a.nla_len);
    if (step >= len) break;
    p += step;
    len -= step;
  }
  return {};
}

// Sends one request and collects the replies until NLMSG_DONE (dumps) or the first reply (exact lookups).
Result<std::vector<SockDiag>> query(const unix_diag_req& req, bool dump, const std::string& what, int netns_fd) {
  std::vector<SockDiag> out;
  for (const auto& buf : CR_TRY(sockdiag::request(&req, sizeof req, dump, what, netns_fd))) {
    auto part = CR_TRY(parse_diag(std::span<const uint8_t>(buf.data(), buf.size()), what));
    for (auto& d : part) out.push_back(std::move(d));
  }
  return out;
}

}  // namespace

Result<std::vector<SockDiag>> parse_diag(std::span<const uint8_t> buf, const std::string& what) {
  std::vector<SockDiag> out;
  const uint8_t* p = buf.data();
  size_t len = buf.size();
  while (len >= sizeof(nlmsghdr)) {
    auto h = load<nlmsghdr>(p);
    if (h.nlmsg_len < sizeof(nlmsghdr) || h.nlmsg_len > len) return fail(bad_reply(what, "message length"));
    if (h.nlmsg_type == NLMSG_DONE) break;
    if (h.nlmsg_type == NLMSG_ERROR) {
      if (h.nlmsg_len < NLMSG_LENGTH(sizeof(nlmsgerr))) return fail(bad_reply(what, "short error"));
      int err = load<nlmsgerr>(p + NLMSG_HDRLEN).error;
      if (err != 0) return fail(errno_error(-err, "sock_diag", what));
    } else if (h.nlmsg_type == SOCK_DIAG_BY_FAMILY) {
      if (h.nlmsg_len < NLMSG_LENGTH(sizeof(unix_diag_msg))) return fail(bad_reply(what, "short unix_diag_msg"));
      auto m = load<unix_diag_msg>(p + NLMSG_HDRLEN);
      SockDiag d;
      d.ino = m.udiag_ino;
      d.type = m.udiag_type;
      d.state = m.udiag_state;
      size_t head = NLMSG_LENGTH(NLMSG_ALIGN(sizeof(unix_diag_msg)));
      if (h.nlmsg_len > head) CR_OK(parse_attrs(p + head, h.nlmsg_len - head, d, what));
      out.push_back(std::move(d));
    }
    size_t step = NLMSG_ALIGN(h.nlmsg_len);
    if (step >= len) break;
    p += step;
    len -= step;
  }
  return out;
}

namespace {

constexpr uint32_t kShow =
    UDIAG_SHOW_NAME | UDIAG_SHOW_VFS | UDIAG_SHOW_PEER | UDIAG_SHOW_ICONS | UDIAG_SHOW_RQLEN;

}  // namespace

Result<SockDiag> diag_by_ino(uint32_t ino, int netns_fd) {
  std::string what = "unix socket " + std::to_string(ino);
  unix_diag_req req{};
  req.sdiag_family = AF_UNIX;
  req.udiag_states = ~0u;
  req.udiag_ino = ino;
  req.udiag_show = kShow;
  // No cookie: the lookup goes by inode alone.
  req.udiag_cookie[0] = req.udiag_cookie[1] = ~0u;
  auto got = query(req, false, what, netns_fd);
  if (!got) {
    if (got.error().err == ENOENT)
      return fail(make_error(Errc::not_found, "sock_diag", what, "no such unix socket in this network namespace"));
    return fail(got.error());
  }
  for (auto& d : *got)
    if (d.ino == ino) return std::move(d);
  return fail(make_error(Errc::not_found, "sock_diag", what, "no such unix socket in this network namespace"));
}

Result<std::vector<SockDiag>> diag_all(int netns_fd) {
  unix_diag_req req{};
  req.sdiag_family = AF_UNIX;
  req.udiag_states = ~0u;
  req.udiag_show = kShow;
  return query(req, true, "unix sockets", netns_fd);
}

namespace {

// One peek at the current peek offset: returns the byte count (the datagram's full length with
// MSG_TRUNC), -1 with errno set when the queue is exhausted or on error.
ssize_t peek_once(int fd, void* buf, size_t size, int extra_flags, bool& passed_fds, bool& truncated_ctl) {
  alignas(cmsghdr) char ctl[4096];
  iovec iov{buf, size};
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = ctl;
  mh.msg_controllen = sizeof ctl;
  ssize_t n;
  do n = ::recvmsg(fd, &mh, MSG_PEEK | MSG_DONTWAIT | MSG_CMSG_CLOEXEC | extra_flags);
  while (n < 0 && errno == EINTR);
  if (n < 0) return n;
  if (!sys::take_passed_fds(mh).empty()) passed_fds = true;  // closed right away
  if (mh.msg_flags & MSG_CTRUNC) truncated_ctl = true;
  return n;
}

}  // namespace

Result<std::vector<std::string>> peek_queue(int fd, int type, const std::string& what) {
  int orig = -1;
  socklen_t len = sizeof orig;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEEK_OFF, &orig, &len) < 0) return fail(sys_error("getsockopt(SO_PEEK_OFF)", what));
  int zero = 0;
  if (::setsockopt(fd, SOL_SOCKET, SO_PEEK_OFF, &zero, sizeof zero) < 0)
    return fail(sys_error("setsockopt(SO_PEEK_OFF)", what));
  std::vector<std::string> out;
  bool passed_fds = false, truncated_ctl = false;
  Status st;
  // Each peek moves the socket's peek offset past what it returned, so the next one sees what follows.
  if (type == SOCK_STREAM) {
    std::string chunk(256 * 1024, '\0');
    for (;;) {
      ssize_t n = peek_once(fd, chunk.data(), chunk.size(), 0, passed_fds, truncated_ctl);
      if (n < 0) {
        if (errno != EAGAIN) st = fail(sys_error("recvmsg(MSG_PEEK)", what));
        break;
      }
      if (n == 0) break;  // end of stream after the peer's shutdown
      out.emplace_back(chunk.data(), size_t(n));
      if (passed_fds || truncated_ctl) break;
    }
  } else {
    // A seqpacket socket whose peer shut down reports the end of the queue as a zero-length read,
    // like a zero-length record: the byte count (SIOCINQ counts the whole queue for seqpacket)
    // tells them apart, except for zero-length records at the very end, which are lost.
    int inq = 0;
    if (type == SOCK_SEQPACKET && ::ioctl(fd, SIOCINQ, &inq) < 0) st = fail(sys_error("ioctl(SIOCINQ)", what));
    uint64_t peeked = 0;
    while (st) {
      // First the datagram's length (a zero-byte peek does not move the offset), then its bytes.
      // A zero-length datagram the task itself already peeked is skipped by the kernel at offset 0.
      ssize_t size = peek_once(fd, nullptr, 0, MSG_TRUNC, passed_fds, truncated_ctl);
      if (size < 0) {
        if (errno != EAGAIN) st = fail(sys_error("recvmsg(MSG_PEEK|MSG_TRUNC)", what));
        break;
      }
      if (passed_fds || truncated_ctl) break;
      if (size == 0 && type == SOCK_SEQPACKET && peeked >= uint64_t(inq)) break;
      peeked += uint64_t(size);
      std::string pkt(size_t(size), '\0');
      ssize_t n = peek_once(fd, pkt.data(), pkt.size(), 0, passed_fds, truncated_ctl);
      if (n < 0) {
        st = fail(sys_error("recvmsg(MSG_PEEK)", what));
        break;
      }
      if (n != size) {
        st = fail(make_error(Errc::internal, "recvmsg(MSG_PEEK)", what,
                             "datagram of " + std::to_string(size) + " bytes peeked as " + std::to_string(n)));
        break;
      }
      out.push_back(std::move(pkt));
      if (out.size() > 1000000) {
        st = fail(make_error(Errc::internal, "recvmsg(MSG_PEEK)", what, "the queue does not end"));
        break;
      }
    }
  }
  // The task's own peek offset comes back whatever happened.
  if (::setsockopt(fd, SOL_SOCKET, SO_PEEK_OFF, &orig, sizeof orig) < 0 && st)
    st = fail(sys_error("setsockopt(SO_PEEK_OFF)", what));
  if (!st) return fail(st.error());
  if (passed_fds)
    return fail(make_error(Errc::unsupported, "dump", what, "descriptors in flight (SCM_RIGHTS) are queued on the socket")
                    .with_hint("let the receiver take the passed descriptors before checkpointing"));
  if (truncated_ctl)
    return fail(make_error(Errc::unsupported, "dump", what, "queued control data is too large to inspect"));
  return out;
}

}  // namespace crshim::files::unixsk
