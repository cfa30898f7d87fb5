// criu_opts -> Options, and the policy of which RPC options the engine can honour today.
#include <sched.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <string_view>

#include "shim/rpc.h"

namespace crshim::rpc {

namespace {

Error bad_request(std::string message) {
  return make_error(Errc::invalid_argument, "RPC request", "criu_opts", std::move(message));
}

std::string hex(uint32_t v) {
  char b[16];
  snprintf(b, sizeof b, "0x%x", v);
  return b;
}

CgroupMode cgroup_mode(criu_cg_mode m) {
  switch (m) {
    case ::IGNORE: return CgroupMode::ignore;
    case ::CG_NONE: return CgroupMode::none;
    case ::PROPS: return CgroupMode::props;
    case ::FULL: return CgroupMode::full;
    case ::STRICT: return CgroupMode::strict;
    case ::SOFT:
    case ::DEFAULT: break;  // CRIU's default mode is soft
  }
  return CgroupMode::soft;
}

}  // namespace

Result<JobRequest> map_request(const criu_req& req, const Options& base, const Peer& peer, Mode mode) {
  if (req.type() != ::DUMP && req.type() != ::PRE_DUMP && req.type() != ::SINGLE_PRE_DUMP && req.type() != ::RESTORE &&
      req.type() != ::PAGE_SERVER && req.type() != ::PAGE_SERVER_CHLD)
    return fail(bad_request(std::string("not a DUMP, PRE_DUMP, RESTORE or PAGE_SERVER request: ") + criu_req_type_Name(req.type())));
  if (!req.has_opts()) return fail(bad_request("the request carries no options"));
  const criu_opts& r = req.opts();
  const bool service = mode == Mode::service;

  JobRequest job;
  Options& o = job.opts;
  o = base;
  switch (req.type()) {
    case ::DUMP: o.verb = Verb::dump; break;
    case ::PRE_DUMP:
    case ::SINGLE_PRE_DUMP: o.verb = Verb::pre_dump; break;
    case ::PAGE_SERVER:
    case ::PAGE_SERVER_CHLD: o.verb = Verb::page_server; break;
    default: o.verb = Verb::restore; break;
  }
  o.args.clear();
  o.swrk_fd = -1;

  // Descriptor numbers in the client's table: reopened through its /proc (same pid namespace only).
  auto client_fd = [&](int fd, const char* field) -> Result<std::string> {
    if (fd < 0) return fail(bad_request(std::string(field) + " " + std::to_string(fd) + " is not a descriptor"));
    if (peer.pid <= 0)
      return fail(bad_request(std::string("cannot resolve ") + field +
                              ": the client's pid is unknown here (another pid namespace?)"));
    return "/proc/" + std::to_string(peer.pid) + "/fd/" + std::to_string(fd);
  };

  // Images dir: the RPC config file wins, then images_dir_fd, then images_dir (CRIU's order).
  o.images_dir.clear();
  if (r.images_dir_fd() != -1) o.images_dir = CR_TRY(client_fd(r.images_dir_fd(), "images_dir_fd"));
  else if (r.has_images_dir()) o.images_dir = r.images_dir();
  if (r.has_work_dir_fd()) o.work_dir = CR_TRY(client_fd(r.work_dir_fd(), "work_dir_fd"));
  if (r.has_status_fd()) job.status_fd_path = CR_TRY(client_fd(r.status_fd(), "status_fd"));

  if (r.has_log_file()) {
    if (r.log_file().empty() || r.log_file().find('/') != std::string::npos)
      return fail(bad_request("log_file '" + r.log_file() + "' must be a bare file name (it is created in the work dir)"));
    o.log_file = r.log_file();
  } else if (r.has_log_to_stderr() && r.log_to_stderr()) {
    o.log_file = "-";
  } else if (!o.log_file) {
    o.log_file = "criu.log";
  }
  if (r.has_log_level()) o.verbosity = std::clamp(r.log_level(), 0, 4);

  if (r.has_pid()) o.tree_pid = r.pid();
  // Booleans only count when present: an absent one keeps the default (or the config's value).
  auto flag = [](bool has, bool value, bool& field) {
    if (has) field = value;
  };
  flag(r.has_leave_running(), r.leave_running(), o.leave_running);
  flag(r.has_leave_stopped(), r.leave_stopped(), o.leave_stopped);
  flag(r.has_ext_unix_sk(), r.ext_unix_sk(), o.ext_unix_sk);
  flag(r.has_tcp_established(), r.tcp_established(), o.tcp_established);
  flag(r.has_tcp_skip_in_flight(), r.tcp_skip_in_flight(), o.skip_in_flight);
  flag(r.has_tcp_close(), r.tcp_close(), o.tcp_close);
  flag(r.has_evasive_devices(), r.evasive_devices(), o.evasive_devices);
  flag(r.has_shell_job(), r.shell_job(), o.shell_job);
  flag(r.has_file_locks(), r.file_locks(), o.file_locks);
  flag(r.has_link_remap(), r.link_remap(), o.link_remap);
  flag(r.has_force_irmap(), r.force_irmap(), o.force_irmap);
  flag(r.has_auto_dedup(), r.auto_dedup(), o.auto_dedup);
  flag(r.has_track_mem(), r.track_mem(), o.track_mem);
  flag(r.has_lazy_pages(), r.lazy_pages(), o.lazy_pages);
  flag(r.has_weak_sysctls(), r.weak_sysctls(), o.weak_sysctls);
  flag(r.has_orphan_pts_master(), r.orphan_pts_master(), o.orphan_pts_master);
  flag(r.has_auto_ext_mnt(), r.auto_ext_mnt(), o.ext_mount_auto);
  flag(r.has_ext_sharing(), r.ext_sharing(), o.enable_external_sharing);
  flag(r.has_ext_masters(), r.ext_masters(), o.enable_external_masters);
  flag(r.has_mntns_compat_mode(), r.mntns_compat_mode(), o.mntns_compat_mode);
  flag(r.has_skip_file_rwx_check(), r.skip_file_rwx_check(), o.skip_file_rwx_check);
  flag(r.has_unprivileged(), r.unprivileged(), o.unprivileged);
  flag(r.has_display_stats(), r.display_stats(), o.display_stats);
  flag(r.has_tls(), r.tls(), o.tls);
  flag(r.has_tls_no_cn_verify(), r.tls_no_cn_verify(), o.tls_no_cn_verify);
  job.notify_scripts = r.has_notify_scripts() && r.notify_scripts();

  if (r.has_rst_sibling() && r.rst_sibling()) {
    if (service) return fail(bad_request("rst_sibling is only allowed in swrk mode"));
    o.restore_sibling = true;
  }
  if (r.has_root()) o.root = r.root();
  if (r.has_parent_img()) o.prev_images_dir = r.parent_img();
  if (r.has_ps()) {
    const criu_page_server_info& ps = r.ps();
    if (ps.has_fd() && service) return fail(bad_request("ps.fd is only allowed in swrk mode"));
    o.page_server = true;
    if (ps.has_address()) o.address = ps.address();
    if (ps.has_port()) o.port = static_cast<uint16_t>(ps.port());
    if (ps.has_fd()) o.ps_socket = ps.fd();
  }
  for (const auto& v : r.veths()) {
    VethPair p{v.if_in(), v.if_out(), {}};
    if (auto at = p.outer.find('@'); at != std::string::npos) {
      p.bridge = p.outer.substr(at + 1);
      p.outer.resize(at);
    }
    o.veth_pairs.push_back(std::move(p));
  }
  job.has_cpu_cap = r.has_cpu_cap();
  if (r.exec_cmd_size() > 0) {
    o.exec_cmd = true;
    o.args.assign(r.exec_cmd().begin(), r.exec_cmd().end());
  }
  for (const auto& m : r.ext_mnt()) o.ext_mounts.push_back({m.key(), m.val()});
  if (r.has_manage_cgroups()) o.manage_cgroups = r.manage_cgroups() ? CgroupMode::soft : CgroupMode::ignore;
  if (r.has_manage_cgroups_mode()) o.manage_cgroups = cgroup_mode(r.manage_cgroups_mode());
  for (const auto& c : r.cg_root()) o.cgroup_roots.push_back({c.ctrl(), c.path()});
  if (r.inherit_fd_size() > 0 && service) return fail(bad_request("inherit_fd is only allowed in swrk mode"));
  for (const auto& i : r.inherit_fd()) {
    // The numbers are in OUR table (inherited across exec). One that is not open is asked for during
    // the restore (NOTIFY "req-inherit-fd", crshim's extension) when the client answers notifications;
    // otherwise it is a client bug.
    struct stat st;
    if (i.fd() < 0 || (::fstat(i.fd(), &st) < 0 && !r.notify_scripts()))
      return fail(bad_request("inherit_fd '" + i.key() + "': descriptor " + std::to_string(i.fd()) +
                              " is not open in the engine (set notify_scripts to be asked for it)"));
    // As CRIU, the first entry for a key wins: runc sends pipe:[INO] for fd 1 and again for fd 2 when the
    // container's stdout and stderr were one pipe, and the restored task must write to the new stdout.
    auto same_key = [&](const InheritFd& have) { return have.key == i.key(); };
    if (std::any_of(o.inherit_fds.begin(), o.inherit_fds.end(), same_key)) continue;
    o.inherit_fds.push_back({i.fd(), i.key()});
  }
  o.skip_mnt.insert(o.skip_mnt.end(), r.skip_mnt().begin(), r.skip_mnt().end());
  o.enable_fs.insert(o.enable_fs.end(), r.enable_fs().begin(), r.enable_fs().end());
  o.irmap_scan_paths.insert(o.irmap_scan_paths.end(), r.irmap_scan_paths().begin(), r.irmap_scan_paths().end());
  o.cgroup_dump_controllers.insert(o.cgroup_dump_controllers.end(), r.cgroup_dump_controller().begin(),
                                   r.cgroup_dump_controller().end());
  // unix_sk_ino is the deprecated spelling of external unix[INO], honoured only next to ext_unix_sk.
  if (r.has_ext_unix_sk())
    for (const auto& u : r.unix_sk_ino()) {
      o.ext_unix_sk_ids.push_back(u.inode());
      o.external.push_back("unix[" + std::to_string(u.inode()) + "]");
    }
  if (r.has_ghost_limit()) o.ghost_limit = r.ghost_limit();
  o.external.insert(o.external.end(), r.external().begin(), r.external().end());
  if (r.has_empty_ns()) {
    if (r.empty_ns() & ~static_cast<uint32_t>(CLONE_NEWNET))
      return fail(bad_request("empty_ns accepts only CLONE_NEWNET (0x40000000), got " + hex(r.empty_ns())));
    job.empty_ns = r.empty_ns();
    o.empty_ns_net = (r.empty_ns() & CLONE_NEWNET) != 0;
  }
  for (const auto& j : r.join_ns()) {
    if (j.ns() == "pid") return fail(bad_request("join_ns pid is not allowed; use external pid[INO]:KEY and inherit_fd"));
    o.join_ns.push_back({j.ns(), j.ns_file(), j.extra_opt()});
  }
  if (r.has_cgroup_props()) o.cgroup_props = r.cgroup_props();
  if (r.has_cgroup_props_file()) o.cgroup_props_file = r.cgroup_props_file();
  if (r.has_freeze_cgroup()) o.freeze_cgroup = r.freeze_cgroup();
  if (r.has_cgroup_yard()) o.cgroup_yard = r.cgroup_yard();
  if (r.has_timeout()) o.timeout = r.timeout();
  if (r.has_lsm_profile()) o.lsm_profile = r.lsm_profile();
  if (r.has_lsm_mount_context()) o.lsm_mount_context = r.lsm_mount_context();
  if (r.has_tls_cacert()) o.tls_cacert = r.tls_cacert();
  if (r.has_tls_cacrl()) o.tls_cacrl = r.tls_cacrl();
  if (r.has_tls_cert()) o.tls_cert = r.tls_cert();
  if (r.has_tls_key()) o.tls_key = r.tls_key();
  if (r.has_pre_dump_mode()) o.pre_dump_mode = r.pre_dump_mode() == ::VM_READ ? PreDumpMode::read : PreDumpMode::splice;
  if (r.has_network_lock())
    o.network_lock = r.network_lock() == ::NFTABLES ? NetworkLock::nftables
                     : r.network_lock() == ::SKIP   ? NetworkLock::skip
                                                    : NetworkLock::iptables;
  job.has_pidfd_store = r.has_pidfd_store_sk();

  // Parsed after every RPC option, so its values win (runc points it at /etc/criu/runc.conf).
  if (r.has_config_file() && !r.config_file().empty()) {
    if (Status st = apply_config_file(o, r.config_file(), false); !st)
      return fail(st.error().within("RPC config_file"));
  }
  if (o.images_dir.empty()) return fail(bad_request("no images directory: set images_dir_fd or images_dir"));
  return job;
}

Result<std::vector<std::string>> check_engine_support(const JobRequest& job) {
  const Options& o = job.opts;
  const bool dump = o.verb == Verb::dump || o.verb == Verb::pre_dump;
  std::vector<std::string> refused;
  std::vector<std::string> ignored;

  // Refused: honouring them would change what is dumped or how the tree comes back.
  if (dump && !o.tree_pid) refused.push_back("DUMP without opts.pid (dumping the client itself) is not supported");
  // A lazy dump serves its pages on ps.address:ps.port itself; a connected ps.fd is not a listener.
  if (o.lazy_pages && dump && o.ps_socket) refused.push_back("lazy_pages with ps.fd: a lazy dump listens on ps.address/ps.port");
  if (!dump && (o.track_mem || o.prev_images_dir)) refused.push_back("track_mem/parent_img: only a dump takes them");
  if (o.page_server && !dump) refused.push_back("ps: only DUMP and PRE_DUMP send pages to a page server");
  if (o.tls) refused.push_back("tls: TLS page-server connections are not supported");
  if (o.lsm_profile || o.lsm_mount_context) refused.push_back("lsm_profile/lsm_mount_context: LSM labels are not applied yet");
  if (o.leave_stopped) refused.push_back("leave_stopped: leaving tasks stopped is not supported yet");
  if (o.exec_cmd) refused.push_back("exec_cmd: running a command after restore is not supported");
  if (!dump)
    for (const auto& e : o.external)
      // unix[INO] (also from unix_sk_ino) only matters at dump; the socket comes back by inherit_fd.
      // veth[IN]:OUT[@BRIDGE] names a restored veth's host end, as veths does.
      if (!e.starts_with("mnt[") && !e.starts_with("dev[") && !e.starts_with("unix[") && !e.starts_with("veth["))
        refused.push_back("external '" + e + "': not supported on restore yet");

  // Accepted and logged as ignored until the engine handles them. runc sends some with every request
  // (ext_mnt, root on dump); for a plain process tree none of them changes the outcome. freeze_cgroup
  // (a frozen cgroup is thawed for the dump and frozen again), empty_ns=CLONE_NEWNET, manage_cgroups
  // and cg_root are honoured; cgroup properties are not.
  if (o.manage_cgroups && *o.manage_cgroups != CgroupMode::soft && *o.manage_cgroups != CgroupMode::ignore &&
      *o.manage_cgroups != CgroupMode::none)
    ignored.push_back("manage_cgroups_mode " + std::string(cgroup_mode_name(*o.manage_cgroups)) +
                      ": taken as soft, cgroup properties are not restored");
  if (o.cgroup_props || o.cgroup_props_file || !o.cgroup_dump_controllers.empty() || o.cgroup_yard)
    ignored.push_back("cgroup_props/cgroup_props_file/cgroup_dump_controller/cgroup_yard: cgroup properties are not dumped");
  // ext_mnt, root and external mnt[KEY]:VAL are honoured (mount namespaces); these are not.
  if (o.ext_mount_auto || o.enable_external_sharing || o.enable_external_masters || !o.skip_mnt.empty() ||
      !o.enable_fs.empty())
    ignored.push_back("auto_ext_mnt/ext_sharing/ext_masters/skip_mnt/enable_fs: every host mount must be named in ext_mnt");
  for (const auto& e : o.external)
    if (e.starts_with("mnt[]")) ignored.push_back("external '" + e + "': not honoured yet");
  if (dump && o.root) ignored.push_back("root: only used when restoring");
  if (o.auto_dedup) ignored.push_back("auto_dedup: without parent images there is nothing to deduplicate");
  if (job.has_cpu_cap) ignored.push_back("cpu_cap: no cpuinfo image is written or checked");
  if (job.has_pidfd_store) ignored.push_back("pidfd_store_sk: only pre-dump series use it");
  if (job.status_fd_path && !(o.lazy_pages && dump))
    ignored.push_back("status_fd: only lazy dumps, page servers and lazy-pages daemons report on it");

  if (!refused.empty()) {
    std::string msg;
    for (const auto& r : refused) msg += (msg.empty() ? "" : "; ") + r;
    return fail(make_error(Errc::unsupported, "RPC request", dump ? "DUMP" : "RESTORE", msg));
  }
  return ignored;
}

}  // namespace crshim::rpc
