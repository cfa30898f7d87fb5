#include "checkpoint/net/netns_full.h"

#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_arp.h>
#include <linux/if_link.h>
#include <linux/veth.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <optional>

#include "checkpoint/base/sys.h"
#include "checkpoint/image/catalog.h"
#include "checkpoint/image/image.h"
#include "checkpoint/net/conntrack.h"
#include "checkpoint/net/rtnl.h"
#include "netdev.pb.h"
#include "sysctl.pb.h"

namespace crshim::net {

namespace {

// The per-device sysctls CRIU saves, in its order: the image pairs values with names by position.
constexpr std::array kConf4 = {
    "accept_local", "accept_redirects", "accept_source_route", "arp_accept", "arp_announce", "arp_filter",
    "arp_ignore", "arp_notify", "bootp_relay", "disable_policy", "disable_xfrm", "force_igmp_version",
    "forwarding", "igmpv2_unsolicited_report_interval", "igmpv3_unsolicited_report_interval", "log_martians",
    "medium_id", "promote_secondaries", "proxy_arp", "proxy_arp_pvlan", "route_localnet", "rp_filter",
    "secure_redirects", "send_redirects", "shared_media", "src_valid_mark", "tag", "ignore_routes_with_linkdown",
    "drop_gratuitous_arp", "drop_unicast_in_l2_multicast",
};
constexpr std::array kConf6 = {
    "accept_dad", "accept_ra", "accept_ra_defrtr", "accept_ra_from_local", "accept_ra_min_hop_limit",
    "accept_ra_mtu", "accept_ra_pinfo", "accept_ra_rt_info_max_plen", "accept_ra_rtr_pref", "accept_redirects",
    "accept_source_route", "autoconf", "dad_transmits", "disable_ipv6", "drop_unicast_in_l2_multicast",
    "drop_unsolicited_na", "force_mld_version", "force_tllao", "forwarding", "hop_limit",
    "ignore_routes_with_linkdown", "keep_addr_on_down", "max_addresses", "max_desync_factor",
    "mldv1_unsolicited_report_interval", "mldv2_unsolicited_report_interval", "mtu", "ndisc_notify",
    "optimistic_dad", "proxy_ndp", "regen_max_retry", "router_probe_interval", "router_solicitation_delay",
    "router_solicitation_interval", "router_solicitations", "stable_secret", "suppress_frag_ndisc",
    "temp_prefered_lft", "temp_valid_lft", "use_oif_addrs_only", "use_optimistic", "use_tempaddr",
};
constexpr const char* kUnixConf[] = {"max_dgram_qlen"};

// Link flags a restore sets from the image (the others are the kernel's to report).
constexpr unsigned kRestoredFlags = IFF_UP | IFF_NOARP | IFF_MULTICAST;

std::string file_name(const char* prefix, uint32_t id) { return std::string(prefix) + "-" + std::to_string(id) + ".img"; }

// ---- sysctls (read and written from a thread inside the namespace) ----

std::optional<std::string> read_sysctl(const std::string& rel) {
  auto text = sys::read_file("/proc/sys/net/" + rel, 4096);
  if (!text) return std::nullopt;
  std::string s = std::string(sys::trim(*text));
  return s;
}

void read_conf(const std::string& rel, bool string_type, sysctl_entry& e) {
  e.set_type(string_type ? CTL_STR : CTL_32);
  auto v = read_sysctl(rel);
  if (!v) return;  // absent on this kernel (or unset, stable_secret): no value in the image
  if (string_type) {
    e.set_sarg(*v);
    return;
  }
  int64_t n = 0;
  if (sys::parse_i64(*v, n)) e.set_iarg(int32_t(n));
}

template <typename Names, typename Field>
void read_confs(const std::string& proto, const std::string& dev, const Names& names, Field* out) {
  for (const char* name : names) {
    bool str = std::string_view(name) == "stable_secret";
    read_conf(proto + "/conf/" + dev + "/" + name, str, *out->Add());
  }
}

// Writes the values of `confs` (paired with `names` by position) that differ from what the namespace
// has; a value the kernel refuses is a warning, as CRIU's --weak-sysctls makes it.
template <typename Names, typename Field>
void write_confs(const std::string& proto, const std::string& dev, const Names& names, const Field& confs, Logger& log) {
  std::optional<size_t> redirects;
  auto write_one = [&](size_t i) {
    const sysctl_entry& e = confs.Get(int(i));
    std::string want;
    if (e.type() == CTL_STR && e.has_sarg()) want = e.sarg();
    else if (e.type() == CTL_32 && e.has_iarg()) want = std::to_string(e.iarg());
    else return;
    std::string rel = proto + "/conf/" + dev + "/" + names[i];
    auto have = read_sysctl(rel);
    if (have && *have == want) return;
    if (Status st = sys::write_file("/proc/sys/net/" + rel, want); !st)
      LOG_WARN(log, "sysctl net/%s = %s not restored: %s", rel.c_str(), want.c_str(), st.error().render().c_str());
  };
  for (size_t i = 0; i < names.size() && i < size_t(confs.size()); i++) {
    // After forwarding, which resets it.
    if (std::string_view(names[i]) == "accept_redirects") redirects = i;
    else write_one(i);
  }
  if (redirects) write_one(*redirects);
}

const char* const kToolEnv[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C", nullptr};

}  // namespace

// ---- nftables and iptables texts ----

namespace nftrules {

namespace {

// Calls fn(line) for each line of `text`, without its '\n'.
template <typename Fn>
void each_line(std::string_view text, Fn fn) {
  while (!text.empty()) {
    size_t nl = text.find('\n');
    fn(text.substr(0, nl));
    if (nl == std::string_view::npos) break;
    text.remove_prefix(nl + 1);
  }
}

// "table inet t {" -> "inet t"; "" for any other line.
std::string table_of(std::string_view line) {
  if (!line.starts_with("table ") || !line.ends_with(" {")) return "";
  return std::string(line.substr(6, line.size() - 8));
}

}  // namespace

std::vector<std::string> tables(std::string_view ruleset) {
  std::vector<std::string> out;
  each_line(ruleset, [&](std::string_view line) {
    if (auto t = table_of(line); !t.empty()) out.push_back(t);
  });
  return out;
}

std::string without_tables(std::string_view ruleset, const std::set<std::string>& drop) {
  std::string out;
  bool dropping = false;
  // nft prints each table as "table FAMILY NAME {" ... "}", both at the start of a line.
  each_line(ruleset, [&](std::string_view line) {
    if (auto t = table_of(line); !t.empty()) dropping = drop.count(t) > 0;
    if (!dropping) out.append(line).push_back('\n');
    if (line == "}") dropping = false;
  });
  return out;
}

bool is_lock_table(std::string_view table) { return table.starts_with("inet CRIU-"); }

bool save_is_nft(std::string_view save) {
  bool nft = false;
  each_line(save, [&](std::string_view line) {
    if (line.starts_with("# Generated by ") && line.find("(nf_tables)") != std::string_view::npos) nft = true;
  });
  return nft;
}

std::vector<std::string> save_tables(std::string_view save, bool complete_only) {
  std::vector<std::string> all;
  std::set<std::string> partial;
  each_line(save, [&](std::string_view line) {
    if (line.starts_with("*")) all.emplace_back(line.substr(1));
    // "# Table `raw' is incompatible, use 'nft' tool." / "# Table `nat' contains incompatible base-chains, ..."
    if (line.starts_with("# Table `") && line.find("incompatible") != std::string_view::npos) {
      line.remove_prefix(9);
      partial.emplace(line.substr(0, line.find('\'')));
    }
  });
  if (!complete_only) return all;
  std::vector<std::string> out;
  for (auto& t : all)
    if (!partial.count(t)) out.push_back(t);
  return out;
}

std::string save_without(std::string_view save, const std::set<std::string>& drop) {
  std::string out;
  bool dropping = false;
  each_line(save, [&](std::string_view line) {
    if (line.starts_with("*")) dropping = drop.count(std::string(line.substr(1))) > 0;
    if (!dropping) out.append(line).push_back('\n');
    if (line == "COMMIT") dropping = false;
  });
  return out;
}

}  // namespace nftrules

// ---- external tools (ip, iptables-save, nft) run inside the namespace ----

std::optional<std::string> find_tool(const std::string& name) {
  for (const char* dir : {"/usr/sbin", "/sbin", "/usr/bin", "/bin"}) {
    std::string p = std::string(dir) + "/" + name;
    if (::access(p.c_str(), X_OK) == 0) return p;
  }
  return std::nullopt;
}

// Runs `args` (args[0] found in the usual directories) with stdin `in` and stdout `out` (-1: none) and
// waits; a failure carries the last line the tool wrote to stderr.
Result<UniqueFd> text_fd(const std::string& text, const std::string& name) {
  UniqueFd mem(::memfd_create(name.c_str(), MFD_CLOEXEC));
  if (!mem) return fail(sys_error("memfd_create", name));
  CR_OK(sys::write_all(mem.get(), text, name));
  if (::lseek(mem.get(), 0, SEEK_SET) < 0) return fail(sys_error("lseek", name));
  return mem;
}

Status run_tool(const std::vector<std::string>& args, int in, int out) {
  std::string what;
  for (const auto& a : args) what += (what.empty() ? "" : " ") + a;
  auto path = find_tool(args[0]);
  if (!path)
    return fail(make_error(Errc::not_found, "find", args[0], "the tool is needed for network namespaces")
                    .with_hint(args[0] == "ip" ? "install iproute2" : args[0] == "nft" ? "install nftables" : "install iptables"));
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  auto devnull = CR_TRY(sys::open("/dev/null", O_RDWR));
  int errp[2];
  if (::pipe2(errp, O_CLOEXEC) < 0) return fail(sys_error("pipe2", what));
  UniqueFd err_rd(errp[0]), err_wr(errp[1]);
  int in_fd = in >= 0 ? in : devnull.get(), out_fd = out >= 0 ? out : devnull.get();
  pid_t child = ::fork();
  if (child < 0) return fail(sys_error("fork", what));
  if (child == 0) {
    // Raw calls only: a fork of a multi-threaded process.
    if (::dup2(in_fd, 0) < 0 || ::dup2(out_fd, 1) < 0 || ::dup2(errp[1], 2) < 0) ::_exit(127);
    ::execve(path->c_str(), argv.data(), const_cast<char* const*>(kToolEnv));
    ::_exit(127);
  }
  err_wr.reset();
  std::string errors;
  char buf[1024];
  for (;;) {
    ssize_t n = ::read(err_rd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    errors.append(buf, size_t(n));
    if (errors.size() > 8192) errors.erase(0, errors.size() - 8192);
  }
  int status = 0;
  while (::waitpid(child, &status, 0) < 0)
    if (errno != EINTR) return fail(sys_error("waitpid", what));
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return {};
  auto lines = sys::split(errors, '\n');
  std::string last = lines.empty() ? "" : std::string(sys::trim(lines.back()));
  return fail(make_error(Errc::system, "run", what,
                         (WIFEXITED(status) ? "exited with " + std::to_string(WEXITSTATUS(status))
                                            : "killed by signal " + std::to_string(WTERMSIG(status))) +
                             (last.empty() ? "" : ": " + last)));
}

namespace {

// Runs a tool with its stdout going to the raw image `name`.
Status tool_to_image(const std::vector<std::string>& args, int images_dir, const std::string& name) {
  auto fd = CR_TRY(sys::open_at(images_dir, name, O_WRONLY | O_CREAT | O_TRUNC, 0600));
  return run_tool(args, -1, fd.get()).map_error([&](Error e) { return e.within("write " + name); });
}

// Feeds the raw image `name` to a tool; returns false when the image is absent or holds nothing
// beyond `min_size` bytes (ip's save files start with a 4-byte magic).
Result<bool> image_to_tool(const std::vector<std::string>& args, int images_dir, const std::string& name,
                           off_t min_size) {
  auto fd = sys::open_at(images_dir, name, O_RDONLY);
  if (!fd) {
    if (fd.error().err == ENOENT) return false;
    return fail(fd.error());
  }
  struct stat st {};
  if (::fstat(fd->get(), &st) < 0) return fail(sys_error("fstat", name));
  if (st.st_size <= min_size) return false;
  CR_OK(run_tool(args, fd->get(), -1).map_error([&](Error e) { return e.within("restore " + name); }));
  return true;
}

// ip's route save keeps the kernel's DEAD/LINKDOWN nexthop flags (a route over a link whose peer was
// down at dump), and the kernel refuses them in a new route: a copy of the image without them.
Result<UniqueFd> routes_without_dead_flags(int images_dir, const std::string& name) {
  auto text = CR_TRY(sys::read_file_at(images_dir, name));
  const unsigned bad = RTNH_F_DEAD | RTNH_F_LINKDOWN;
  size_t off = 4;  // ip's magic
  while (off + sizeof(nlmsghdr) <= text.size()) {
    auto* h = reinterpret_cast<nlmsghdr*>(&text[off]);
    if (h->nlmsg_len < sizeof(nlmsghdr) || off + h->nlmsg_len > text.size()) break;
    if (h->nlmsg_type == RTM_NEWROUTE && h->nlmsg_len >= NLMSG_LENGTH(sizeof(rtmsg))) {
      auto* rt = static_cast<rtmsg*>(NLMSG_DATA(h));
      rt->rtm_flags &= ~bad;
      int len = int(h->nlmsg_len - NLMSG_LENGTH(sizeof(rtmsg)));
      for (rtattr* a = RTM_RTA(rt); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
        if (a->rta_type != RTA_MULTIPATH) continue;
        int nlen = int(RTA_PAYLOAD(a));
        for (auto* nh = static_cast<rtnexthop*>(RTA_DATA(a)); RTNH_OK(nh, nlen);
             nlen -= int(NLMSG_ALIGN(nh->rtnh_len)), nh = RTNH_NEXT(nh))
          nh->rtnh_flags &= ~bad;
      }
    }
    off += NLMSG_ALIGN(h->nlmsg_len);
  }
  return text_fd(text, name);
}

// Feeds the route image `name` (without dead flags) to ip route restore.
Status restore_routes(int images_dir, const std::string& name, bool ipv6) {
  struct stat st {};
  if (::fstatat(images_dir, name.c_str(), &st, 0) < 0) {
    if (errno == ENOENT) return {};
    return fail(sys_error("stat", name));
  }
  if (st.st_size <= 4) return {};
  auto fd = CR_TRY(routes_without_dead_flags(images_dir, name));
  std::vector<std::string> args = {"ip"};
  if (ipv6) args.push_back("-6");
  args.insert(args.end(), {"route", "restore"});
  return run_tool(args, fd.get(), -1).map_error([&](Error e) { return e.within("restore " + name); });
}

bool has_ipv6() { return ::access("/proc/sys/net/ipv6", F_OK) == 0; }

// ---- dump ----

std::string link_problem(const rtnl::Link& l) {
  if (l.type == ARPHRD_LOOPBACK) return "";
  if (l.kind == "veth") {
    if (!l.link_netnsid) return "veth " + l.name + " has its peer in the same namespace (not supported)";
    return "";
  }
  return "link " + l.name + " (kind " + (l.kind.empty() ? "none, type " + std::to_string(l.type) : l.kind) +
         ") is not supported (only lo and veth are)";
}

Status dump_links(uint32_t ns_id, uint32_t host_ns_id, int images_dir, Logger& log) {
  auto sk = CR_TRY(rtnl::Socket::open());
  auto links = CR_TRY(sk.links());
  std::string name = file_name("netdev", ns_id);
  auto w = CR_TRY(image::Writer::create(images_dir, name, image::kind(image::Type::netdev)));
  for (const auto& l : links) {
    if (auto problem = link_problem(l); !problem.empty())
      return fail(make_error(Errc::unsupported, "dump", "network namespace", problem));
    net_device_entry e;
    bool lo = l.type == ARPHRD_LOOPBACK;
    e.set_type(lo ? LOOPBACK : VETH);
    e.set_ifindex(uint32_t(l.index));
    e.set_mtu(l.mtu);
    e.set_flags(l.flags);
    e.set_name(l.name);
    if (!lo && !l.address.empty()) e.set_address(l.address);
    e.set_peer_ifindex(uint32_t(l.link.value_or(l.index)));
    // As CRIU: a link without a peer names itself, in this namespace; a veth's peer is taken to be
    // in crshim's (the restore puts it there, named by --external veth[..]).
    e.set_peer_nsid(lo ? ns_id : host_ns_id);
    if (l.master) e.set_master(*l.master);
    read_confs("ipv4", l.name, kConf4, e.mutable_conf4());
    read_confs("ipv6", l.name, kConf6, e.mutable_conf6());
    LOG_INFO(log, "Link %d %s: %s, mtu %u, flags %#x", l.index, l.name.c_str(), lo ? "loopback" : "veth", l.mtu, l.flags);
    CR_OK(w.write(e));
  }
  return w.close();
}

// The tables the iptables images carry, as nftables names them ("ip filter"): iptables-nft keeps
// its rules in nftables tables, which `nft list ruleset` lists too. Tables iptables-save printed only
// in part (incompatible) are not among them: the nftables image carries them whole.
Result<std::set<std::string>> iptables_owned(uint32_t ns_id, int images_dir) {
  std::set<std::string> owned;
  for (auto [prefix, family] : {std::pair{"iptables", "ip"}, std::pair{"ip6tables", "ip6"}}) {
    auto text = sys::read_file_at(images_dir, file_name(prefix, ns_id));
    if (!text) {
      if (text.error().err == ENOENT) continue;
      return fail(text.error());
    }
    if (!nftrules::save_is_nft(*text)) continue;  // legacy xtables: not nftables tables
    for (const auto& t : nftrules::save_tables(*text, true)) owned.insert(std::string(family) + " " + t);
  }
  return owned;
}

// nftables-N.img: `nft list ruleset` without the lock's tables and those the iptables images carry,
// so a restore brings each table back once.
Status dump_nftables(uint32_t ns_id, int images_dir, Logger& log) {
  if (!find_tool("nft")) {
    LOG_WARN(log, "nft not found: the namespace's nftables rules are not dumped");
    return {};
  }
  std::string name = file_name("nftables", ns_id);
  auto out = CR_TRY(text_fd("", name));
  CR_OK(run_tool({"nft", "list", "ruleset"}, -1, out.get()).map_error([&](Error e) { return e.within("write " + name); }));
  if (::lseek(out.get(), 0, SEEK_SET) < 0) return fail(sys_error("lseek", name));
  std::string ruleset = CR_TRY(sys::read_all(out.get(), name));
  std::set<std::string> drop = CR_TRY(iptables_owned(ns_id, images_dir));
  for (const auto& t : nftrules::tables(ruleset)) {
    if (nftrules::is_lock_table(t)) drop.insert(t);
    LOG_INFO(log, "nftables table %s: %s", t.c_str(),
             nftrules::is_lock_table(t) ? "network lock, not dumped"
             : drop.count(t)           ? "in the iptables image"
                                       : "dumped");
  }
  auto fd = CR_TRY(sys::open_at(images_dir, name, O_WRONLY | O_CREAT | O_TRUNC, 0600));
  return sys::write_all(fd.get(), nftrules::without_tables(ruleset, drop), name);
}

Status dump_inside(uint32_t ns_id, uint32_t host_ns_id, int images_dir, Logger& log) {
  netns_entry ns;
  read_confs("ipv4", "default", kConf4, ns.mutable_def_conf4());
  read_confs("ipv4", "all", kConf4, ns.mutable_all_conf4());
  read_confs("ipv6", "default", kConf6, ns.mutable_def_conf6());
  read_confs("ipv6", "all", kConf6, ns.mutable_all_conf6());
  for (const char* n : kUnixConf) {
    auto* e = ns.add_unix_conf();
    e->set_type(CTL_32);
    int64_t v = 0;
    if (auto s = read_sysctl(std::string("unix/") + n); s && sys::parse_i64(*s, v)) e->set_iarg(int32_t(v));
  }
  CR_OK(image::write_single(images_dir, file_name("netns", ns_id), image::kind(image::Type::netns), ns));
  CR_OK(dump_links(ns_id, host_ns_id, images_dir, log));
  CR_OK(tool_to_image({"ip", "addr", "save"}, images_dir, file_name("ifaddr", ns_id)));
  CR_OK(tool_to_image({"ip", "route", "save"}, images_dir, file_name("route", ns_id)));
  if (has_ipv6()) CR_OK(tool_to_image({"ip", "-6", "route", "save"}, images_dir, file_name("route6", ns_id)));
  CR_OK(tool_to_image({"ip", "rule", "save"}, images_dir, file_name("rule", ns_id)));
  if (find_tool("iptables-save")) {
    CR_OK(tool_to_image({"iptables-save"}, images_dir, file_name("iptables", ns_id)));
    if (has_ipv6()) CR_OK(tool_to_image({"ip6tables-save"}, images_dir, file_name("ip6tables", ns_id)));
  } else {
    LOG_WARN(log, "iptables-save not found: the namespace's iptables rules are not dumped");
  }
  CR_OK(dump_nftables(ns_id, images_dir, log));
  return dump_conntrack(ns_id, images_dir, log);
}

// ---- restore ----

// --external veth[IN]:OUT[@BRIDGE] for the inner link `inner`.
struct VethMapping {
  std::string outer;
  std::string bridge;
};
std::optional<VethMapping> veth_mapping(const std::vector<std::string>& external, const std::string& inner) {
  std::string prefix = "veth[" + inner + "]:";
  for (const auto& e : external) {
    if (!e.starts_with(prefix) || e.size() == prefix.size()) continue;
    std::string v = e.substr(prefix.size());
    VethMapping m;
    auto at = v.find('@');
    m.outer = v.substr(0, at);
    if (at != std::string::npos) m.bridge = v.substr(at + 1);
    return m;
  }
  return std::nullopt;
}

Status set_link(rtnl::Socket& sk, const net_device_entry& e, bool flags_too) {
  ifinfomsg ifi{};
  ifi.ifi_family = AF_UNSPEC;
  ifi.ifi_index = int(e.ifindex());
  if (flags_too) {
    ifi.ifi_flags = e.flags() & kRestoredFlags;
    ifi.ifi_change = kRestoredFlags;
  }
  rtnl::Message m(RTM_NEWLINK, 0, ifi);
  m.put_u32(IFLA_MTU, e.mtu());
  return sk.request(m, "set link " + e.name());
}

Status create_veth(rtnl::Socket& sk, const net_device_entry& e, const VethMapping& map, int host_ns) {
  ifinfomsg ifi{};
  ifi.ifi_family = AF_UNSPEC;
  ifi.ifi_index = int(e.ifindex());  // the saved addresses and routes name links by index
  rtnl::Message m(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, ifi);
  m.put_str(IFLA_IFNAME, e.name());
  m.put_u32(IFLA_MTU, e.mtu());
  if (e.has_address()) m.put(IFLA_ADDRESS, e.address().data(), e.address().size());
  size_t info = m.begin_nest(IFLA_LINKINFO);
  m.put(IFLA_INFO_KIND, "veth", 4);
  size_t data = m.begin_nest(IFLA_INFO_DATA);
  size_t peer = m.begin_nest(VETH_INFO_PEER);
  ifinfomsg peer_ifi{};
  peer_ifi.ifi_family = AF_UNSPEC;
  m.put_raw(&peer_ifi, sizeof peer_ifi);
  m.put_str(IFLA_IFNAME, map.outer);
  m.put_u32(IFLA_MTU, e.mtu());
  m.put_u32(IFLA_NET_NS_FD, uint32_t(host_ns));
  m.end_nest(peer);
  m.end_nest(data);
  m.end_nest(info);
  return sk.request(m, "create veth " + e.name() + " (host end " + map.outer + ")");
}

struct RestoreCtx {
  uint32_t ns_id;
  const std::vector<std::string>& external;
  int images_dir;
  int host_ns;
  Logger& log;
  std::vector<std::string> created;  // host ends, for the guard
  std::vector<std::pair<std::string, std::string>> bridges;  // host end -> bridge
};

// The iptables images, then the nftables one. A table the nftables image holds comes from it alone
// (an image of CRIU's may hold iptables-nft's tables in both): iptables-restore does not get it.
Result<std::string> read_optional(int images_dir, const std::string& name) {
  auto text = sys::read_file_at(images_dir, name);
  if (!text && text.error().err == ENOENT) return std::string();
  return text;
}

Status restore_firewall(RestoreCtx& c) {
  std::string nft_name = file_name("nftables", c.ns_id);
  std::string ruleset = CR_TRY(read_optional(c.images_dir, nft_name));
  std::set<std::string> locks;
  std::set<std::string> held;
  for (const auto& t : nftrules::tables(ruleset)) {
    if (nftrules::is_lock_table(t)) locks.insert(t);  // the restore's own lock is made apart
    else held.insert(t);
  }
  for (auto [prefix, family] : {std::pair{"iptables", "ip"}, std::pair{"ip6tables", "ip6"}}) {
    std::string name = file_name(prefix, c.ns_id);
    std::string save = CR_TRY(read_optional(c.images_dir, name));
    std::set<std::string> skip;
    if (nftrules::save_is_nft(save))
      for (const auto& t : nftrules::save_tables(save, false))
        if (held.count(std::string(family) + " " + t)) skip.insert(t);
    save = nftrules::save_without(save, skip);
    if (nftrules::save_tables(save, false).empty()) continue;
    auto in = CR_TRY(text_fd(save, name));
    CR_OK(run_tool({std::string(prefix) + "-restore"}, in.get(), -1).map_error([&](Error e) {
      return e.within("restore " + name);
    }));
  }
  if (held.empty()) return {};
  auto in = CR_TRY(text_fd(nftrules::without_tables(ruleset, locks), nft_name));
  CR_OK(run_tool({"nft", "-f", "-"}, in.get(), -1).map_error([&](Error e) { return e.within("restore " + nft_name); }));
  LOG_INFO(c.log, "Restored %zu nftables table(s)", held.size());
  return {};
}

Status restore_inside(RestoreCtx& c) {
  netns_entry ns;
  {
    auto rd = CR_TRY(image::Reader::open(c.images_dir, file_name("netns", c.ns_id), image::kind(image::Type::netns)));
    CR_OK(rd.read_one(ns));
  }
  // Namespace-wide values first ("all" also changes every link's), then the defaults new links take.
  write_confs("ipv4", "all", kConf4, ns.all_conf4(), c.log);
  write_confs("ipv4", "default", kConf4, ns.def_conf4(), c.log);
  write_confs("ipv6", "all", kConf6, ns.all_conf6(), c.log);
  write_confs("ipv6", "default", kConf6, ns.def_conf6(), c.log);
  for (size_t i = 0; i < std::size(kUnixConf) && int(i) < ns.unix_conf_size(); i++) {
    const auto& e = ns.unix_conf(int(i));
    if (e.has_iarg()) {
      std::string rel = std::string("unix/") + kUnixConf[i];
      if (Status st = sys::write_file("/proc/sys/net/" + rel, std::to_string(e.iarg())); !st)
        LOG_WARN(c.log, "sysctl net/%s not restored: %s", rel.c_str(), st.error().render().c_str());
    }
  }

  std::vector<net_device_entry> links;
  {
    auto rd = CR_TRY(image::Reader::open(c.images_dir, file_name("netdev", c.ns_id), image::kind(image::Type::netdev)));
    for (;;) {
      net_device_entry e;
      if (!CR_TRY(rd.read(e))) break;
      links.push_back(std::move(e));
    }
  }
  auto sk = CR_TRY(rtnl::Socket::open());
  for (const auto& e : links) {
    std::string obj = "link " + e.name() + " (index " + std::to_string(e.ifindex()) + ")";
    switch (e.type()) {
      case LOOPBACK: CR_OK(set_link(sk, e, false)); break;
      case VETH: {
        auto map = veth_mapping(c.external, e.name());
        if (!map)
          return fail(make_error(Errc::not_found, "restore", obj, "the host end of this veth has no name")
                          .with_hint("give --external veth[" + e.name() + "]:HOSTNAME[@BRIDGE]"));
        CR_OK(create_veth(sk, e, *map, c.host_ns));
        c.created.push_back(map->outer);
        if (!map->bridge.empty()) c.bridges.emplace_back(map->outer, map->bridge);
        LOG_INFO(c.log, "Created veth %s in the namespace, host end %s%s%s", e.name().c_str(), map->outer.c_str(),
                 map->bridge.empty() ? "" : " in bridge ", map->bridge.c_str());
        break;
      }
      default:
        return fail(make_error(Errc::unsupported, "restore", obj,
                               "links of type " + std::string(nd_type_Name(e.type())) + " cannot be restored"));
    }
    write_confs("ipv4", e.name(), kConf4, e.conf4(), c.log);
    write_confs("ipv6", e.name(), kConf6, e.conf6(), c.log);
    CR_OK(set_link(sk, e, true));  // up (or not) as it was, after its sysctls
  }

  // As CRIU: addresses, then routes (they need the links up and the addresses), then rules.
  CR_OK(image_to_tool({"ip", "addr", "restore"}, c.images_dir, file_name("ifaddr", c.ns_id), 4));
  CR_OK(restore_routes(c.images_dir, file_name("route", c.ns_id), false));
  CR_OK(restore_routes(c.images_dir, file_name("route6", c.ns_id), true));
  struct stat rules {};
  if (::fstatat(c.images_dir, file_name("rule", c.ns_id).c_str(), &rules, 0) == 0 && rules.st_size > 4) {
    // The image holds the default rules too: drop the new namespace's own first, or they are doubled.
    CR_OK(run_tool({"ip", "-4", "rule", "flush"}, -1, -1));
    CR_OK(run_tool({"ip", "-4", "rule", "delete", "table", "local"}, -1, -1));
    CR_OK(image_to_tool({"ip", "rule", "restore"}, c.images_dir, file_name("rule", c.ns_id), 4));
  }
  CR_OK(restore_firewall(c));
  return restore_conntrack(c.ns_id, c.images_dir, c.log);
}

}  // namespace

std::string full_dump_problems(pid_t pid) {
  std::string problems;
  auto ns = sys::open("/proc/" + std::to_string(pid) + "/ns/net", O_RDONLY);
  if (!ns) return ns.error().render();
  if (!find_tool("ip")) problems = "ip(8) is needed to dump a network namespace (install iproute2)";
  Status st = rtnl::in_netns(ns->get(), [&]() -> Status {
    auto sk = CR_TRY(rtnl::Socket::open());
    for (const auto& l : CR_TRY(sk.links()))
      if (auto p = link_problem(l); !p.empty()) problems += (problems.empty() ? "" : "; ") + p;
    return {};
  });
  if (!st) return st.error().render();
  return problems;
}

Status dump_full(pid_t pid, uint32_t ns_id, uint32_t host_ns_id, int images_dir, Logger& log) {
  auto ns = CR_TRY(sys::open("/proc/" + std::to_string(pid) + "/ns/net", O_RDONLY));
  LOG_INFO(log, "Dumping network namespace %u of pid %d", ns_id, pid);
  return rtnl::in_netns(ns.get(), [&] { return dump_inside(ns_id, host_ns_id, images_dir, log); })
      .map_error([&](Error e) { return e.within("network namespace of pid " + std::to_string(pid)); });
}

NetGuard::~NetGuard() {
  if (outer_.empty()) return;
  auto sk = rtnl::Socket::open();
  if (!sk) return;
  // Deleting a host end deletes its inner end too.
  for (const auto& name : outer_) (void)sk->delete_link(name);
}

Result<NetGuard> restore_full(pid_t pid, uint32_t ns_id, const std::vector<std::string>& external, int images_dir,
                              Logger& log) {
  auto ns = CR_TRY(sys::open("/proc/" + std::to_string(pid) + "/ns/net", O_RDONLY));
  auto host_ns = CR_TRY(sys::open("/proc/thread-self/ns/net", O_RDONLY));
  RestoreCtx c{ns_id, external, images_dir, host_ns.get(), log, {}, {}};
  NetGuard guard;
  Status st = rtnl::in_netns(ns.get(), [&] { return restore_inside(c); });
  for (auto& name : c.created) guard.add(name);
  CR_OK_IN(st, "restore network namespace " + std::to_string(ns_id));
  if (!c.bridges.empty()) {
    auto sk = CR_TRY(rtnl::Socket::open());
    for (const auto& [outer, bridge] : c.bridges) {
      int br = CR_TRY(sk.index_of(bridge).map_error([&](Error e) {
        return e.with_hint("--external veth[...]:" + outer + "@" + bridge + " names a bridge that does not exist");
      }));
      int idx = CR_TRY(sk.index_of(outer));
      ifinfomsg ifi{};
      ifi.ifi_family = AF_UNSPEC;
      ifi.ifi_index = idx;
      ifi.ifi_flags = IFF_UP;  // in a bridge the host end is only useful up
      ifi.ifi_change = IFF_UP;
      rtnl::Message m(RTM_NEWLINK, 0, ifi);
      m.put_u32(IFLA_MASTER, uint32_t(br));
      CR_OK(sk.request(m, "put " + outer + " into bridge " + bridge));
    }
  }
  return guard;
}

}  // namespace crshim::net
