#include "checkpoint/net/net_lock.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <set>

#include "checkpoint/base/sys.h"
#include "checkpoint/files/fds.h"
#include "checkpoint/files/inet.h"
#include "checkpoint/files/sock_diag.h"
#include "checkpoint/kernel/proc.h"
#include "checkpoint/net/netns_full.h"
#include "checkpoint/net/rtnl.h"

namespace crshim::net {

namespace lockrules {

std::string iptables_namespace_lock() {
  std::string c = kChain;
  // Declaring the chain creates it (or empties one left over) before the jumps name it.
  return "*filter\n:" + c + " - [0:0]\n-I INPUT -j " + c + "\n-I OUTPUT -j " + c + "\n-A " + c + " -i lo -j ACCEPT\n-A " +
         c + " -o lo -j ACCEPT\n-A " + c + " -m mark --mark " + kPassMark + " -j ACCEPT\n-A " + c + " -j DROP\nCOMMIT\n";
}

std::string iptables_namespace_unlock() {
  std::string c = kChain;
  // The declaration empties the chain, so that it can be deleted once nothing jumps to it.
  return "*filter\n:" + c + " - [0:0]\n-D INPUT -j " + c + "\n-D OUTPUT -j " + c + "\n-X " + c + "\nCOMMIT\n";
}

std::vector<std::string> iptables_connection_rules(const TcpConnection& c) {
  const char* host = c.ipv6 ? "/128" : "/32";
  auto rule = [&](const char* chain, const std::string& src, uint16_t sport, const std::string& dst, uint16_t dport) {
    return std::string("-A ") + chain + " -s " + src + host + " -d " + dst + host + " -p tcp -m mark ! --mark " + kPassMark +
           " -m tcp --sport " + std::to_string(sport) + " --dport " + std::to_string(dport) + " -j DROP";
  };
  return {rule("INPUT", c.peer, c.peer_port, c.local, c.local_port),
          rule("OUTPUT", c.local, c.local_port, c.peer, c.peer_port)};
}

std::string iptables_apply(const std::vector<std::string>& saved_rules, bool add) {
  std::string out = "*filter\n";
  for (const auto& r : saved_rules) {
    // iptables-save prints "-A CHAIN SPEC"; -I puts the lock before any rule that would accept.
    std::string spec = r.starts_with("-A ") ? r.substr(3) : r;
    out += std::string(add ? "-I " : "-D ") + spec + "\n";
  }
  return out + "COMMIT\n";
}

std::string nft_table(const std::string& run_id) { return "CRIU-" + run_id; }

namespace {

std::string nft_chains(const std::string& table, const char* policy) {
  std::string t = "inet " + table;
  return "add table " + t + "\n" + "add chain " + t + " input { type filter hook input priority 0; policy " + policy +
         "; }\n" + "add chain " + t + " output { type filter hook output priority 0; policy " + policy + "; }\n";
}

}  // namespace

std::string nft_namespace_lock(const std::string& table) {
  std::string t = "inet " + table;
  return nft_chains(table, "drop") + "add rule " + t + " input iifname \"lo\" accept\n" + "add rule " + t +
         " output oifname \"lo\" accept\n" + "add rule " + t + " input meta mark " + kPassMark + " accept\n" +
         "add rule " + t + " output meta mark " + kPassMark + " accept\n";
}

std::string nft_connection_lock(const std::string& table, const std::vector<TcpConnection>& conns) {
  std::string t = "inet " + table;
  std::string out = nft_chains(table, "accept");
  for (const auto& c : conns) {
    const char* ip = c.ipv6 ? "ip6" : "ip";
    auto rule = [&](const char* chain, const std::string& src, uint16_t sport, const std::string& dst, uint16_t dport) {
      return "add rule " + t + " " + chain + " " + ip + " saddr " + src + " " + ip + " daddr " + dst + " tcp sport " +
             std::to_string(sport) + " tcp dport " + std::to_string(dport) + " meta mark != " + kPassMark + " drop\n";
    };
    out += rule("input", c.peer, c.peer_port, c.local, c.local_port);
    out += rule("output", c.local, c.local_port, c.peer, c.peer_port);
  }
  return out;
}

std::string nft_unlock(const std::string& table) { return "delete table inet " + table + "\n"; }

}  // namespace lockrules

namespace {

const char* method_name(NetLockMethod m) {
  switch (m) {
    case NetLockMethod::iptables: return "iptables";
    case NetLockMethod::nftables: return "nftables";
    case NetLockMethod::skip: return "skip";
  }
  return "?";
}

// Runs `fn` in the network namespace `netns` (empty: crshim's own).
Status in_ns(const UniqueFd& netns, const std::function<Status()>& fn) {
  if (!netns) return fn();
  return rtnl::in_netns(netns.get(), fn);
}

// What iptables-save (or ip6tables-save) prints for the filter table, one line each.
Result<std::set<std::string>> saved_filter_rules(bool v6) {
  const char* tool = v6 ? "ip6tables-save" : "iptables-save";
  int fd = ::memfd_create(tool, MFD_CLOEXEC);
  if (fd < 0) return fail(sys_error("memfd_create", tool));
  UniqueFd out(fd);
  CR_OK(run_tool({tool, "-t", "filter"}, -1, fd));
  auto text = CR_TRY(sys::read_file("/proc/self/fd/" + std::to_string(fd)));
  std::set<std::string> lines;
  for (auto l : sys::split(text, '\n')) lines.emplace(sys::trim(l));
  return lines;
}

bool nft_table_exists(const std::string& table) { return bool(run_tool({"nft", "list", "table", "inet", table}, -1, -1)); }

Status run_text(const std::vector<std::string>& args, const std::string& text) {
  auto in = CR_TRY(text_fd(text, args[0]));
  return run_tool(args, in.get(), -1);
}

// The lines of an iptables-restore text between "*filter" and "COMMIT": pieces of one table are
// joined into one transaction.
std::string filter_body(const std::string& text) {
  std::string body;
  for (auto l : sys::split(text, '\n'))
    if (l != "*filter" && l != "COMMIT") body += std::string(l) + "\n";
  return body;
}

std::vector<std::string> restore_args(bool v6) {
  return {v6 ? "ip6tables-restore" : "iptables-restore", "-w", "--noflush"};
}

Status need_tool(const char* tool, NetLockMethod m) {
  if (find_tool(tool)) return {};
  return fail(make_error(Errc::not_found, "network lock", tool, std::string("the tool is needed for --network-lock ") + method_name(m))
                  .with_hint(m == NetLockMethod::nftables ? "install nftables, or use --network-lock iptables|skip"
                                                          : "install iptables, or use --network-lock nftables|skip"));
}

bool has_ipv6() { return ::access("/proc/sys/net/ipv6", F_OK) == 0; }

std::string addr_text(int family, const uint32_t* words, bool& v6) {
  char buf[INET6_ADDRSTRLEN] = {};
  const auto* bytes = reinterpret_cast<const uint8_t*>(words);
  static const uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (family == AF_INET6 && memcmp(bytes, kMapped, 12) != 0) {
    v6 = true;
    ::inet_ntop(AF_INET6, bytes, buf, sizeof buf);
  } else {
    v6 = false;
    ::inet_ntop(AF_INET, family == AF_INET6 ? bytes + 12 : bytes, buf, sizeof buf);
  }
  return buf;
}

// Adds the connection between src:sport and dst:dport to `out` unless it is there (an IPv4-mapped
// IPv6 address counts as IPv4).
void add_connection(std::vector<TcpConnection>& out, int family, const uint32_t* src, uint16_t sport,
                    const uint32_t* dst, uint16_t dport) {
  TcpConnection c;
  bool v6_local = false, v6_peer = false;
  c.local = addr_text(family, src, v6_local);
  c.peer = addr_text(family, dst, v6_peer);
  c.ipv6 = v6_local || v6_peer;
  c.local_port = sport;
  c.peer_port = dport;
  if (std::find(out.begin(), out.end(), c) == out.end()) out.push_back(c);
}

// A TCP socket with a peer (not listening, not closed) is a connection to lock.
bool connected_state(uint32_t state) { return state != TCP_LISTEN && state != TCP_CLOSE; }

// The TCP connections the sockets of `pids` hold, as the namespace `netns` lists them.
Result<std::vector<TcpConnection>> tree_connections(const std::vector<pid_t>& pids, int netns) {
  std::set<uint32_t> inodes;
  for (pid_t p : pids) {
    auto fds = files::list_fds(p, false);
    if (!fds) {
      if (fds.error().err == ENOENT) continue;  // a zombie
      return fail(fds.error());
    }
    for (const auto& f : *fds) {
      if (!f.link.starts_with("socket:[")) continue;
      uint64_t ino = 0;
      if (sys::parse_u64(std::string_view(f.link).substr(8, f.link.size() - 9), ino)) inodes.insert(uint32_t(ino));
    }
  }
  // One listing per family, not one per socket.
  std::vector<TcpConnection> out;
  for (int family : {AF_INET, AF_INET6}) {
    auto all = CR_TRY(files::inet::diag_all(family, IPPROTO_TCP, netns));
    for (uint32_t ino : inodes) {
      auto it = all.find(ino);
      if (it == all.end() || !connected_state(it->second.state) || it->second.dport == 0) continue;
      const auto& d = it->second;
      add_connection(out, family, d.src, d.sport, d.dst, d.dport);
    }
  }
  return out;
}

// The TCP connections the images hold.
std::vector<TcpConnection> image_connections(const restorer::ImageSet& set) {
  std::vector<TcpConnection> out;
  for (const auto& [id, fe] : set.files) {
    if (fe.type() != INETSK || !fe.has_isk()) continue;
    const auto& sk = fe.isk();
    if (sk.proto() != IPPROTO_TCP || !connected_state(sk.state()) || sk.dst_port() == 0) continue;
    int family = int(sk.family());
    size_t words = family == AF_INET6 ? 4 : 1;
    if ((family != AF_INET && family != AF_INET6) || size_t(sk.src_addr_size()) < words || size_t(sk.dst_addr_size()) < words)
      continue;
    uint32_t src[4] = {}, dst[4] = {};
    for (size_t i = 0; i < words; i++) {
      src[i] = sk.src_addr(int(i));
      dst[i] = sk.dst_addr(int(i));
    }
    add_connection(out, family, src, uint16_t(sk.src_port()), dst, uint16_t(sk.dst_port()));
  }
  return out;
}

Result<UniqueFd> dup_netns(int netns_fd) {
  if (netns_fd < 0) return UniqueFd();
  int fd = ::fcntl(netns_fd, F_DUPFD_CLOEXEC, 3);
  if (fd < 0) return fail(sys_error("dup", "network namespace fd"));
  return UniqueFd(fd);
}

}  // namespace

NetworkLock::NetworkLock(NetworkLock&& o) noexcept
    : pieces_(std::move(o.pieces_)), netns_(std::move(o.netns_)), log_(o.log_) {
  o.pieces_.clear();
}

NetworkLock& NetworkLock::operator=(NetworkLock&& o) noexcept {
  if (this != &o) {
    (void)abort();
    pieces_ = std::move(o.pieces_);
    o.pieces_.clear();
    netns_ = std::move(o.netns_);
    log_ = o.log_;
  }
  return *this;
}

NetworkLock::~NetworkLock() {
  Status st = abort();
  if (!st && log_) LOG_ERROR(*log_, "Removing the network lock: %s", st.error().render().c_str());
}

// Adds every piece not in place yet, in one tool run per tool; pieces found in place are noted as such.
Status NetworkLock::take(std::vector<Piece> pieces) {
  Status st = in_ns(netns_, [&]() -> Status {
    for (Tool tool : {Tool::iptables, Tool::ip6tables, Tool::nft}) {
      std::string text;
      std::vector<Piece*> mine;
      std::set<std::string> saved;
      if (tool != Tool::nft) {
        bool any = std::any_of(pieces.begin(), pieces.end(), [&](const Piece& p) { return p.tool == tool; });
        if (any) saved = CR_TRY(saved_filter_rules(tool == Tool::ip6tables));
      }
      for (auto& p : pieces) {
        if (p.tool != tool) continue;
        bool present = tool == Tool::nft ? nft_table_exists(p.probe) : saved.count(p.probe) > 0;
        if (present) {
          pieces_.push_back(p);  // the dump's: found, removed by unlock() only
          continue;
        }
        if (tool == Tool::nft) {
          CR_OK(run_text({"nft", "-f", "-"}, p.add));
          p.added = true;
          pieces_.push_back(p);
          continue;
        }
        // iptables pieces are lines of the filter table: one run adds them all.
        text += p.add;
        mine.push_back(&p);
      }
      if (mine.empty()) continue;
      CR_OK(run_text(restore_args(tool == Tool::ip6tables), "*filter\n" + text + "COMMIT\n"));
      for (auto* p : mine) {
        p->added = true;
        pieces_.push_back(*p);
      }
    }
    return {};
  });
  if (!st) (void)abort();  // a lock half made is no lock: what was added goes again
  return st;
}

Status NetworkLock::apply(bool everything) {
  if (pieces_.empty()) return {};
  std::vector<Piece> todo;
  for (auto it = pieces_.rbegin(); it != pieces_.rend(); ++it)
    if (everything || it->added) todo.push_back(*it);
  pieces_.clear();
  if (todo.empty()) return {};
  return in_ns(netns_, [&]() -> Status {
    Status first;
    auto note = [&](Status s) {
      if (!s && first) first = s;
    };
    for (Tool tool : {Tool::nft, Tool::ip6tables, Tool::iptables}) {
      std::set<std::string> saved;
      std::string text;
      bool any = std::any_of(todo.begin(), todo.end(), [&](const Piece& p) { return p.tool == tool; });
      if (!any) continue;
      if (tool != Tool::nft) {
        auto s = saved_filter_rules(tool == Tool::ip6tables);
        if (!s) {
          note(fail(s.error()));
          continue;
        }
        saved = std::move(*s);
      }
      for (const auto& p : todo) {
        if (p.tool != tool) continue;
        // Gone already (someone removed it, or the restore of the namespace replaced its tables): fine.
        if (tool == Tool::nft) {
          if (nft_table_exists(p.probe)) note(run_text({"nft", "-f", "-"}, p.del));
        } else if (saved.count(p.probe)) {
          text += p.del;
        }
      }
      if (!text.empty()) note(run_text(restore_args(tool == Tool::ip6tables), "*filter\n" + text + "COMMIT\n"));
    }
    return first;
  });
}

Status NetworkLock::unlock() { return apply(true); }
Status NetworkLock::abort() { return apply(false); }

Result<NetworkLock> NetworkLock::lock_namespace(NetLockMethod method, int netns_fd, const std::string& run_id, Logger& log) {
  NetworkLock lock;
  lock.log_ = &log;
  if (method == NetLockMethod::skip) return lock;
  lock.netns_ = CR_TRY(dup_netns(netns_fd));
  std::vector<Piece> pieces;
  if (method == NetLockMethod::nftables) {
    CR_OK(need_tool("nft", method));
    std::string table = lockrules::nft_table(run_id);
    pieces.push_back({Tool::nft, lockrules::nft_namespace_lock(table), lockrules::nft_unlock(table), table});
  } else {
    CR_OK(need_tool("iptables-restore", method));
    CR_OK(need_tool("iptables-save", method));
    std::string probe = std::string("-A INPUT -j ") + lockrules::kChain;
    std::string add = filter_body(lockrules::iptables_namespace_lock());
    std::string del = filter_body(lockrules::iptables_namespace_unlock());
    pieces.push_back({Tool::iptables, add, del, probe});
    if (has_ipv6() && find_tool("ip6tables-restore") && find_tool("ip6tables-save"))
      pieces.push_back({Tool::ip6tables, add, del, probe});
  }
  CR_OK_IN(lock.take(std::move(pieces)), "lock the network namespace");
  LOG_INFO(log, "Network namespace locked (%s)", method_name(method));
  return lock;
}

Result<NetworkLock> NetworkLock::lock_connections(NetLockMethod method, int netns_fd,
                                                  const std::vector<TcpConnection>& conns, const std::string& run_id,
                                                  Logger& log) {
  NetworkLock lock;
  lock.log_ = &log;
  if (method == NetLockMethod::skip || conns.empty()) return lock;
  lock.netns_ = CR_TRY(dup_netns(netns_fd));
  std::vector<Piece> pieces;
  if (method == NetLockMethod::nftables) {
    CR_OK(need_tool("nft", method));
    std::string table = lockrules::nft_table(run_id);
    pieces.push_back({Tool::nft, lockrules::nft_connection_lock(table, conns), lockrules::nft_unlock(table), table});
  } else {
    CR_OK(need_tool("iptables-restore", method));
    CR_OK(need_tool("iptables-save", method));
    for (const auto& c : conns) {
      if (c.ipv6) {
        CR_OK(need_tool("ip6tables-restore", method));
        CR_OK(need_tool("ip6tables-save", method));
      }
      for (const auto& r : lockrules::iptables_connection_rules(c))
        pieces.push_back({c.ipv6 ? Tool::ip6tables : Tool::iptables, filter_body(lockrules::iptables_apply({r}, true)),
                          filter_body(lockrules::iptables_apply({r}, false)), r});
    }
  }
  CR_OK_IN(lock.take(std::move(pieces)), "lock " + std::to_string(conns.size()) + " TCP connection(s)");
  for (const auto& c : conns)
    LOG_INFO(log, "TCP connection %s:%u -> %s:%u locked (%s)", c.local.c_str(), c.local_port, c.peer.c_str(), c.peer_port,
             method_name(method));
  return lock;
}

Result<NetworkLock> lock_for_dump(const DumpRequest& req, const std::vector<pid_t>& pids, const std::string& run_id,
                                  Logger& log) {
  if (req.network_lock == NetLockMethod::skip || pids.empty()) return NetworkLock{};
  pid_t root = pids[0];
  uint64_t mine = CR_TRY(proc::ns_inode(getpid(), "net"));
  uint64_t theirs = CR_TRY(proc::ns_inode(root, "net"));
  std::string path = "/proc/" + std::to_string(root) + "/ns/net";
  if (mine != theirs && !external_key(req.external, theirs) && !(req.empty_ns & CLONE_NEWNET)) {
    auto ns = CR_TRY(sys::open(path, O_RDONLY));
    return NetworkLock::lock_namespace(req.network_lock, ns.get(), run_id, log);
  }
  if (!req.tcp_established) return NetworkLock{};
  auto ns = CR_TRY(files::sockdiag::task_netns(root));
  auto conns = CR_TRY(tree_connections(pids, ns.get()));
  return NetworkLock::lock_connections(req.network_lock, ns.get(), conns, run_id, log);
}

NetLockMethod restore_method(const restorer::ImageSet& set, const std::optional<NetLockMethod>& method) {
  if (method) return *method;
  if (!set.inventory.has_network_lock_method()) return NetLockMethod::iptables;  // older images, as CRIU
  switch (set.inventory.network_lock_method()) {
    case 1: return NetLockMethod::nftables;
    case 2: return NetLockMethod::skip;
    default: return NetLockMethod::iptables;
  }
}

Result<NetworkLock> lock_for_restore(const restorer::ImageSet& set, const RestorePlan& plan, int tree_netns,
                                     const std::optional<NetLockMethod>& method, Logger& log) {
  NetLockMethod m = restore_method(set, method);
  const std::string& run_id = set.inventory.dump_criu_run_id();
  if (m == NetLockMethod::skip) return NetworkLock{};
  if (plan.full) return NetworkLock::lock_namespace(m, tree_netns, run_id, log);
  auto conns = image_connections(set);
  if (conns.empty()) return NetworkLock{};
  return NetworkLock::lock_connections(m, tree_netns, conns, run_id, log);
}

}  // namespace crshim::net
