#include "checkpoint/net/rtnl.h"

#include <linux/if_link.h>
#include <linux/netlink.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <system_error>
#include <thread>

namespace crshim::net::rtnl {

namespace {

constexpr size_t kRecvBuf = 64 * 1024;

uint32_t rta_u32(const rtattr* a) {
  uint32_t v = 0;
  if (RTA_PAYLOAD(a) >= sizeof v) memcpy(&v, RTA_DATA(a), sizeof v);
  return v;
}

std::string rta_str(const rtattr* a) {
  const char* p = static_cast<const char*>(RTA_DATA(a));
  return std::string(p, strnlen(p, RTA_PAYLOAD(a)));
}

Link parse_link(const nlmsghdr* h) {
  Link l;
  const auto* ifi = static_cast<const ifinfomsg*>(NLMSG_DATA(h));
  l.index = ifi->ifi_index;
  l.type = ifi->ifi_type;
  l.flags = ifi->ifi_flags;
  int len = int(h->nlmsg_len) - int(NLMSG_LENGTH(sizeof(ifinfomsg)));
  for (const rtattr* a = IFLA_RTA(ifi); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
    switch (a->rta_type) {
      case IFLA_IFNAME: l.name = rta_str(a); break;
      case IFLA_MTU: l.mtu = rta_u32(a); break;
      case IFLA_ADDRESS: l.address.assign(static_cast<const char*>(RTA_DATA(a)), RTA_PAYLOAD(a)); break;
      case IFLA_LINK: l.link = int(rta_u32(a)); break;
      case IFLA_LINK_NETNSID: l.link_netnsid = int(rta_u32(a)); break;
      case IFLA_MASTER: l.master = rta_u32(a); break;
      case IFLA_LINKINFO: {
        int ilen = int(RTA_PAYLOAD(a));
        for (const rtattr* i = static_cast<const rtattr*>(RTA_DATA(a)); RTA_OK(i, ilen); i = RTA_NEXT(i, ilen))
          if (i->rta_type == IFLA_INFO_KIND) l.kind = rta_str(i);
        break;
      }
      default: break;
    }
  }
  return l;
}

// The kernel's own words for a refused request (extended ack), when it gave any.
std::string ext_ack_message(const nlmsghdr* h) {
  if (!(h->nlmsg_flags & NLM_F_ACK_TLVS)) return "";
  const auto* e = static_cast<const nlmsgerr*>(NLMSG_DATA(h));
  size_t off = sizeof(nlmsgerr);
  if (!(h->nlmsg_flags & NLM_F_CAPPED)) off += e->msg.nlmsg_len - sizeof(nlmsghdr);
  if (NLMSG_LENGTH(off) > h->nlmsg_len) return "";
  int len = int(h->nlmsg_len - NLMSG_LENGTH(off));
  const auto* a = reinterpret_cast<const rtattr*>(static_cast<const char*>(NLMSG_DATA(h)) + off);
  for (; RTA_OK(a, len); a = RTA_NEXT(a, len))
    if (a->rta_type == NLMSGERR_ATTR_MSG) return rta_str(a);
  return "";
}

}  // namespace

Message::Message(uint16_t type, uint16_t flags, const ifinfomsg& ifi) {
  nlmsghdr h{};
  h.nlmsg_type = type;
  h.nlmsg_flags = uint16_t(NLM_F_REQUEST | flags);
  buf_.assign(reinterpret_cast<const char*>(&h), sizeof h);
  put_raw(&ifi, sizeof ifi);
}

void Message::align() { buf_.resize(NLMSG_ALIGN(buf_.size()), '\0'); }

void Message::put_raw(const void* data, size_t len) {
  align();
  buf_.append(static_cast<const char*>(data), len);
}

void Message::put(uint16_t type, const void* data, size_t len) {
  align();
  rtattr a{};
  a.rta_type = type;
  a.rta_len = uint16_t(RTA_LENGTH(len));
  buf_.append(reinterpret_cast<const char*>(&a), sizeof a);
  if (len) buf_.append(static_cast<const char*>(data), len);
}

void Message::put_str(uint16_t type, const std::string& s) { put(type, s.c_str(), s.size() + 1); }

size_t Message::begin_nest(uint16_t type) {
  align();
  size_t at = buf_.size();
  put(type, nullptr, 0);
  return at;
}

void Message::end_nest(size_t at) {
  align();
  uint16_t len = uint16_t(buf_.size() - at);
  memcpy(&buf_[at] + offsetof(rtattr, rta_len), &len, sizeof len);
}

Result<Socket> Socket::open() {
  int fd = ::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (fd < 0) return fail(sys_error("socket", "NETLINK_ROUTE"));
  UniqueFd sk(fd);
  int one = 1;
  // Best effort: the kernel then says why it refuses a request.
  (void)::setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof one);
  sockaddr_nl sa{};
  sa.nl_family = AF_NETLINK;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) < 0) return fail(sys_error("bind", "NETLINK_ROUTE socket"));
  return Socket(std::move(sk));
}

Status Socket::send(Message& msg, const std::string& what) {
  std::string& b = msg.bytes();
  b.resize(NLMSG_ALIGN(b.size()), '\0');
  auto* h = reinterpret_cast<nlmsghdr*>(b.data());
  h->nlmsg_len = uint32_t(b.size());
  h->nlmsg_seq = ++seq_;
  sockaddr_nl to{};
  to.nl_family = AF_NETLINK;
  for (;;) {
    ssize_t n = ::sendto(fd_.get(), b.data(), b.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to);
    if (n >= 0) return {};
    if (errno != EINTR) return fail(sys_error("sendto", "rtnetlink (" + what + ")"));
  }
}

Result<std::vector<Link>> Socket::links() {
  ifinfomsg ifi{};
  ifi.ifi_family = AF_UNSPEC;
  Message m(RTM_GETLINK, NLM_F_DUMP, ifi);
  CR_OK(send(m, "list links"));
  std::vector<Link> out;
  std::string buf(kRecvBuf, '\0');
  for (;;) {
    ssize_t n = ::recv(fd_.get(), buf.data(), buf.size(), 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail(sys_error("recv", "rtnetlink (list links)"));
    }
    int len = int(n);
    for (auto* h = reinterpret_cast<nlmsghdr*>(buf.data()); NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
      if (h->nlmsg_seq != seq_) continue;
      if (h->nlmsg_type == NLMSG_DONE) return out;
      if (h->nlmsg_type == NLMSG_ERROR) {
        const auto* e = static_cast<const nlmsgerr*>(NLMSG_DATA(h));
        errno = -e->error;
        return fail(sys_error("RTM_GETLINK", "links"));
      }
      if (h->nlmsg_type == RTM_NEWLINK) out.push_back(parse_link(h));
    }
  }
}

Status Socket::request(Message& msg, const std::string& what) {
  reinterpret_cast<nlmsghdr*>(msg.bytes().data())->nlmsg_flags |= NLM_F_ACK;
  CR_OK(send(msg, what));
  std::string buf(kRecvBuf, '\0');
  for (;;) {
    ssize_t n = ::recv(fd_.get(), buf.data(), buf.size(), 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail(sys_error("recv", "rtnetlink (" + what + ")"));
    }
    int len = int(n);
    for (auto* h = reinterpret_cast<nlmsghdr*>(buf.data()); NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
      if (h->nlmsg_seq != seq_ || h->nlmsg_type != NLMSG_ERROR) continue;
      const auto* e = static_cast<const nlmsgerr*>(NLMSG_DATA(h));
      if (e->error == 0) return {};
      std::string kernel_says = ext_ack_message(h);
      errno = -e->error;
      Error err = sys_error("rtnetlink", what);
      if (!kernel_says.empty()) err.message = kernel_says;
      return fail(err);
    }
  }
}

Status Socket::delete_link(const std::string& name) {
  ifinfomsg ifi{};
  ifi.ifi_family = AF_UNSPEC;
  Message m(RTM_DELLINK, 0, ifi);
  m.put_str(IFLA_IFNAME, name);
  return request(m, "delete link " + name);
}

Result<int> Socket::index_of(const std::string& name) {
  auto all = CR_TRY(links());
  for (const auto& l : all)
    if (l.name == name) return l.index;
  errno = ENODEV;
  return fail(sys_error("find link", name));
}

Status in_netns(int netns_fd, const std::function<Status()>& fn) {
  Status result;
  try {
    std::thread t([&] {
      // Only this thread moves: the namespace of the rest of the process stays as it is.
      if (::setns(netns_fd, CLONE_NEWNET) < 0) {
        result = fail(sys_error("setns", "network namespace (fd " + std::to_string(netns_fd) + ")"));
        return;
      }
      result = fn();
    });
    t.join();
  } catch (const std::system_error& e) {
    return fail(make_error(Errc::system, "start thread", "network namespace helper", e.what()));
  }
  return result;
}

Result<UniqueFd> socket_in(int netns_fd, int family, int type, int protocol) {
  UniqueFd out;
  CR_OK(in_netns(netns_fd, [&]() -> Status {
    int fd = ::socket(family, type | SOCK_CLOEXEC, protocol);
    if (fd < 0) return fail(sys_error("socket", "family " + std::to_string(family)));
    out.reset(fd);
    return {};
  }));
  return out;
}

}  // namespace crshim::net::rtnl
