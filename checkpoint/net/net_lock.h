// The network lock (--network-lock iptables|nftables|skip): a dumped network namespace, or each
// established TCP connection of a tree in someone else's, drops its traffic from before its sockets
// are dumped until the restored tree has them back, so no peer sees a reset meanwhile.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "checkpoint/base/log.h"
#include "checkpoint/base/result.h"
#include "checkpoint/engine.h"
#include "checkpoint/net/netns.h"
#include "checkpoint/restore/images.h"

namespace crshim::net {

// One TCP connection as its local socket sees it; addresses in text form ("10.0.0.1", "::1"; an
// IPv4-mapped IPv6 address is given as IPv4, the packets are).
struct TcpConnection {
  bool ipv6 = false;
  std::string local;
  std::string peer;
  uint16_t local_port = 0;
  uint16_t peer_port = 0;
  bool operator==(const TcpConnection&) const = default;
};

// The rule texts (kept apart from running the tools so they can be checked on their own).
namespace lockrules {

// The chain (iptables) a locked namespace jumps to from INPUT and OUTPUT; CRIU's name, so that
// either engine unlocks what the other locked (the chain is in the dumped iptables image).
inline constexpr const char* kChain = "CRIU";
// Packets with this mark pass every lock (CRIU's SOCCR_MARK).
inline constexpr const char* kPassMark = "0xc114";

// iptables-restore --noflush input that makes the filter table drop everything but loopback and
// marked packets, and the one that removes exactly that again.
std::string iptables_namespace_lock();
std::string iptables_namespace_unlock();

// The two rules that drop one connection's packets (INPUT: from the peer, OUTPUT: to it), each as
// iptables-save prints it: "-A INPUT -s PEER/32 -d LOCAL/32 -p tcp -m mark ! --mark 0xc114 -m tcp
// --sport PP --dport LP -j DROP".
std::vector<std::string> iptables_connection_rules(const TcpConnection& c);

// iptables-restore --noflush input adding (-I) or deleting (-D) rules given as iptables-save lines.
std::string iptables_apply(const std::vector<std::string>& saved_rules, bool add);

// The nftables table of a lock: "CRIU-<run id>" (family inet); the run id is the inventory's
// dump_criu_run_id, so a restore finds the table its dump left.
std::string nft_table(const std::string& run_id);

// nft -f input: the table with input/output chains that drop all but loopback and marked packets.
std::string nft_namespace_lock(const std::string& table);
// nft -f input: the table with input/output chains that drop each connection's packets.
std::string nft_connection_lock(const std::string& table, const std::vector<TcpConnection>& conns);
std::string nft_unlock(const std::string& table);

}  // namespace lockrules

// A lock in one network namespace. It knows each piece of it (iptables rules, ip6tables rules, an
// nftables table) and whether it added the piece or found it there (left by the dump). unlock()
// removes every piece; abort() and the destructor remove only the pieces this object added.
class NetworkLock {
 public:
  NetworkLock() = default;
  NetworkLock(NetworkLock&& o) noexcept;
  NetworkLock& operator=(NetworkLock&& o) noexcept;
  NetworkLock(const NetworkLock&) = delete;
  NetworkLock& operator=(const NetworkLock&) = delete;
  ~NetworkLock();

  // The whole namespace `netns_fd` (an nsfs fd; -1: crshim's own).
  static Result<NetworkLock> lock_namespace(NetLockMethod method, int netns_fd, const std::string& run_id, Logger& log);
  // Each connection in `conns`, living in namespace `netns_fd`; other rules are not touched.
  static Result<NetworkLock> lock_connections(NetLockMethod method, int netns_fd, const std::vector<TcpConnection>& conns,
                                              const std::string& run_id, Logger& log);

  bool empty() const { return pieces_.empty(); }
  Status unlock();  // everything, found or added: the tree has its network back
  Status abort();   // what this object added
  void keep() { pieces_.clear(); }  // leaves the lock in place (a killed tree's connections stay quiet)

 private:
  enum class Tool { iptables, ip6tables, nft };
  struct Piece {
    Tool tool;
    std::string add;    // input for iptables-restore --noflush / nft -f
    std::string del;
    std::string probe;  // iptables: a line iptables-save prints while the piece is in; nft: the table
    bool added = false;
  };
  Status apply(bool everything);
  Status take(std::vector<Piece> pieces);

  std::vector<Piece> pieces_;
  UniqueFd netns_;  // empty: crshim's own namespace
  Logger* log_ = nullptr;
};

// Dump: after the tree is frozen and before any socket is dumped. A network namespace of its own
// that is dumped in full is locked whole; otherwise with --tcp-established every TCP connection
// the tree's tasks (`pids`) hold is, in the namespace the sockets live in. Empty with skip.
Result<NetworkLock> lock_for_dump(const DumpRequest& req, const std::vector<pid_t>& pids, const std::string& run_id,
                                  Logger& log);

// Restore: the method the inventory names (iptables when absent) unless `method` is given.
NetLockMethod restore_method(const restorer::ImageSet& set, const std::optional<NetLockMethod>& method);

// Restore: before any socket is made. A namespace restored in full (`plan`) is locked whole, inside
// (`tree_netns`, the root task's); otherwise the TCP connections of the images are, again (rules the
// dump left are found and kept). unlock() once the tree is complete.
Result<NetworkLock> lock_for_restore(const restorer::ImageSet& set, const RestorePlan& plan, int tree_netns,
                                     const std::optional<NetLockMethod>& method, Logger& log);

}  // namespace crshim::net
