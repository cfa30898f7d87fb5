// IPv4/IPv6 TCP and UDP sockets: one inet_sk_entry per socket (family, type, state, addresses, backlog,
// options) from inet sock_diag and crshim's stolen copy of the socket. Established TCP connections
// (with --tcp-established) are put into repair mode and their sequence numbers, windows and queues go
// to tcp-stream-<ino>.img; they stay in repair mode so that the kill after the dump sends nothing.
#include "checkpoint/files/inet.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <map>

#include "checkpoint/base/sys.h"
#include "checkpoint/files/anon_common.h"
#include "checkpoint/files/fds.h"
#include "checkpoint/files/sock_diag.h"
#include "checkpoint/files/sock_opts.h"
#include "sk-inet.pb.h"
#include "tcp-stream.pb.h"

namespace crshim::files {

namespace inet {

namespace {

using sockdiag::bad_reply;
using sockdiag::load;

}  // namespace

// Every socket of `family`/`protocol` the kernel lists in a network namespace (-1: ours), by inode.
Result<std::map<uint32_t, Diag>> diag_all(int family, int protocol, int netns_fd) {
  std::string what = std::string(protocol == IPPROTO_TCP ? "tcp" : "udp") + (family == AF_INET6 ? "6" : "") + " sockets";
  inet_diag_req_v2 req{};
  req.sdiag_family = uint8_t(family);
  req.sdiag_protocol = uint8_t(protocol);
  req.idiag_states = ~0u;
  std::map<uint32_t, Diag> out;
  for (const auto& buf : CR_TRY(sockdiag::request(&req, sizeof req, true, what, netns_fd))) {
    const uint8_t* p = buf.data();
    size_t len = buf.size();
    while (len >= sizeof(nlmsghdr)) {
      auto h = load<nlmsghdr>(p);
      if (h.nlmsg_len < sizeof(nlmsghdr) || h.nlmsg_len > len) return fail(bad_reply(what, "message length"));
      if (h.nlmsg_type == NLMSG_DONE) return out;
      if (h.nlmsg_type == NLMSG_ERROR) {
        if (h.nlmsg_len < NLMSG_LENGTH(sizeof(nlmsgerr))) return fail(bad_reply(what, "short error"));
        int err = -load<nlmsgerr>(p + NLMSG_HDRLEN).error;
        // No module for this protocol family: no such sockets.
        if (err == ENOENT) return out;
        errno = err;
        return fail(sys_error("sock_diag", what));
      }
      if (h.nlmsg_type == SOCK_DIAG_BY_FAMILY) {
        if (h.nlmsg_len < NLMSG_LENGTH(sizeof(inet_diag_msg))) return fail(bad_reply(what, "short message"));
        auto m = load<inet_diag_msg>(p + NLMSG_HDRLEN);
        Diag d;
        d.family = m.idiag_family;
        d.state = m.idiag_state;
        d.sport = ntohs(m.id.idiag_sport);
        d.dport = ntohs(m.id.idiag_dport);
        memcpy(d.src, m.id.idiag_src, sizeof d.src);
        memcpy(d.dst, m.id.idiag_dst, sizeof d.dst);
        d.rqueue = m.idiag_rqueue;
        d.wqueue = m.idiag_wqueue;
        d.ino = m.idiag_inode;
        const uint8_t* a = p + NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(inet_diag_msg));
        size_t alen = h.nlmsg_len > NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(inet_diag_msg))
                          ? h.nlmsg_len - NLMSG_HDRLEN - NLMSG_ALIGN(sizeof(inet_diag_msg))
                          : 0;
        while (alen >= sizeof(nlattr)) {
          auto at = load<nlattr>(a);
          if (at.nla_len < sizeof(nlattr) || at.nla_len > alen) return fail(bad_reply(what, "attribute length"));
          if ((at.nla_type & NLA_TYPE_MASK) == INET_DIAG_SHUTDOWN && at.nla_len > NLA_HDRLEN) d.shutdown = a[NLA_HDRLEN];
          size_t step = NLA_ALIGN(at.nla_len);
          if (step >= alen) break;
          a += step;
          alen -= step;
        }
        // Time-wait and request sockets have no inode: they belong to nobody.
        if (d.ino) out[d.ino] = d;
      }
      size_t step = NLMSG_ALIGN(h.nlmsg_len);
      if (step > len) step = len;
      p += step;
      len -= step;
    }
  }
  return out;
}

namespace {

std::string addr_text(int family, const uint32_t* words, uint16_t port) {
  char buf[INET6_ADDRSTRLEN] = "?";
  ::inet_ntop(family, words, buf, sizeof buf);
  return family == AF_INET6 ? "[" + std::string(buf) + "]:" + std::to_string(port) : std::string(buf) + ":" + std::to_string(port);
}

std::string fd_path(const OpenFd& f) { return "/proc/" + std::to_string(f.pid) + "/fd/" + std::to_string(f.fd); }

// "TCP", "TCPv6", "UDP", "UDPv6" (or another protocol) from the socket inode's xattr.
std::string proto_name(const std::string& path) {
  char buf[64];
  ssize_t n = ::getxattr(path.c_str(), "system.sockprotoname", buf, sizeof buf);
  if (n <= 0) return "";
  std::string s(buf, size_t(n));
  while (!s.empty() && s.back() == '\0') s.pop_back();
  return s;
}

struct Proto {
  int family = 0;
  int protocol = 0;
};

std::optional<Proto> proto_of(const std::string& name) {
  if (name == "TCP") return Proto{AF_INET, IPPROTO_TCP};
  if (name == "TCPv6") return Proto{AF_INET6, IPPROTO_TCP};
  if (name == "UDP") return Proto{AF_INET, IPPROTO_UDP};
  if (name == "UDPv6") return Proto{AF_INET6, IPPROTO_UDP};
  return std::nullopt;
}

uint32_t sock_ino(const OpenFd& f) {
  if (f.st.st_ino) return uint32_t(f.st.st_ino);
  uint64_t ino = 0;
  if (f.link.size() > 9) sys::parse_u64(std::string_view(f.link).substr(8, f.link.size() - 9), ino);
  return uint32_t(ino);
}

const char* state_name(int s) {
  static const char* const names[] = {"?",          "ESTABLISHED", "SYN_SENT", "SYN_RECV",  "FIN_WAIT1", "FIN_WAIT2",
                                      "TIME_WAIT",  "CLOSE",       "CLOSE_WAIT", "LAST_ACK", "LISTEN",   "CLOSING"};
  return s >= 0 && s < int(std::size(names)) ? names[s] : "?";
}

constexpr const char* kHint =
    "use --tcp-established to dump established TCP connections, or --tcp-close to restore them closed";

bool matches(const OpenFd& f) { return f.link.rfind("socket:", 0) == 0 && proto_of(proto_name(fd_path(f))).has_value(); }

// Why `policy` does not let this socket be dumped ("" when it does).
std::string problem(const Diag& d, const TcpPolicy& policy) {
  if (d.state == TCP_LISTEN && d.rqueue && !policy.skip_in_flight)
    return "listening TCP socket " + describe(d) + " with " + std::to_string(d.rqueue) +
           " connection(s) not accepted yet (--skip-in-flight drops them)";
  if (d.state == TCP_LISTEN || d.state == TCP_CLOSE || policy.close) return "";
  if (d.state == TCP_ESTABLISHED) return policy.established ? "" : "established TCP connection " + describe(d);
  return std::string("TCP socket ") + describe(d) + " in state " + state_name(d.state) +
         " (only listening, closed and established TCP sockets are supported; --tcp-close restores it closed)";
}

// TCP states depend on --tcp-established/--tcp-close/--skip-in-flight: tcp_problems() checks them.
std::string unsupported(const OpenFd& f, bool) {
  return proto_of(proto_name(fd_path(f))) ? "" : "inet socket of an unsupported protocol";
}

using sock::get_int;

Status set_int(int fd, int level, int opt, int v, const char* name, const std::string& what) {
  if (::setsockopt(fd, level, opt, &v, sizeof v) < 0) return fail(sys_error(std::string("setsockopt(") + name + ")", what));
  return {};
}

Result<sk_opts_entry> dump_opts(int fd, int protocol, const std::string& what) {
  sk_opts_entry o = CR_TRY(sock::dump_common_opts(fd, what));
  socklen_t len;
  o.set_so_reuseport(CR_TRY(get_int(fd, SOL_SOCKET, SO_REUSEPORT, "SO_REUSEPORT", what)) != 0);
  o.set_so_broadcast(CR_TRY(get_int(fd, SOL_SOCKET, SO_BROADCAST, "SO_BROADCAST", what)) != 0);
  o.set_so_keepalive(CR_TRY(get_int(fd, SOL_SOCKET, SO_KEEPALIVE, "SO_KEEPALIVE", what)) != 0);
  o.set_so_dontroute(CR_TRY(get_int(fd, SOL_SOCKET, SO_DONTROUTE, "SO_DONTROUTE", what)) != 0);
  o.set_so_oobinline(uint32_t(CR_TRY(get_int(fd, SOL_SOCKET, SO_OOBINLINE, "SO_OOBINLINE", what))));
  linger lg{};
  len = sizeof lg;
  if (::getsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, &len) < 0) return fail(sys_error("getsockopt(SO_LINGER)", what));
  if (lg.l_onoff) o.set_so_linger(uint32_t(lg.l_linger));
  char dev[IFNAMSIZ + 1] = {};
  len = IFNAMSIZ;
  if (::getsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, dev, &len) == 0 && dev[0]) o.set_so_bound_dev(dev);
  if (protocol == IPPROTO_TCP) {
    o.set_tcp_keepcnt(uint32_t(CR_TRY(get_int(fd, IPPROTO_TCP, TCP_KEEPCNT, "TCP_KEEPCNT", what))));
    o.set_tcp_keepidle(uint32_t(CR_TRY(get_int(fd, IPPROTO_TCP, TCP_KEEPIDLE, "TCP_KEEPIDLE", what))));
    o.set_tcp_keepintvl(uint32_t(CR_TRY(get_int(fd, IPPROTO_TCP, TCP_KEEPINTVL, "TCP_KEEPINTVL", what))));
  }
  return o;
}

// Receive (TCP_RECV_QUEUE) or send (TCP_SEND_QUEUE) queue of a socket in repair mode: its sequence
// number and bytes, read with MSG_PEEK so they stay.
Status dump_queue(int fd, int queue, uint32_t& seq, std::string& data, const std::string& what) {
  CR_OK(set_int(fd, IPPROTO_TCP, TCP_REPAIR_QUEUE, queue, "TCP_REPAIR_QUEUE", what));
  seq = uint32_t(CR_TRY(get_int(fd, IPPROTO_TCP, TCP_QUEUE_SEQ, "TCP_QUEUE_SEQ", what)));
  int len = 0;
  if (::ioctl(fd, queue == TCP_RECV_QUEUE ? SIOCINQ : SIOCOUTQ, &len) < 0)
    return fail(sys_error(queue == TCP_RECV_QUEUE ? "ioctl(SIOCINQ)" : "ioctl(SIOCOUTQ)", what));
  data.assign(size_t(len), '\0');
  size_t got = 0;
  while (got < data.size()) {
    ssize_t n = ::recv(fd, data.data(), data.size(), MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail(sys_error("recv(MSG_PEEK)", what, queue == TCP_RECV_QUEUE ? "receive queue" : "send queue"));
    if (size_t(n) != data.size())
      return fail(make_error(Errc::internal, "dump", what,
                             "peeked " + std::to_string(n) + " of " + std::to_string(data.size()) + " queued bytes"));
    got = size_t(n);
  }
  return {};
}

// Repair state of an established connection into tcp-stream-<ino>.img. The socket stays in repair mode
// (files.end_tcp_repair() ends it when the tree runs on).
Status dump_tcp_stream(int fd, uint32_t ino, DumpFiles& files, const std::string& what) {
  CR_OK(set_int(fd, IPPROTO_TCP, TCP_REPAIR, 1, "TCP_REPAIR", what));
  auto run = [&]() -> Status {
    tcp_stream_entry e;
    tcp_info ti{};
    socklen_t len = sizeof ti;
    if (::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0) return fail(sys_error("getsockopt(TCP_INFO)", what));
    e.set_opt_mask(ti.tcpi_options);
    e.set_snd_wscale(ti.tcpi_snd_wscale);
    e.set_rcv_wscale(ti.tcpi_rcv_wscale);
    e.set_mss_clamp(uint32_t(CR_TRY(get_int(fd, IPPROTO_TCP, TCP_MAXSEG, "TCP_MAXSEG", what))));
    if (ti.tcpi_options & TCPI_OPT_TIMESTAMPS)
      e.set_timestamp(uint32_t(CR_TRY(get_int(fd, IPPROTO_TCP, TCP_TIMESTAMP, "TCP_TIMESTAMP", what))));
    e.set_nodelay(CR_TRY(get_int(fd, IPPROTO_TCP, TCP_NODELAY, "TCP_NODELAY", what)) != 0);
    e.set_cork(CR_TRY(get_int(fd, IPPROTO_TCP, TCP_CORK, "TCP_CORK", what)) != 0);
    std::string inq, outq;
    uint32_t seq = 0;
    CR_OK(dump_queue(fd, TCP_RECV_QUEUE, seq, inq, what));
    e.set_inq_seq(seq);
    e.set_inq_len(uint32_t(inq.size()));
    CR_OK(dump_queue(fd, TCP_SEND_QUEUE, seq, outq, what));
    e.set_outq_seq(seq);
    e.set_outq_len(uint32_t(outq.size()));
    int unsent = 0;
    if (::ioctl(fd, SIOCOUTQNSD, &unsent) < 0) return fail(sys_error("ioctl(SIOCOUTQNSD)", what));
    e.set_unsq_len(uint32_t(unsent));
    CR_OK(set_int(fd, IPPROTO_TCP, TCP_REPAIR_QUEUE, TCP_NO_QUEUE, "TCP_REPAIR_QUEUE", what));
    tcp_repair_window w{};
    len = sizeof w;
    if (::getsockopt(fd, IPPROTO_TCP, TCP_REPAIR_WINDOW, &w, &len) < 0) return fail(sys_error("getsockopt(TCP_REPAIR_WINDOW)", what));
    e.set_snd_wl1(w.snd_wl1);
    e.set_snd_wnd(w.snd_wnd);
    e.set_max_window(w.max_window);
    e.set_rcv_wnd(w.rcv_wnd);
    e.set_rcv_wup(w.rcv_wup);
    auto out = CR_TRY(image::Writer::create(files.images_dir(), tcp_stream_file(ino), image::kind(image::Type::tcp_stream)));
    CR_OK(out.write(e));
    CR_OK(out.write_raw(inq));
    CR_OK(out.write_raw(outq));
    return out.close();
  };
  Status st = run();
  if (!st) {
    int off = 0;
    ::setsockopt(fd, IPPROTO_TCP, TCP_REPAIR, &off, sizeof off);
  }
  return st;
}

Result<uint32_t> dump(const OpenFd& f, DumpFiles& files) {
  uint32_t ino = sock_ino(f);
  auto& ids = files.seen()["inet"];
  if (auto it = ids.find(ino); it != ids.end()) return it->second;
  std::string what = "inet socket " + std::to_string(ino);
  UniqueFd own = CR_TRY(f.steal());
  int fd = own.get();
  int family = CR_TRY(get_int(fd, SOL_SOCKET, SO_DOMAIN, "SO_DOMAIN", what));
  int type = CR_TRY(get_int(fd, SOL_SOCKET, SO_TYPE, "SO_TYPE", what));
  int protocol = CR_TRY(get_int(fd, SOL_SOCKET, SO_PROTOCOL, "SO_PROTOCOL", what));
  if ((family != AF_INET && family != AF_INET6) || (protocol != IPPROTO_TCP && protocol != IPPROTO_UDP) ||
      (type != SOCK_STREAM && type != SOCK_DGRAM))
    return fail(make_error(Errc::unsupported, "dump", what,
                           "family " + std::to_string(family) + " type " + std::to_string(type) + " protocol " + std::to_string(protocol)));
  // The socket's own network namespace lists it (it may not be crshim's).
  UniqueFd netns = CR_TRY(sockdiag::socket_netns(fd, what));
  auto diag = CR_TRY(diag_by_ino(family, protocol, ino, netns.get()));

  file_entry fe;
  fe.set_type(INETSK);
  inet_sk_entry* e = fe.mutable_isk();
  e->set_ino(ino);
  e->set_family(uint32_t(family));
  e->set_type(uint32_t(type));
  e->set_proto(uint32_t(protocol));
  e->set_flags(f.open_flags());
  e->set_backlog(0);
  e->set_src_port(0);
  e->set_dst_port(0);
  uint8_t state = TCP_CLOSE;
  uint8_t shut = 0;
  if (diag) {
    state = diag->state;
    shut = diag->shutdown;
    if (protocol == IPPROTO_TCP) {
      const TcpPolicy& policy = files.tcp_policy();
      if (std::string why = problem(*diag, policy); !why.empty())
        return fail(make_error(Errc::unsupported, "dump", what, why).with_hint(kHint));
      if (state == TCP_LISTEN) e->set_backlog(diag->wqueue);
      // --tcp-close: a connection not dumped in repair mode is recorded closed, on its addresses.
      if (state != TCP_LISTEN && state != TCP_CLOSE && !(state == TCP_ESTABLISHED && policy.established))
        state = TCP_CLOSE;
    }
  }
  // Addresses from the socket itself: sock_diag does not list unbound-but-named or closed sockets.
  sockaddr_storage ss{};
  socklen_t slen = sizeof ss;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &slen) < 0) return fail(sys_error("getsockname", what));
  auto put_addr = [&](const sockaddr_storage& a, bool src) {
    if (family == AF_INET) {
      const auto& in = reinterpret_cast<const sockaddr_in&>(a);
      (src ? e->add_src_addr(in.sin_addr.s_addr) : e->add_dst_addr(in.sin_addr.s_addr));
      (src ? e->set_src_port(ntohs(in.sin_port)) : e->set_dst_port(ntohs(in.sin_port)));
    } else {
      const auto& in6 = reinterpret_cast<const sockaddr_in6&>(a);
      uint32_t w[4];
      memcpy(w, &in6.sin6_addr, sizeof w);
      for (uint32_t x : w) src ? e->add_src_addr(x) : e->add_dst_addr(x);
      (src ? e->set_src_port(ntohs(in6.sin6_port)) : e->set_dst_port(ntohs(in6.sin6_port)));
    }
  };
  put_addr(ss, true);
  sockaddr_storage peer{};
  slen = sizeof peer;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &slen) == 0) {
    put_addr(peer, false);
    if (protocol == IPPROTO_UDP) state = TCP_ESTABLISHED;
  } else if (errno != ENOTCONN) {
    return fail(sys_error("getpeername", what));
  } else {
    sockaddr_storage none{};
    none.ss_family = sa_family_t(family);
    put_addr(none, false);
  }
  e->set_state(state);
  *e->mutable_fown() = CR_TRY(anon::dump_fown(fd, what));
  *e->mutable_opts() = CR_TRY(dump_opts(fd, protocol, what));
  if (family == AF_INET6) e->set_v6only(CR_TRY(get_int(fd, IPPROTO_IPV6, IPV6_V6ONLY, "IPV6_V6ONLY", what)) != 0);
  if (family == AF_INET) {
    ip_opts_entry* ip = e->mutable_ip_opts();
    ip->set_freebind(CR_TRY(get_int(fd, IPPROTO_IP, IP_FREEBIND, "IP_FREEBIND", what)) != 0);
    ip->set_pktinfo(CR_TRY(get_int(fd, IPPROTO_IP, IP_PKTINFO, "IP_PKTINFO", what)) != 0);
    ip->set_tos(uint32_t(CR_TRY(get_int(fd, IPPROTO_IP, IP_TOS, "IP_TOS", what))));
  }
  if (protocol == IPPROTO_TCP) {
    tcp_opts_entry* t = e->mutable_tcp_opts();
    t->set_nodelay(CR_TRY(get_int(fd, IPPROTO_TCP, TCP_NODELAY, "TCP_NODELAY", what)) != 0);
    t->set_cork(CR_TRY(get_int(fd, IPPROTO_TCP, TCP_CORK, "TCP_CORK", what)) != 0);
    t->set_keepcnt(e->opts().tcp_keepcnt());
    t->set_keepidle(e->opts().tcp_keepidle());
    t->set_keepintvl(e->opts().tcp_keepintvl());
  }
  if (shut & 3) e->set_shutdown(sk_shutdown(shut & 3));
  if (protocol == IPPROTO_TCP && state == TCP_ESTABLISHED) {
    CR_OK(dump_tcp_stream(fd, ino, files, what));
    files.add_repaired(std::move(own));
  }
  uint32_t id = CR_TRY(anon::add_file(files, std::move(fe), [](file_entry& x, uint32_t id) {
    x.set_id(id);
    x.mutable_isk()->set_id(id);
  }));
  ids[ino] = id;
  return id;
}

Result<UniqueFd> open(const file_entry& fe, RestoreFiles& files) { return open_socket(fe, files); }

}  // namespace

Result<std::optional<Diag>> diag_by_ino(int family, int protocol, uint32_t ino, int netns_fd) {
  auto all = CR_TRY(diag_all(family, protocol, netns_fd));
  auto it = all.find(ino);
  if (it == all.end()) return std::optional<Diag>();
  return std::optional<Diag>(it->second);
}

std::string describe(const Diag& d) {
  return addr_text(d.family, d.src, d.sport) + " -> " + addr_text(d.family, d.dst, d.dport);
}

std::string tcp_stream_file(uint32_t ino) {
  char buf[64];
  snprintf(buf, sizeof buf, "tcp-stream-%x.img", ino);
  return buf;
}

std::string tcp_problems(pid_t pid, const TcpPolicy& policy) {
  auto fds = list_fds(pid, false);
  auto ns = sockdiag::task_netns(pid);
  if (!fds || !ns) return "";
  std::map<int, std::map<uint32_t, Diag>> tables;  // family -> TCP sockets, listed on first need
  std::string out;
  for (const auto& f : *fds) {
    if (f.link.rfind("socket:", 0) != 0) continue;
    auto p = proto_of(proto_name(fd_path(f)));
    if (!p || p->protocol != IPPROTO_TCP) continue;
    if (!tables.count(p->family)) {
      auto all = diag_all(p->family, IPPROTO_TCP, ns->get());
      tables[p->family] = all ? std::move(*all) : std::map<uint32_t, Diag>();
    }
    auto it = tables[p->family].find(sock_ino(f));
    if (it == tables[p->family].end()) continue;
    if (std::string why = problem(it->second, policy); !why.empty())
      out += (out.empty() ? "" : ", ") + ("fd " + std::to_string(f.fd) + ": " + why);
  }
  if (out.empty()) return "";
  return "pid " + std::to_string(pid) + ": " + out;
}

}  // namespace inet

void DumpFiles::end_tcp_repair() {
  for (auto& s : repaired_) {
    int off = TCP_REPAIR_OFF;
    ::setsockopt(s.get(), IPPROTO_TCP, TCP_REPAIR, &off, sizeof off);
  }
  repaired_.clear();
}

extern const FileKind kInetKind{"inet socket", INETSK, inet::matches, inet::unsupported, inet::dump, inet::open, inet::finish_socket};

}  // namespace crshim::files
