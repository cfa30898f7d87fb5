// IPv4/IPv6 TCP and UDP sockets: what inet sock_diag says about them, the pre-freeze check for
// established connections, and the restore of an inet_sk_entry (with tcp-stream-<ino>.img).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "checkpoint/base/result.h"
#include "checkpoint/base/unique_fd.h"
#include "checkpoint/files/kinds.h"

namespace crshim::files::inet {

struct Diag {
  uint8_t family = 0;
  uint8_t state = 0;        // TCP_* states; UDP: TCP_ESTABLISHED when connected, else TCP_CLOSE
  uint16_t sport = 0;       // host order
  uint16_t dport = 0;       // host order
  uint32_t src[4] = {};     // address words as the kernel stores them (network byte order)
  uint32_t dst[4] = {};
  uint32_t rqueue = 0;      // listeners: connections not accepted yet
  uint32_t wqueue = 0;      // listeners: the listen backlog
  uint32_t ino = 0;
  uint8_t shutdown = 0;     // RCV_SHUTDOWN 1 | SEND_SHUTDOWN 2
};

// Every socket of `family`/`protocol` the kernel lists in a network namespace (-1: ours), by inode.
Result<std::map<uint32_t, Diag>> diag_all(int family, int protocol, int netns_fd = -1);

// The socket with inode `ino` among crshim's network namespace's sockets of `family`/`protocol`
// (IPPROTO_TCP or IPPROTO_UDP); nullopt when the kernel does not list it (unbound sockets).
Result<std::optional<Diag>> diag_by_ino(int family, int protocol, uint32_t ino, int netns_fd = -1);

// "127.0.0.1:80 -> 10.0.0.1:5555" (or "[::1]:80 -> ...").
std::string describe(const Diag& d);

// The TCP sockets `pid` holds that `policy` does not let a dump take, as one message ("" when
// none), for the pre-freeze check.
std::string tcp_problems(pid_t pid, const TcpPolicy& policy);

// Creates the socket an INETSK entry describes (bound, listening, connected or repaired).
Result<UniqueFd> open_socket(const file_entry& fe, RestoreFiles& files);

// Takes a repaired connection out of repair mode once the task's whole fd table is in place (its
// other end may be another fd of the task), then sends the data it had not sent yet.
Status finish_socket(const file_entry& fe, int fd, kernel::Remote& r, RestoreFiles& files);

// tcp-stream-<ino hex>.img
std::string tcp_stream_file(uint32_t ino);

}  // namespace crshim::files::inet
