#include "checkpoint/files/sock_diag.h"

#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "checkpoint/base/sys.h"
#include "checkpoint/base/unique_fd.h"
#include "checkpoint/net/rtnl.h"

namespace crshim::files::sockdiag {

Result<std::vector<std::vector<uint8_t>>> request(const void* req, size_t req_len, bool dump, const std::string& what,
                                                  int netns_fd) {
  UniqueFd nl;
  if (netns_fd >= 0) {
    auto made = net::rtnl::socket_in(netns_fd, AF_NETLINK, SOCK_DGRAM, NETLINK_SOCK_DIAG);
    if (!made) return fail(made.error().within(what));
    nl = std::move(*made);
  } else {
    nl.reset(::socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG));
    if (!nl) return fail(sys_error("socket(NETLINK_SOCK_DIAG)", what));
  }
  std::vector<uint8_t> msg(NLMSG_HDRLEN + req_len);
  nlmsghdr h{};
  h.nlmsg_len = uint32_t(msg.size());
  h.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  h.nlmsg_flags = uint16_t(NLM_F_REQUEST | (dump ? NLM_F_DUMP : 0));
  h.nlmsg_seq = 1;
  memcpy(msg.data(), &h, sizeof h);
  memcpy(msg.data() + NLMSG_HDRLEN, req, req_len);
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (::sendto(nl.get(), msg.data(), msg.size(), 0, reinterpret_cast<sockaddr*>(&kernel), sizeof kernel) < 0)
    return fail(sys_error("sendto(NETLINK_SOCK_DIAG)", what));
  std::vector<std::vector<uint8_t>> out;
  for (;;) {
    std::vector<uint8_t> buf(64 * 1024);
    ssize_t n = ::recv(nl.get(), buf.data(), buf.size(), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail(sys_error("recv(NETLINK_SOCK_DIAG)", what));
    if (n == 0) return fail(bad_reply(what, "empty"));
    buf.resize(size_t(n));
    bool done = false;
    for (size_t at = 0; at + sizeof(nlmsghdr) <= buf.size();) {
      auto m = load<nlmsghdr>(buf.data() + at);
      if (m.nlmsg_len < sizeof(nlmsghdr) || m.nlmsg_len > buf.size() - at) return fail(bad_reply(what, "message length"));
      if (m.nlmsg_type == NLMSG_DONE || m.nlmsg_type == NLMSG_ERROR) done = true;
      at += NLMSG_ALIGN(m.nlmsg_len);
    }
    out.push_back(std::move(buf));
    if (done || !dump) return out;
  }
}

namespace {

Result<bool> is_own_netns(int ns_fd, const std::string& what) {
  struct stat theirs, ours;
  if (::fstat(ns_fd, &theirs) < 0) return fail(sys_error("fstat", what));
  if (::stat("/proc/self/ns/net", &ours) < 0) return fail(sys_error("stat", "/proc/self/ns/net"));
  return theirs.st_dev == ours.st_dev && theirs.st_ino == ours.st_ino;
}

}  // namespace

Result<UniqueFd> task_netns(pid_t pid) {
  std::string path = "/proc/" + std::to_string(pid) + "/ns/net";
  UniqueFd ns = CR_TRY(sys::open(path, O_RDONLY));
  if (CR_TRY(is_own_netns(ns.get(), path))) return UniqueFd();
  return ns;
}

Result<UniqueFd> socket_netns(int fd, const std::string& what) {
  UniqueFd ns(::ioctl(fd, SIOCGSKNS));
  if (!ns) return fail(sys_error("ioctl(SIOCGSKNS)", what));
  if (CR_TRY(is_own_netns(ns.get(), what))) return UniqueFd();
  return ns;
}

}  // namespace crshim::files::sockdiag
