// Restore of IPv4/IPv6 TCP and UDP sockets: options, bind, listen or connect; established TCP
// connections are rebuilt in repair mode from tcp-stream-<ino>.img (sequence numbers, TCP options,
// windows, queued data) and then leave repair mode without a handshake.
#include <arpa/inet.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cstring>

#include "checkpoint/files/anon_common.h"
#include "checkpoint/files/inet.h"
#include "sk-inet.pb.h"
#include "tcp-stream.pb.h"

namespace crshim::files::inet {

namespace {

constexpr const char* kPendingRepair = "inet:repair";  // socket inode -> unsent data to send after repair

Status set_int(int fd, int level, int opt, int v, const char* name, const std::string& what) {
  if (::setsockopt(fd, level, opt, &v, sizeof v) < 0) return fail(sys_error(std::string("setsockopt(") + name + ")", what));
  return {};
}

// getsockopt reports buffer sizes doubled; the forced variant (root) also passes the sysctl limits.
Status set_buf(int fd, int opt, int force_opt, uint32_t want, const char* name, const std::string& what) {
  int half = int(want / 2);
  if (::setsockopt(fd, SOL_SOCKET, force_opt, &half, sizeof half) == 0) return {};
  return set_int(fd, SOL_SOCKET, opt, half, name, what);
}

Status set_timeout(int fd, int opt, uint64_t sec, uint64_t usec, const char* name, const std::string& what) {
  if (!sec && !usec) return {};
  timeval tv{time_t(sec), suseconds_t(usec)};
  if (::setsockopt(fd, SOL_SOCKET, opt, &tv, sizeof tv) < 0) return fail(sys_error(std::string("setsockopt(") + name + ")", what));
  return {};
}

Status restore_opts(int fd, const inet_sk_entry& e, const std::string& what) {
  const sk_opts_entry& o = e.opts();
  CR_OK(set_buf(fd, SO_SNDBUF, SO_SNDBUFFORCE, o.so_sndbuf(), "SO_SNDBUF", what));
  CR_OK(set_buf(fd, SO_RCVBUF, SO_RCVBUFFORCE, o.so_rcvbuf(), "SO_RCVBUF", what));
  CR_OK(set_timeout(fd, SO_SNDTIMEO, o.so_snd_tmo_sec(), o.so_snd_tmo_usec(), "SO_SNDTIMEO", what));
  CR_OK(set_timeout(fd, SO_RCVTIMEO, o.so_rcv_tmo_sec(), o.so_rcv_tmo_usec(), "SO_RCVTIMEO", what));
  if (o.reuseaddr()) CR_OK(set_int(fd, SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR", what));
  if (o.so_reuseport()) CR_OK(set_int(fd, SOL_SOCKET, SO_REUSEPORT, 1, "SO_REUSEPORT", what));
  if (o.so_broadcast()) CR_OK(set_int(fd, SOL_SOCKET, SO_BROADCAST, 1, "SO_BROADCAST", what));
  if (o.so_keepalive()) CR_OK(set_int(fd, SOL_SOCKET, SO_KEEPALIVE, 1, "SO_KEEPALIVE", what));
  if (o.so_dontroute()) CR_OK(set_int(fd, SOL_SOCKET, SO_DONTROUTE, 1, "SO_DONTROUTE", what));
  if (o.so_oobinline()) CR_OK(set_int(fd, SOL_SOCKET, SO_OOBINLINE, 1, "SO_OOBINLINE", what));
  if (o.so_priority()) CR_OK(set_int(fd, SOL_SOCKET, SO_PRIORITY, int(o.so_priority()), "SO_PRIORITY", what));
  if (o.has_so_rcvlowat() && o.so_rcvlowat() != 1) CR_OK(set_int(fd, SOL_SOCKET, SO_RCVLOWAT, int(o.so_rcvlowat()), "SO_RCVLOWAT", what));
  if (o.so_mark()) CR_OK(set_int(fd, SOL_SOCKET, SO_MARK, int(o.so_mark()), "SO_MARK", what));
  if (o.has_so_linger()) {
    linger lg{1, int(o.so_linger())};
    if (::setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg) < 0) return fail(sys_error("setsockopt(SO_LINGER)", what));
  }
  if (!o.so_bound_dev().empty() &&
      ::setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, o.so_bound_dev().data(), socklen_t(o.so_bound_dev().size())) < 0)
    return fail(sys_error("setsockopt(SO_BINDTODEVICE)", what, o.so_bound_dev()));
  if (e.proto() == IPPROTO_TCP) {
    if (o.tcp_keepcnt()) CR_OK(set_int(fd, IPPROTO_TCP, TCP_KEEPCNT, int(o.tcp_keepcnt()), "TCP_KEEPCNT", what));
    if (o.tcp_keepidle()) CR_OK(set_int(fd, IPPROTO_TCP, TCP_KEEPIDLE, int(o.tcp_keepidle()), "TCP_KEEPIDLE", what));
    if (o.tcp_keepintvl()) CR_OK(set_int(fd, IPPROTO_TCP, TCP_KEEPINTVL, int(o.tcp_keepintvl()), "TCP_KEEPINTVL", what));
    if (e.tcp_opts().nodelay()) CR_OK(set_int(fd, IPPROTO_TCP, TCP_NODELAY, 1, "TCP_NODELAY", what));
    if (e.tcp_opts().cork()) CR_OK(set_int(fd, IPPROTO_TCP, TCP_CORK, 1, "TCP_CORK", what));
  }
  if (e.family() == AF_INET6 && e.has_v6only())
    CR_OK(set_int(fd, IPPROTO_IPV6, IPV6_V6ONLY, e.v6only() ? 1 : 0, "IPV6_V6ONLY", what));
  if (e.family() == AF_INET && e.has_ip_opts()) {
    const ip_opts_entry& ip = e.ip_opts();
    if (ip.freebind()) CR_OK(set_int(fd, IPPROTO_IP, IP_FREEBIND, 1, "IP_FREEBIND", what));
    if (ip.pktinfo()) CR_OK(set_int(fd, IPPROTO_IP, IP_PKTINFO, 1, "IP_PKTINFO", what));
    if (ip.tos()) CR_OK(set_int(fd, IPPROTO_IP, IP_TOS, int(ip.tos()), "IP_TOS", what));
  }
  return {};
}

// The image's address words and port as a sockaddr; false when the address is all zero and the port 0.
Result<bool> make_addr(const inet_sk_entry& e, bool src, sockaddr_storage& out, socklen_t& len, const std::string& what) {
  const auto& words = src ? e.src_addr() : e.dst_addr();
  uint16_t port = uint16_t(src ? e.src_port() : e.dst_port());
  out = {};
  bool any = port != 0;
  if (e.family() == AF_INET) {
    if (words.size() != 1) return fail(make_error(Errc::corrupt_image, "restore", what, "IPv4 address needs one word"));
    auto& in = reinterpret_cast<sockaddr_in&>(out);
    in.sin_family = AF_INET;
    in.sin_port = htons(port);
    in.sin_addr.s_addr = words[0];
    any = any || words[0];
    len = sizeof in;
  } else {
    if (words.size() != 4) return fail(make_error(Errc::corrupt_image, "restore", what, "IPv6 address needs four words"));
    auto& in6 = reinterpret_cast<sockaddr_in6&>(out);
    in6.sin6_family = AF_INET6;
    in6.sin6_port = htons(port);
    uint32_t w[4] = {words[0], words[1], words[2], words[3]};
    memcpy(&in6.sin6_addr, w, sizeof w);
    any = any || w[0] || w[1] || w[2] || w[3];
    len = sizeof in6;
  }
  return any;
}

std::string addr_string(const sockaddr_storage& a) {
  char buf[INET6_ADDRSTRLEN] = "?";
  if (a.ss_family == AF_INET) {
    const auto& in = reinterpret_cast<const sockaddr_in&>(a);
    ::inet_ntop(AF_INET, &in.sin_addr, buf, sizeof buf);
    return std::string(buf) + ":" + std::to_string(ntohs(in.sin_port));
  }
  const auto& in6 = reinterpret_cast<const sockaddr_in6&>(a);
  ::inet_ntop(AF_INET6, &in6.sin6_addr, buf, sizeof buf);
  return "[" + std::string(buf) + "]:" + std::to_string(ntohs(in6.sin6_port));
}

Status send_all(int fd, const char* data, size_t size, const std::string& what, const char* queue) {
  size_t done = 0;
  while (done < size) {
    ssize_t n = ::send(fd, data + done, size - done, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail(sys_error("send", what, queue));
    done += size_t(n);
  }
  return {};
}

// Rebuilds an established connection on `fd` (fresh, in repair mode, options set): sequence numbers,
// bind + connect without a handshake, TCP options, queued data, windows; then leaves repair mode.
Status restore_established(int fd, const inet_sk_entry& e, const sockaddr_storage& src, socklen_t slen,
                           const sockaddr_storage& dst, socklen_t dlen, RestoreFiles& files, const std::string& what) {
  std::string name = tcp_stream_file(e.ino());
  auto r = CR_TRY(image::Reader::open(files.images_dir(), name, image::kind(image::Type::tcp_stream)));
  tcp_stream_entry t;
  bool got = CR_TRY(r.read(t));
  if (!got) return fail(make_error(Errc::corrupt_image, "restore", name, "no tcp_stream_entry"));
  constexpr uint32_t kMaxQueue = 64u << 20;
  if (t.inq_len() > kMaxQueue || t.outq_len() > kMaxQueue || t.unsq_len() > t.outq_len())
    return fail(make_error(Errc::corrupt_image, "restore", name, "queue lengths out of range"));
  std::string inq = CR_TRY(r.read_raw(t.inq_len()));
  std::string outq = CR_TRY(r.read_raw(t.outq_len()));

  CR_OK(set_int(fd, IPPROTO_TCP, TCP_REPAIR_QUEUE, TCP_RECV_QUEUE, "TCP_REPAIR_QUEUE", what));
  CR_OK(set_int(fd, IPPROTO_TCP, TCP_QUEUE_SEQ, int(t.inq_seq() - t.inq_len()), "TCP_QUEUE_SEQ", what));
  CR_OK(set_int(fd, IPPROTO_TCP, TCP_REPAIR_QUEUE, TCP_SEND_QUEUE, "TCP_REPAIR_QUEUE", what));
  CR_OK(set_int(fd, IPPROTO_TCP, TCP_QUEUE_SEQ, int(t.outq_seq() - t.outq_len()), "TCP_QUEUE_SEQ", what));
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&src), slen) < 0) return fail(sys_error("bind", what, addr_string(src)));
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&dst), dlen) < 0)
    return fail(sys_error("connect (repair)", what, addr_string(dst)));

  std::vector<tcp_repair_opt> opts;
  opts.push_back({TCPOPT_MAXSEG, t.mss_clamp()});
  if (t.opt_mask() & TCPI_OPT_WSCALE) opts.push_back({TCPOPT_WINDOW, t.snd_wscale() | (t.rcv_wscale() << 16)});
  if (t.opt_mask() & TCPI_OPT_TIMESTAMPS) opts.push_back({TCPOPT_TIMESTAMP, 0});
  if (t.opt_mask() & TCPI_OPT_SACK) opts.push_back({TCPOPT_SACK_PERMITTED, 0});
  if (::setsockopt(fd, IPPROTO_TCP, TCP_REPAIR_OPTIONS, opts.data(), socklen_t(opts.size() * sizeof(tcp_repair_opt))) < 0)
    return fail(sys_error("setsockopt(TCP_REPAIR_OPTIONS)", what));
  if (t.has_timestamp()) CR_OK(set_int(fd, IPPROTO_TCP, TCP_TIMESTAMP, int(t.timestamp()), "TCP_TIMESTAMP", what));

  // Received but unread data back into the receive queue; sent-but-unacknowledged data into the send
  // queue as already sent; the never-sent tail is sent normally once out of repair mode.
  size_t sent = t.outq_len() - t.unsq_len();
  CR_OK(set_int(fd, IPPROTO_TCP, TCP_REPAIR_QUEUE, TCP_RECV_QUEUE, "TCP_REPAIR_QUEUE", what));
  CR_OK(send_all(fd, inq.data(), inq.size(), what, "receive queue"));
  CR_OK(set_int(fd, IPPROTO_TCP, TCP_REPAIR_QUEUE, TCP_SEND_QUEUE, "TCP_REPAIR_QUEUE", what));
  CR_OK(send_all(fd, outq.data(), sent, what, "send queue"));
  CR_OK(set_int(fd, IPPROTO_TCP, TCP_REPAIR_QUEUE, TCP_NO_QUEUE, "TCP_REPAIR_QUEUE", what));

  if (t.has_snd_wnd()) {
    tcp_repair_window w{};
    w.snd_wl1 = t.snd_wl1();
    w.snd_wnd = t.snd_wnd();
    w.max_window = t.max_window();
    w.rcv_wnd = t.rcv_wnd();
    w.rcv_wup = t.rcv_wup();
    if (::setsockopt(fd, IPPROTO_TCP, TCP_REPAIR_WINDOW, &w, sizeof w) < 0)
      return fail(sys_error("setsockopt(TCP_REPAIR_WINDOW)", what));
  }
  if (t.nodelay()) CR_OK(set_int(fd, IPPROTO_TCP, TCP_NODELAY, 1, "TCP_NODELAY", what));
  if (t.cork()) CR_OK(set_int(fd, IPPROTO_TCP, TCP_CORK, 1, "TCP_CORK", what));
  // Repair mode ends in finish_socket, once every fd of the task is in place: a connection whose
  // other end is restored later would otherwise be reset by the first segment it sends.
  files.data()[kPendingRepair][e.ino()] = outq.substr(sent);
  return {};
}

}  // namespace

Result<UniqueFd> open_socket(const file_entry& fe, RestoreFiles& files) {
  if (!fe.has_isk()) return fail(make_error(Errc::corrupt_image, "restore", anon::file_name("inet socket", fe.id()), "no isk payload"));
  const inet_sk_entry& e = fe.isk();
  std::string what = "inet socket " + std::to_string(e.ino());
  if ((e.family() != AF_INET && e.family() != AF_INET6) || (e.proto() != IPPROTO_TCP && e.proto() != IPPROTO_UDP) ||
      (e.type() != SOCK_STREAM && e.type() != SOCK_DGRAM))
    return fail(make_error(Errc::unsupported, "restore", what,
                           "family " + std::to_string(e.family()) + " type " + std::to_string(e.type()) + " protocol " +
                               std::to_string(e.proto())));
  bool tcp = e.proto() == IPPROTO_TCP;
  if (tcp && e.state() != TCP_LISTEN && e.state() != TCP_CLOSE && e.state() != TCP_ESTABLISHED && !files.tcp_close())
    return fail(make_error(Errc::unsupported, "restore", what, "TCP state " + std::to_string(e.state())));
  // Made in the tree's network namespace: a socket belongs to the one it was created in.
  auto made = files.socket(int(e.family()), int(e.type()), int(e.proto()));
  if (!made) return fail(made.error().within(what));
  UniqueFd s = std::move(*made);
  int fd = s.get();
  bool repair = tcp && e.state() == TCP_ESTABLISHED && !files.tcp_close();
  // Repair mode first: it also lets the socket share its port with the listener it was accepted from.
  if (repair) CR_OK(set_int(fd, IPPROTO_TCP, TCP_REPAIR, 1, "TCP_REPAIR", what));
  CR_OK(restore_opts(fd, e, what));

  sockaddr_storage src{}, dst{};
  socklen_t slen = 0, dlen = 0;
  bool has_src = CR_TRY(make_addr(e, true, src, slen, what));
  bool has_dst = CR_TRY(make_addr(e, false, dst, dlen, what));
  if (repair) {
    CR_OK(restore_established(fd, e, src, slen, dst, dlen, files, what));
  } else {
    // Connections the dumped socket had may linger in TIME_WAIT on its port: reuse it for the bind, then
    // give the socket its own setting back.
    if (tcp && has_src && !e.opts().reuseaddr()) CR_OK(set_int(fd, SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR", what));
    // A connection restored closed (--tcp-close) takes its old address when it is free; what is left
    // of the connection itself (FIN_WAIT, TIME_WAIT) may hold it, and unbound it serves just as well.
    const bool closed_connection = tcp && e.state() != TCP_LISTEN && e.dst_port() != 0;
    if (has_src && ::bind(fd, reinterpret_cast<sockaddr*>(&src), slen) < 0 && !(closed_connection && errno == EADDRINUSE))
      return fail(sys_error("bind", what, addr_string(src))
                      .with_hint("the address must be free: is the dumped process (or another one) still holding it?"));
    if (tcp && e.state() == TCP_LISTEN && ::listen(fd, int(e.backlog())) < 0) return fail(sys_error("listen", what));
    if (!tcp && e.state() == TCP_ESTABLISHED && has_dst && ::connect(fd, reinterpret_cast<sockaddr*>(&dst), dlen) < 0)
      return fail(sys_error("connect", what, addr_string(dst)));
    if (tcp && has_src && !e.opts().reuseaddr()) CR_OK(set_int(fd, SOL_SOCKET, SO_REUSEADDR, 0, "SO_REUSEADDR", what));
  }
  if (e.has_shutdown() && e.shutdown() != NONE) {
    int how = e.shutdown() == READ ? SHUT_RD : e.shutdown() == WRITE ? SHUT_WR : SHUT_RDWR;
    if (::shutdown(fd, how) < 0 && errno != ENOTCONN) return fail(sys_error("shutdown", what));
  }
  CR_OK(anon::restore_status_flags(fd, e.flags(), what));
  CR_OK(anon::restore_fown(fd, e.fown(), what));
  return s;
}

Status finish_socket(const file_entry& fe, int, kernel::Remote&, RestoreFiles& files) {
  if (!fe.has_isk()) return {};
  auto& pending = files.data()[kPendingRepair];
  auto it = pending.find(fe.isk().ino());
  if (it == pending.end()) return {};
  std::string unsent = std::move(it->second);
  pending.erase(it);
  std::string what = "inet socket " + std::to_string(fe.isk().ino());
  int fd = CR_TRY(files.fd_for(fe.id()));
  CR_OK(set_int(fd, IPPROTO_TCP, TCP_REPAIR, TCP_REPAIR_OFF, "TCP_REPAIR", what));
  return send_all(fd, unsent.data(), unsent.size(), what, "unsent data");
}

}  // namespace crshim::files::inet
