// What the kernel tells about unix sockets through sock_diag netlink (name, peer, queues, pending
// connections), and the non-destructive reading of a unix socket's receive queue.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "checkpoint/base/result.h"

namespace crshim::files::unixsk {

struct SockDiag {
  uint32_t ino = 0;
  uint8_t type = 0;   // SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET
  uint8_t state = 0;  // TCP_ESTABLISHED 1, TCP_CLOSE 7, TCP_LISTEN 10
  std::string name;   // bound address (sun_path bytes; abstract names start with NUL); "" when unbound
  std::optional<uint32_t> vfs_ino;  // inode of the bound path, when bound to a path
  uint32_t vfs_dev = 0;             // its device, kernel encoding (major << 20 | minor)
  uint32_t peer = 0;                // inode of the peer socket; 0 when none (or the peer is closed)
  std::vector<uint32_t> icons;      // listeners: inodes of connections not accepted yet
  uint32_t rqueue = 0;              // listeners: pending connections; others: queued bytes (first datagram)
  uint32_t wqueue = 0;              // listeners: the listen backlog; others: bytes in flight from this socket
  uint8_t shutdown = 0;             // RCV_SHUTDOWN 1 | SEND_SHUTDOWN 2
};

// Parses the payload of sock_diag replies (a sequence of netlink messages). Stops at NLMSG_DONE;
// an NLMSG_ERROR becomes an error with its errno.
Result<std::vector<SockDiag>> parse_diag(std::span<const uint8_t> buf, const std::string& what);

// The socket with inode `ino` (in crshim's network namespace); not_found when it is not a unix socket.
Result<SockDiag> diag_by_ino(uint32_t ino, int netns_fd = -1);
// Every unix socket of crshim's network namespace.
Result<std::vector<SockDiag>> diag_all(int netns_fd = -1);

// The receive queue of unix socket `fd` (crshim's copy of the task's socket), read with MSG_PEEK
// and SO_PEEK_OFF so that the socket keeps it: one string per datagram/record, or the stream bytes in
// chunks. Queued descriptors (SCM_RIGHTS) are refused.
Result<std::vector<std::string>> peek_queue(int fd, int type, const std::string& what);

}  // namespace crshim::files::unixsk
