// A small rtnetlink client (links only: list, create veth pairs, change, delete) bound to the network
// namespace of the thread that opened it, and a helper that runs code inside another network namespace.
#pragma once

#include <linux/rtnetlink.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "checkpoint/base/result.h"
#include "checkpoint/base/unique_fd.h"

namespace crshim::net::rtnl {

// One link as RTM_GETLINK reports it.
struct Link {
  int index = 0;
  unsigned type = 0;   // ARPHRD_*
  unsigned flags = 0;  // IFF_*
  uint32_t mtu = 0;
  std::string name;
  std::string kind;                 // IFLA_INFO_KIND ("veth", "bridge", ...), "" when none
  std::string address;              // link-layer address bytes
  std::optional<int> link;          // IFLA_LINK: the peer's ifindex (veth)
  std::optional<int> link_netnsid;  // IFLA_LINK_NETNSID: the peer lives in another namespace
  std::optional<uint32_t> master;   // IFLA_MASTER
};

// A request under construction: netlink header, ifinfomsg, attributes (nestable).
class Message {
 public:
  Message(uint16_t type, uint16_t flags, const ifinfomsg& ifi);
  void put(uint16_t type, const void* data, size_t len);
  void put_str(uint16_t type, const std::string& s);  // NUL-terminated, as the kernel expects
  void put_u32(uint16_t type, uint32_t v) { put(type, &v, sizeof v); }
  size_t begin_nest(uint16_t type);  // returns the offset to hand to end_nest
  void end_nest(size_t at);
  void put_raw(const void* data, size_t len);  // unattributed bytes (the peer's ifinfomsg of a veth)
  std::string& bytes() { return buf_; }

 private:
  void align();
  std::string buf_;
};

class Socket {
 public:
  // A NETLINK_ROUTE socket in the calling thread's network namespace.
  static Result<Socket> open();
  Result<std::vector<Link>> links();
  // Sends one request and waits for its acknowledgement; `what` names it in errors.
  Status request(Message& msg, const std::string& what);
  // Deletes the link called `name`.
  Status delete_link(const std::string& name);
  // Index of the link called `name` (ENODEV when there is none).
  Result<int> index_of(const std::string& name);

 private:
  explicit Socket(UniqueFd fd) : fd_(std::move(fd)) {}
  Status send(Message& msg, const std::string& what);
  UniqueFd fd_;
  uint32_t seq_ = 0;
};

// Runs `fn` on a thread of its own that first joins the network namespace `netns_fd`: sockets it
// opens, /proc/sys/net it reads and programs it starts all belong to that namespace.
Status in_netns(int netns_fd, const std::function<Status()>& fn);

// socket(2) in the network namespace `netns_fd` (a socket stays in the namespace it was made in):
// for sockets restored into a tree whose namespace is not crshim's.
Result<UniqueFd> socket_in(int netns_fd, int family, int type, int protocol);

}  // namespace crshim::net::rtnl
