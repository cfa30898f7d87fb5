#include "checkpoint/net/conntrack.h"

#include <fcntl.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <linux/netlink.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "checkpoint/base/sys.h"

namespace crshim::net {

namespace {

constexpr size_t kRecvBuf = 64 * 1024;

struct Kind {
  const char* prefix;  // image name prefix
  const char* what;    // for messages
  uint16_t subsys;     // NFNL_SUBSYS_*
  uint16_t get;        // dump request
  uint16_t create;     // restore request
};
constexpr Kind kEntries{"netns-ct", "conntrack entry", NFNL_SUBSYS_CTNETLINK, IPCTNL_MSG_CT_GET, IPCTNL_MSG_CT_NEW};
constexpr Kind kExpectations{"netns-exp", "conntrack expectation", NFNL_SUBSYS_CTNETLINK_EXP, IPCTNL_MSG_EXP_GET,
                             IPCTNL_MSG_EXP_NEW};

std::string file_name(const Kind& k, uint32_t id) { return std::string(k.prefix) + "-" + std::to_string(id) + ".img"; }

uint16_t nl_type(const Kind& k, uint16_t msg) { return uint16_t((k.subsys << 8) | msg); }

// A NETLINK_NETFILTER socket; empty when the kernel has no nfnetlink.
Result<UniqueFd> open_socket() {
  int fd = ::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
  if (fd < 0) {
    if (errno == EPROTONOSUPPORT || errno == EAFNOSUPPORT) return UniqueFd();
    return fail(sys_error("socket", "NETLINK_NETFILTER"));
  }
  UniqueFd sk(fd);
  sockaddr_nl sa{};
  sa.nl_family = AF_NETLINK;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) < 0) return fail(sys_error("bind", "NETLINK_NETFILTER socket"));
  return sk;
}

Status send_msg(int sk, const std::string& msg, const std::string& what) {
  sockaddr_nl to{};
  to.nl_family = AF_NETLINK;
  for (;;) {
    if (::sendto(sk, msg.data(), msg.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to) >= 0) return {};
    if (errno != EINTR) return fail(sys_error("sendto", "ctnetlink (" + what + ")"));
  }
}

// The request header: nlmsghdr then nfgenmsg for every family.
std::string request(uint16_t type, uint16_t flags, uint32_t seq) {
  std::string b(NLMSG_LENGTH(sizeof(nfgenmsg)), '\0');
  auto* h = reinterpret_cast<nlmsghdr*>(b.data());
  h->nlmsg_len = uint32_t(b.size());
  h->nlmsg_type = type;
  h->nlmsg_flags = uint16_t(NLM_F_REQUEST | flags);
  h->nlmsg_seq = seq;
  auto* g = static_cast<nfgenmsg*>(NLMSG_DATA(h));
  g->nfgen_family = AF_UNSPEC;
  g->version = NFNETLINK_V0;
  return b;
}

// Dumps one kind into its image (empty without a socket, `sk` -1); false when the kernel has no
// ctnetlink for it.
Result<bool> dump_kind(int sk, const Kind& k, uint32_t ns_id, int images_dir, size_t& count) {
  std::string name = file_name(k, ns_id);
  auto img = CR_TRY(sys::open_at(images_dir, name, O_WRONLY | O_CREAT | O_TRUNC, 0600));
  if (sk < 0) return false;
  const uint32_t seq = 1;
  CR_OK(send_msg(sk, request(nl_type(k, k.get), NLM_F_DUMP, seq), std::string("dump ") + k.what));
  std::string buf(kRecvBuf, '\0');
  for (;;) {
    ssize_t n = ::recv(sk, buf.data(), buf.size(), 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail(sys_error("recv", std::string("ctnetlink (dump ") + k.what + "s)"));
    }
    int len = int(n);
    for (auto* h = reinterpret_cast<nlmsghdr*>(buf.data()); NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
      if (h->nlmsg_seq != seq) continue;
      if (h->nlmsg_type == NLMSG_DONE) return true;
      if (h->nlmsg_type == NLMSG_ERROR) {
        int err = -static_cast<const nlmsgerr*>(NLMSG_DATA(h))->error;
        if (err == 0) continue;
        // No conntrack module: nothing is tracked, so nothing to dump.
        if (err == ENOENT || err == EOPNOTSUPP || err == EPROTONOSUPPORT) return false;
        errno = err;
        return fail(sys_error("dump", std::string(k.what) + "s"));
      }
      CR_OK(sys::write_all(img.get(), h, h->nlmsg_len, name));
      count++;
    }
  }
}

Status restore_kind(int sk, const Kind& k, uint32_t ns_id, int images_dir, Logger& log) {
  std::string name = file_name(k, ns_id);
  auto text = sys::read_file_at(images_dir, name);
  if (!text) {
    if (text.error().err == ENOENT) return {};
    return fail(text.error());
  }
  if (text->empty()) return {};
  size_t off = 0, made = 0, refused = 0;
  uint32_t seq = 0;
  std::string buf(kRecvBuf, '\0');
  while (off + sizeof(nlmsghdr) <= text->size()) {
    nlmsghdr head{};
    std::memcpy(&head, text->data() + off, sizeof head);
    if (head.nlmsg_len < NLMSG_LENGTH(sizeof(nfgenmsg)) || off + head.nlmsg_len > text->size())
      return fail(make_error(Errc::corrupt_image, "read", name, "a message at offset " + std::to_string(off) + " is cut short")
                      .with_hint("the image is damaged"));
    std::string msg = text->substr(off, head.nlmsg_len);
    off += head.nlmsg_len;
    auto* h = reinterpret_cast<nlmsghdr*>(msg.data());
    h->nlmsg_type = nl_type(k, k.create);
    h->nlmsg_flags = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK;
    h->nlmsg_seq = ++seq;
    h->nlmsg_pid = 0;
    CR_OK(send_msg(sk, msg, std::string("restore ") + k.what));
    for (bool acked = false; !acked;) {
      ssize_t n = ::recv(sk, buf.data(), buf.size(), 0);
      if (n < 0) {
        if (errno == EINTR) continue;
        return fail(sys_error("recv", std::string("ctnetlink (restore ") + k.what + ")"));
      }
      int len = int(n);
      for (auto* r = reinterpret_cast<nlmsghdr*>(buf.data()); NLMSG_OK(r, len); r = NLMSG_NEXT(r, len)) {
        if (r->nlmsg_seq != seq || r->nlmsg_type != NLMSG_ERROR) continue;
        acked = true;
        int err = -static_cast<const nlmsgerr*>(NLMSG_DATA(r))->error;
        if (err == 0) {
          made++;
        } else {
          refused++;
          LOG_WARN(log, "%s %zu of %s not restored: %s", k.what, made + refused, name.c_str(), std::strerror(err));
        }
      }
    }
  }
  std::string more = refused ? ", " + std::to_string(refused) + " refused" : "";
  LOG_INFO(log, "Restored %zu %s(s) of %s%s", made, k.what, name.c_str(), more.c_str());
  return {};
}

}  // namespace

Status dump_conntrack(uint32_t ns_id, int images_dir, Logger& log) {
  auto sk = CR_TRY(open_socket());
  for (const Kind& k : {kEntries, kExpectations}) {
    size_t count = 0;
    bool have = CR_TRY(dump_kind(sk.get(), k, ns_id, images_dir, count));
    if (have) LOG_INFO(log, "Dumped %zu %s(s)", count, k.what);
    else LOG_INFO(log, "No %ss: the kernel has no ctnetlink", k.what);
  }
  return {};
}

Status restore_conntrack(uint32_t ns_id, int images_dir, Logger& log) {
  auto sk = CR_TRY(open_socket());
  if (!sk) {
    LOG_WARN(log, "conntrack entries not restored: the kernel has no nfnetlink");
    return {};
  }
  CR_OK(restore_kind(sk.get(), kEntries, ns_id, images_dir, log));
  return restore_kind(sk.get(), kExpectations, ns_id, images_dir, log);
}

}  // namespace crshim::net
