#include "checkpoint/files/sock_diag.h"

#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <sys/socket.h>

#include "checkpoint/base/unique_fd.h"

namespace crshim::files::sockdiag {

Result<std::vector<std::vector<uint8_t>>> request(const void* req, size_t req_len, bool dump, const std::string& what) {
  UniqueFd nl(::socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG));
  if (!nl) return fail(sys_error("socket(NETLINK_SOCK_DIAG)", what));
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

}  // namespace crshim::files::sockdiag
