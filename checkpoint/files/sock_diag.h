// The NETLINK_SOCK_DIAG transport both socket families use: send one request, collect the replies.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "checkpoint/base/result.h"
#include "checkpoint/base/unique_fd.h"

namespace crshim::files::sockdiag {

// An unaligned read of a kernel struct from a reply buffer.
template <class T>
T load(const uint8_t* p) {
  T v;
  memcpy(&v, p, sizeof v);
  return v;
}

inline Error bad_reply(const std::string& what, const std::string& why) {
  return make_error(Errc::internal, "sock_diag", what, "malformed reply: " + why);
}

// Sends SOCK_DIAG_BY_FAMILY with `req` (a family's *_diag_req) and returns the raw reply datagrams:
// until one holds NLMSG_DONE with `dump`, else the first. Parsing (and NLMSG_ERROR) is the caller's.
// The kernel lists the sockets of the network namespace the request is made in: `netns_fd` (an
// nsfs fd) when given, else crshim's.
Result<std::vector<std::vector<uint8_t>>> request(const void* req, size_t req_len, bool dump, const std::string& what,
                                                  int netns_fd = -1);

// The network namespace whose sockets list `pid`'s (its own) or socket `fd` (the one it was made in),
// as an nsfs fd; an empty fd when it is crshim's own namespace, so the common case needs no helper.
Result<UniqueFd> task_netns(pid_t pid);
Result<UniqueFd> socket_netns(int fd, const std::string& what);

}  // namespace crshim::files::sockdiag
