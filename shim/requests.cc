#include "shim/requests.h"

#include <sched.h>

#include <algorithm>

#include "checkpoint/base/sys.h"
#include "checkpoint/mnt/mounts.h"

namespace crshim {

Status refuse_unsupported(const Options& o) {
  // Malformed mnt[]/dev[] keys are refused here: a tree in crshim's own mount namespace never reads them.
  CR_OK(mnt::external_map(o.external, {}));
  CR_OK(mnt::device_map(o.external));
  std::vector<std::string> refused;
  auto no = [&](bool set, const char* name) {
    if (set) refused.push_back(name);
  };
  no(o.evasive_devices, "--evasive-devices");
  no(o.leave_stopped, "--leave-stopped");
  no(o.exec_cmd, "--exec-cmd");
  no(o.ext_mount_auto, "--ext-mount-map auto");
  no(o.page_server && o.verb != Verb::dump && o.verb != Verb::pre_dump && o.verb != Verb::lazy_pages, "--page-server");
  no(o.tls && (o.page_server || o.verb == Verb::page_server || o.lazy_pages), "--tls");
  // Restores take pages from a lazy-pages daemon; a lazy dump serves them to one (the engine says why
  // a pre-dump cannot).
  no(o.lazy_pages && o.verb != Verb::restore && o.verb != Verb::dump && o.verb != Verb::pre_dump,
     "--lazy-pages (restore, and dump to a lazy-pages daemon)");
  no(o.auto_dedup, "--auto-dedup");
  no(o.lsm_profile.has_value() || o.lsm_mount_context.has_value(), "--lsm-profile/--lsm-mount-context");
  no(o.stream, "--stream");
  // Compressed pages stay local: a page server takes CRIU's plain stream.
  no(o.compress && (o.page_server || (o.verb != Verb::dump && o.verb != Verb::pre_dump)), "--compress (only dump and pre-dump to the images dir)");
  for (const auto& e : o.external)
    if (e.rfind("file[", 0) != 0 && !(e.rfind("net[", 0) == 0 && (o.verb == Verb::dump || o.verb == Verb::pre_dump)) && e.rfind("unix[", 0) != 0 &&
        !((e.rfind("tty[", 0) == 0 || e.rfind("pid[", 0) == 0) && o.verb == Verb::dump) &&
        !(e.rfind("mnt[", 0) == 0 && e.rfind("mnt[]", 0) != 0) && e.rfind("veth[", 0) != 0 &&
        e.rfind("dev[", 0) != 0)
      refused.push_back("--external " + e);
  if (refused.empty()) return {};
  std::string all;
  for (const auto& r : refused) all += (all.empty() ? "" : ", ") + r;
  return fail(make_error(Errc::unsupported, "options", "", "not supported yet: " + all)
                  .with_hint("leave them out; the README lists what works today"));
}

DumpRequest dump_request(const Options& opts) {
  DumpRequest req;
  req.pid = opts.tree_pid.value_or(0);
  req.leave_running = opts.leave_running;
  req.shell_job = opts.shell_job;
  req.external = opts.external;
  // --ext-unix-sk[=INO,...]: the engine takes these as external keys, unix[] (any socket whose peer is
  // outside the tree, as mnt[] is any external mount) plus unix[INO] for each inode named.
  auto add_key = [&](const std::string& key) {
    if (std::find(req.external.begin(), req.external.end(), key) == req.external.end()) req.external.push_back(key);
  };
  if (opts.ext_unix_sk) {
    add_key("unix[]");
    for (uint64_t ino : opts.ext_unix_sk_ids) add_key("unix[" + std::to_string(ino) + "]");
  }
  req.ghost_limit = opts.ghost_limit;
  req.link_remap = opts.link_remap;
  req.file_locks = opts.file_locks;
  req.orphan_pts_master = opts.orphan_pts_master;
  req.tcp_established = opts.tcp_established;
  req.tcp_close = opts.tcp_close;
  req.skip_in_flight = opts.skip_in_flight;
  req.compress = opts.compress;
  switch (opts.network_lock) {
    case NetworkLock::iptables: req.network_lock = NetLockMethod::iptables; break;
    case NetworkLock::nftables: req.network_lock = NetLockMethod::nftables; break;
    case NetworkLock::skip: req.network_lock = NetLockMethod::skip; break;
  }
  req.empty_ns = opts.empty_ns_net ? CLONE_NEWNET : 0;
  req.freeze_cgroup = opts.freeze_cgroup.value_or("");
  if (opts.timeout) req.freeze_timeout_s = opts.timeout;  // 0 keeps the default, as with CRIU
  req.pre_dump = opts.verb == Verb::pre_dump;
  req.track_mem = opts.track_mem || req.pre_dump;
  req.parent_img = opts.prev_images_dir.value_or("");
  // A lazy dump listens on --address/--port itself: --page-server (the dump's own pages sent to a
  // server) does not apply.
  req.lazy_pages = opts.lazy_pages;
  req.page_server = opts.page_server && !opts.lazy_pages;
  req.ps_address = opts.address.value_or("");
  req.ps_port = opts.port.value_or(0);
  req.ps_fd = opts.ps_socket.value_or(-1);
  for (const auto& m : opts.ext_mounts) req.ext_mounts.push_back({m.key, m.val});
  return req;
}

RestoreRequest restore_request(const Options& opts) {
  RestoreRequest req;
  req.detached = opts.restore_detached;
  req.sibling = opts.restore_sibling;
  req.shell_job = opts.shell_job;
  req.pidfile = opts.pidfile.value_or("");
  for (const auto& i : opts.inherit_fds) req.inherit_fds.push_back({i.fd, i.key});
  for (const auto& j : opts.join_ns) {
    JoinNamespace join{j.ns, j.target};
    // "UID,GID" of a user namespace, checked by the option parser.
    if (auto ids = sys::split(j.extra, ',', false); ids.size() == 2) {
      uint64_t uid = 0, gid = 0;
      if (sys::parse_u64(ids[0], uid, 10) && sys::parse_u64(ids[1], gid, 10) && uid <= UINT32_MAX && gid <= UINT32_MAX) {
        join.uid = uint32_t(uid);
        join.gid = uint32_t(gid);
      }
    }
    req.join_ns.push_back(std::move(join));
  }
  req.orphan_pts_master = opts.orphan_pts_master;
  req.empty_ns = opts.empty_ns_net ? CLONE_NEWNET : 0;
  // CRIU's default mode is soft: tasks go back into their cgroups, missing ones are made.
  switch (opts.manage_cgroups.value_or(CgroupMode::soft)) {
    case CgroupMode::ignore: req.manage_cgroups = CgroupsMode::ignore; break;
    case CgroupMode::none: req.manage_cgroups = CgroupsMode::none; break;
    case CgroupMode::props: req.manage_cgroups = CgroupsMode::props; break;
    case CgroupMode::soft: req.manage_cgroups = CgroupsMode::soft; break;
    case CgroupMode::full: req.manage_cgroups = CgroupsMode::full; break;
    case CgroupMode::strict: req.manage_cgroups = CgroupsMode::strict; break;
  }
  for (const auto& r : opts.cgroup_roots) req.cgroup_roots.push_back({r.controller, r.path});
  req.root = opts.root.value_or("");
  req.external = opts.external;
  // --veth-pair IN=OUT[@BRIDGE] (and RPC veths) is the older spelling of --external veth[IN]:OUT[@BRIDGE].
  for (const auto& v : opts.veth_pairs)
    req.external.push_back("veth[" + v.inner + "]:" + v.outer + (v.bridge.empty() ? "" : "@" + v.bridge));
  for (const auto& m : opts.ext_mounts) req.ext_mounts.push_back({m.key, m.val});
  req.lazy_pages = opts.lazy_pages;
  req.tcp_close = opts.tcp_close;
  return req;
}

}  // namespace crshim
