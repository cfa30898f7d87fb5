// `crshim checkpoint --bundle` and `crshim restore --bundle`: an OCI container driven from its bundle's
// config.json, the way runc drives CRIU, without a runtime in between.
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>

#include "checkpoint/base/sys.h"
#include "checkpoint/engine.h"
#include "checkpoint/ns/namespaces.h"
#include "checkpoint/ns/userns.h"
#include "checkpoint/restore/images.h"
#include "hooks/hook_chain.h"
#include "hooks/script_hooks.h"
#include "oci/bundle.h"
#include "oci/seccomp_check.h"
#include "shim/job.h"
#include "shim/requests.h"
#include "shim/verbs.h"

namespace crshim {

namespace {

Error usage_error(const std::string& message) {
  return make_error(Errc::invalid_argument, "options", "", message);
}

// What the bundle verbs refuse besides the engine's own list: options the bundle decides.
Status refuse_bundle_conflicts(const Options& o) {
  if (o.bundle.export_path && o.verb != Verb::checkpoint) return fail(usage_error("--export is only for checkpoint"));
  if (o.bundle.import_path && o.verb != Verb::restore) return fail(usage_error("--import is only for restore"));
  if (o.bundle.import_path && o.bundle.image_path)
    return fail(usage_error("--import and --image-path exclude each other: the images come from the archive"));
  if (!o.bundle.image_path && !o.bundle.import_path) return fail(usage_error("--bundle needs --image-path DIR"));
  if (o.root) return fail(usage_error("--root conflicts with --bundle: the root comes from config.json root.path"));
  if (o.tree_pid) return fail(usage_error("-t/--tree conflicts with --bundle: give the container's pid as the argument"));
  return refuse_unsupported(o);
}

Result<std::string> real_path(const std::string& path) {
  char buf[PATH_MAX];
  if (!::realpath(path.c_str(), buf)) return fail(sys_error("realpath", path, "bundle directory"));
  return std::string(buf);
}

// The options a bundle verb hands to open_job(): images and work dirs from --image-path/--work-path.
Options job_options(const Options& o) {
  Options j = o;
  if (o.bundle.image_path) j.images_dir = *o.bundle.image_path;
  j.work_dir = o.bundle.work_path;
  return j;
}

Result<pid_t> container_pid(const Options& o) {
  std::string text;
  std::string origin;
  if (o.bundle.pid_file) {
    if (!o.args.empty()) return fail(usage_error("give the container's pid either as the argument or with --pid-file, not both"));
    auto read = sys::read_file(*o.bundle.pid_file, 64);
    if (!read) {
      Error e = std::move(read.error());
      e.message = "--pid-file";  // which of the bundle options named it
      return fail(std::move(e));
    }
    text = std::string(sys::trim(*read));
    origin = *o.bundle.pid_file;
  } else {
    if (o.args.size() != 1)
      return fail(usage_error("checkpoint --bundle needs the container's init pid: CONTAINER-PID or --pid-file FILE"));
    text = o.args[0];
    origin = "CONTAINER-PID";
  }
  int64_t pid = 0;
  if (!sys::parse_i64(text, pid) || pid <= 0 || pid > INT_MAX)
    return fail(make_error(Errc::invalid_argument, "options", origin, "'" + text + "' is not a pid"));
  return pid_t(pid);
}

// A user namespace's maps as the bundle spells them (containerID, hostID, size).
oci::UserMaps user_maps(const ns::UserNs& userns) {
  auto maps = [](const google::protobuf::RepeatedPtrField<uid_gid_extent>& extents) {
    std::vector<oci::IdMapping> out;
    for (const auto& e : extents) out.push_back({e.first(), e.lower_first(), e.count()});
    return out;
  };
  return {maps(userns.entry().uid_map()), maps(userns.entry().gid_map())};
}

// The maps of the user namespace at `path` (an nsfs file), shown by a child that joins it (a
// namespace's maps are read through one of its tasks); nullopt when it is crshim's own.
Result<std::optional<oci::UserMaps>> joined_user_maps(const std::string& path) {
  auto fd = CR_TRY(sys::open(path, O_RDONLY));
  struct stat st, own;
  if (::fstat(fd.get(), &st) < 0) return fail(sys_error("fstat", path, "user namespace"));
  if (::stat("/proc/self/ns/user", &own) < 0) return fail(sys_error("stat", "/proc/self/ns/user"));
  if (st.st_dev == own.st_dev && st.st_ino == own.st_ino) return std::optional<oci::UserMaps>();
  int p[2];
  if (::pipe2(p, O_CLOEXEC) < 0) return fail(sys_error("pipe2", path, "user namespace reader"));
  UniqueFd rd(p[0]), wr(p[1]);
  pid_t child = ::fork();
  if (child < 0) return fail(sys_error("fork", path, "user namespace reader"));
  if (child == 0) {
    char err = ::setns(fd.get(), CLONE_NEWUSER) == 0 ? 0 : char(errno);
    if (::write(wr.get(), &err, 1) != 1) _exit(1);
    ::pause();  // until killed: its /proc entry shows the maps
    _exit(0);
  }
  wr.reset();
  auto reap = [&]() {
    ::kill(child, SIGKILL);
    ::waitpid(child, nullptr, 0);
  };
  char err = EIO;
  if (::read(rd.get(), &err, 1) != 1 || err != 0) {
    reap();
    errno = err;
    return fail(sys_error("setns", path, "reading the joined user namespace's maps"));
  }
  auto maps = ns::UserNs::of_task(child);
  reap();
  if (!maps) return fail(maps.error().within(path));
  return std::optional<oci::UserMaps>(user_maps(*maps));
}

Result<oci::ContainerView> inspect_container(pid_t pid, const oci::Config& config, const std::string& rootfs) {
  // The pid must be the bundle's container: its root is the bundle's rootfs.
  struct stat want, got;
  if (::stat(rootfs.c_str(), &want) < 0) return fail(sys_error("stat", rootfs, "bundle rootfs"));
  std::string proc_root = proc::proc_dir(pid) + "/root/";
  if (::stat(proc_root.c_str(), &got) < 0) return fail(sys_error("stat", proc_root, "container root"));
  if (want.st_dev != got.st_dev || want.st_ino != got.st_ino)
    return fail(make_error(Errc::invalid_argument, "checkpoint", "pid " + std::to_string(pid),
                           "its root directory is not the bundle's rootfs " + rootfs)
                    .with_hint("give the pid of the container's init"));
  oci::ContainerView view;
  view.mounts = CR_TRY(proc::read_mountinfo(pid));
  view.ns_inodes["net"] = CR_TRY(proc::ns_inode(pid, "net"));
  view.ns_inodes["user"] = CR_TRY(proc::ns_inode(pid, "user"));
  if (ns::in_other_userns(pid)) view.userns = user_maps(CR_TRY(ns::UserNs::of_task(pid)));
  for (const auto& n : config.namespaces) {
    if (n.path.empty()) continue;
    struct stat st;
    if (::stat(n.path.c_str(), &st) < 0) return fail(sys_error("stat", n.path, n.type + " namespace"));
    view.ns_path_inodes[n.path] = st.st_ino;
  }
  auto mi = CR_TRY(sys::read_file("/proc/self/mountinfo"));
  view.host_hierarchies = CR_TRY(cgroup::parse_hierarchies(mi));
  for (const auto& m : CR_TRY(proc::read_mountinfo(::getpid())))
    if (m.fstype == "devtmpfs" && m.root == "/" && (view.host_dev.empty() || m.mount_point == "/dev"))
      view.host_dev = m.mount_point;
  return view;
}

Result<std::vector<std::string>> stdio_targets(pid_t pid) {
  std::vector<std::string> out;
  for (int fd = 0; fd < 3; fd++)
    out.push_back(CR_TRY(sys::read_link(proc::proc_dir(pid) + "/fd/" + std::to_string(fd))));
  return out;
}

Result<UniqueFd> connect_console(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path)
    return fail(make_error(Errc::invalid_argument, "connect", path, "the console socket path is too long"));
  std::memcpy(addr.sun_path, path.c_str(), path.size());
  UniqueFd sock(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!sock.valid()) return fail(sys_error("socket(AF_UNIX)", path));
  if (::connect(sock.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0)
    return fail(sys_error("connect", path, "console socket"));
  return sock;
}

// A new v1 cpuset cgroup starts with no cpus and mems, and no task can join it: it gets its parent's.
Status inherit_cpuset(const std::string& dir, const std::string& parent) {
  for (const char* f : {"cpuset.cpus", "cpuset.mems"}) {
    auto mine = sys::read_file(dir + "/" + f);
    if (!mine) return {};  // not a cpuset hierarchy
    if (!sys::trim(*mine).empty()) continue;
    std::string value = CR_TRY(sys::read_file(parent + "/" + f));
    CR_OK(sys::write_file(dir + "/" + f, value));
  }
  return {};
}

// mkdir -p of a cgroup directory; what it made is added to `made`, parents first.
Status make_cgroup_dirs(const std::string& path, std::vector<std::string>& made) {
  std::string cur;
  for (auto part : sys::split(path, '/')) {
    std::string parent = cur.empty() ? "/" : cur;
    cur += "/" + std::string(part);
    if (::mkdir(cur.c_str(), 0755) == 0) {
      made.push_back(cur);
      CR_OK(inherit_cpuset(cur, parent));
    } else if (errno != EEXIST) {
      return fail(sys_error("mkdir", cur));
    }
  }
  return {};
}

// Reads a file of the images dir; nullopt when it does not exist.
Result<std::optional<std::string>> read_optional(int dir, const char* name) {
  UniqueFd fd(::openat(dir, name, O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    if (errno == ENOENT) return std::optional<std::string>();
    return fail(sys_error("open", name));
  }
  return std::optional<std::string>(CR_TRY(sys::read_all(fd.get(), name, 1u << 20)));
}

Status write_in(int dir, const char* name, const std::string& text) {
  auto fd = CR_TRY(sys::open_at(dir, name, O_WRONLY | O_CREAT | O_TRUNC, 0644));
  return sys::write_all(fd.get(), text, name);
}

// The checkpointed init as the images have it: its security (capability sets and seccomp state of
// the root task's main thread) and the maps of the tree's own user namespace, if it had one.
struct CheckpointedInit {
  oci::InitSecurity security;
  std::optional<oci::UserMaps> userns;
  seccomp_entry seccomp;                 // seccomp.img
  std::optional<uint32_t> seccomp_head;  // the init's filter chain in it, when it has one
};

Result<oci::InitSecurity> init_security(const restorer::ImageSet& set) {
  const thread_core_entry& tc = set.processes.at(0).cores.at(0).thread_core();
  auto mask = [](const google::protobuf::RepeatedField<uint32_t>& words) {
    uint64_t m = 0;
    for (int i = 0; i < words.size() && i < 2; i++) m |= uint64_t(words.Get(i)) << (32 * i);
    return m;
  };
  oci::InitSecurity init;
  init.caps.bounding = mask(tc.creds().cap_bnd());
  init.caps.effective = mask(tc.creds().cap_eff());
  init.caps.permitted = mask(tc.creds().cap_prm());
  init.seccomp = tc.has_seccomp_mode() && tc.seccomp_mode() != disabled;
  return init;
}

Result<CheckpointedInit> checkpointed_init(int images_dir) {
  auto set = CR_TRY(restorer::load_images(images_dir));
  CheckpointedInit init;
  init.security = CR_TRY(init_security(set));
  const thread_core_entry& tc = set.processes.at(0).cores.at(0).thread_core();
  if (tc.seccomp_mode() == filter) {
    init.seccomp = set.seccomp;
    init.seccomp_head = tc.seccomp_filter();
  }
  const task_kobj_ids_entry& ids = set.processes.at(0).ids;
  if (ns::owned_namespaces(ids, set.inventory.root_ids()) & CLONE_NEWUSER)
    init.userns = user_maps(CR_TRY(ns::UserNs::load(images_dir, ids.user_ns_id())));
  return init;
}

}  // namespace

int run_checkpoint_bundle(const Options& opts) {
  if (Status st = refuse_bundle_conflicts(opts); !st) return report_failure(nullptr, "checkpoint", st.error());
  auto bundle = real_path(*opts.bundle.dir);
  if (!bundle) return report_failure(nullptr, "checkpoint", bundle.error());
  auto config = oci::load_config(*bundle);
  if (!config) return report_failure(nullptr, "checkpoint", config.error());
  auto pid = container_pid(opts);
  if (!pid) return report_failure(nullptr, "checkpoint", pid.error());
  std::string rootfs = config->root_path[0] == '/' ? config->root_path : *bundle + "/" + config->root_path;
  auto view = inspect_container(*pid, *config, rootfs);
  if (!view) return report_failure(nullptr, "checkpoint", view.error());
  auto plan = oci::plan_checkpoint(*config, *view);
  if (!plan) return report_failure(nullptr, "checkpoint", plan.error());

  Options o = job_options(opts);
  auto job = open_job(o, "dump.log", true);
  if (!job) return report_failure(nullptr, "checkpoint", job.error());
  DumpRequest req = dump_request(o);
  req.pid = *pid;
  req.ext_mounts.insert(req.ext_mounts.end(), plan->ext_mounts.begin(), plan->ext_mounts.end());
  req.external.insert(req.external.end(), plan->external.begin(), plan->external.end());
  req.empty_ns |= plan->empty_ns;
  // A terminal container's pty master lives in the runtime or its console receiver, outside the tree.
  req.orphan_pts_master = true;
  Logger& log = (*job)->log;
  for (const auto& [k, v] : req.ext_mounts) LOG_INFO(log, "External mount %s as '%s'", k.c_str(), v.c_str());
  for (const auto& e : req.external) LOG_INFO(log, "External %s", e.c_str());

  // Written before the dump, as runc does: the stdio the init had, for the restore's inherit-fd keys.
  auto stdio = stdio_targets(*pid);
  if (!stdio) return report_failure(job->get(), "checkpoint", stdio.error());
  int images = (*job)->images_dir.get();
  if (Status st = write_in(images, oci::kDescriptorsFile, oci::descriptors_json(*stdio)); !st)
    return report_failure(job->get(), "checkpoint", st.error());
  if (Status st = write_in(images, oci::kBundleRecordFile, oci::record_json(plan->record)); !st)
    return report_failure(job->get(), "checkpoint", st.error());

  ScriptHooks scripts(o.action_scripts, image_dir_env(images), log);
  scripts.set_init_pid(req.pid);
  Session session = (*job)->session();
  auto res = dump(req, session, scripts);
  if (!res) return report_failure(job->get(), "checkpoint", res.error());
  if (opts.bundle.export_path) {
    auto real_rootfs = real_path(rootfs);
    if (!real_rootfs) return report_failure(job->get(), "checkpoint", real_rootfs.error());
    if (Status st = oci::export_archive(*opts.bundle.export_path, *o.bundle.image_path, *bundle, *real_rootfs, log); !st)
      return report_failure(job->get(), "checkpoint", st.error());
    LOG_INFO(log, "Exported the checkpoint to %s", opts.bundle.export_path->c_str());
  }
  return 0;
}

int run_restore_bundle(const Options& opts) {
  if (Status st = refuse_bundle_conflicts(opts); !st) return report_failure(nullptr, "restore", st.error());
  if (!opts.args.empty())
    return report_failure(nullptr, "restore", usage_error("restore --bundle takes no arguments, got '" + opts.args[0] + "'"));
  auto bundle = real_path(*opts.bundle.dir);
  if (!bundle) return report_failure(nullptr, "restore", bundle.error());
  auto config = oci::load_config(*bundle);
  if (!config) return report_failure(nullptr, "restore", config.error());
  if (config->terminal && !opts.bundle.console_socket)
    return report_failure(nullptr, "restore",
                          make_error(Errc::invalid_argument, "restore", "process.terminal",
                                     "the container has a terminal: its new master needs --console-socket SOCK"));
  if (!config->terminal && opts.bundle.console_socket)
    return report_failure(nullptr, "restore",
                          usage_error("--console-socket is only for containers with process.terminal set"));

  // --import: the archive is unpacked into a directory of its own; its checkpoint/ is the images dir,
  // the directory itself the work dir unless --work-path says otherwise. The images go afterwards.
  Options o = job_options(opts);
  std::string unpacked;
  if (opts.bundle.import_path) {
    char tmpl[] = "/tmp/crshim-import-XXXXXX";
    if (!::mkdtemp(tmpl)) return report_failure(nullptr, "restore", sys_error("mkdtemp", tmpl));
    unpacked = tmpl;
    auto images = oci::import_archive(*opts.bundle.import_path, unpacked);
    if (!images) {
      std::error_code ec;
      std::filesystem::remove_all(unpacked, ec);
      return report_failure(nullptr, "restore", images.error());
    }
    o.images_dir = *images;
    if (!o.work_dir) o.work_dir = unpacked;
  }
  auto drop_unpacked = [&]() {
    if (unpacked.empty()) return;
    std::error_code ec;
    std::filesystem::remove_all(opts.bundle.work_path ? unpacked : unpacked + "/checkpoint", ec);
    std::filesystem::remove(unpacked + "/spec.dump", ec);
    std::filesystem::remove(unpacked + "/" + oci::kRootfsDiffFile, ec);
    std::filesystem::remove(unpacked + "/" + oci::kDeletedFilesFile, ec);
  };
  auto job = open_job(o, "restore.log", false);
  if (!job) {
    drop_unpacked();
    return report_failure(nullptr, "restore", job.error());
  }
  Job* j = job->get();
  Logger& log = j->log;
  int images = j->images_dir.get();

  const bool detached = opts.bundle.detach || opts.restore_detached;  // runc's --detach or CRIU's -d
  std::vector<std::string> made_dirs;  // cgroup directories made for the container, removed on failure
  auto restore_in = [&]() -> Result<RestoreResult> {
    std::vector<std::string> descriptors;
    if (auto text = CR_TRY(read_optional(images, oci::kDescriptorsFile)))
      descriptors = CR_TRY(oci::parse_descriptors(*text));
    else
      LOG_WARN(log, "No %s in the images: the restored stdio is reopened as dumped", oci::kDescriptorsFile);
    oci::BundleRecord record;
    if (auto text = CR_TRY(read_optional(images, oci::kBundleRecordFile))) record = CR_TRY(oci::parse_record(*text));
    oci::HostView host;
    host.hierarchies = CR_TRY(cgroup::parse_hierarchies(CR_TRY(sys::read_file("/proc/self/mountinfo"))));
    host.own_cgroups = CR_TRY(cgroup::read_task_cgroups(::getpid()));
    // The record may come from an imported archive: it binds host device nodes, nothing else.
    for (const auto& d : record.device_binds) {
      struct stat st;
      if (::stat(d.c_str(), &st) < 0) return fail(sys_error("stat", d, "host device bound into the container"));
      if (!S_ISCHR(st.st_mode) && !S_ISBLK(st.st_mode))
        return fail(make_error(Errc::corrupt_image, "restore", oci::kBundleRecordFile,
                               "deviceBinds names " + d + ", which is not a device node on this host"));
    }
    auto plan = CR_TRY(oci::plan_restore(*config, *bundle, descriptors, record, host));
    auto init = CR_TRY(checkpointed_init(images));
    CR_OK(oci::check_security(*config, init.security));
    if (init.seccomp_head) CR_OK(oci::check_seccomp_matches(*bundle, init.seccomp, *init.seccomp_head));
    const oci::Namespace* user = config->find_namespace("user");
    std::optional<oci::UserMaps> joined;
    if (user && !user->path.empty()) joined = CR_TRY(joined_user_maps(user->path));
    CR_OK(oci::check_userns(*config, init.userns, true, joined));
    if (user && !user->path.empty())
      LOG_INFO(log, "The container joins the user namespace %s (uid map %s, gid map %s)", user->path.c_str(),
               joined ? oci::maps_text(joined->uid).c_str() : "crshim's",
               joined ? oci::maps_text(joined->gid).c_str() : "crshim's");
    else if (init.userns)
      LOG_INFO(log, "The container's user namespace comes back with uid map %s, gid map %s",
               oci::maps_text(init.userns->uid).c_str(), oci::maps_text(init.userns->gid).c_str());
    // An imported archive's rootfs changes go onto the bundle's rootfs before anything is restored on it.
    if (!unpacked.empty()) CR_OK_IN(oci::apply_rootfs_diff(unpacked, plan.root, log), "--import");

    RestoreRequest req = restore_request(o);
    req.root = plan.root;
    req.detached = detached;
    req.pidfile = opts.bundle.pid_file.value_or(opts.pidfile.value_or(""));
    req.ext_mounts.insert(req.ext_mounts.end(), plan.ext_mounts.begin(), plan.ext_mounts.end());
    req.join_ns.insert(req.join_ns.end(), plan.join_ns.begin(), plan.join_ns.end());
    req.inherit_fds.insert(req.inherit_fds.end(), plan.stdio.begin(), plan.stdio.end());
    req.empty_ns |= plan.empty_ns;
    req.orphan_pts_master = plan.terminal;
    if (!plan.cgroup_roots.empty()) req.cgroup_roots = plan.cgroup_roots;
    // Every file the restore takes from outside is opened here and handed over in-process.
    std::vector<UniqueFd> opened;
    for (const auto& f : plan.open) {
      opened.push_back(CR_TRY(sys::open(f.path, O_RDONLY)));
      req.inherit_fds.push_back({opened.back().get(), f.key});
    }
    for (const auto& d : plan.cgroup_dirs) CR_OK_IN(make_cgroup_dirs(d, made_dirs), "cgroup directory");
    UniqueFd console;
    if (opts.bundle.console_socket) console = CR_TRY(connect_console(*opts.bundle.console_socket));
    for (const auto& [k, v] : req.ext_mounts) LOG_INFO(log, "External mount '%s' from %s", k.c_str(), v.c_str());
    for (const auto& i : req.inherit_fds) LOG_INFO(log, "Inherited fd %d as %s", i.fd, i.key.c_str());

    oci::State state;
    state.oci_version = config->oci_version;
    state.id = sys::split(*bundle, '/').empty() ? "bundle" : std::string(sys::split(*bundle, '/').back());
    state.bundle = *bundle;
    state.annotations = config->annotations;
    oci::OciHooks oci_hooks(config->hooks, state, log, console.get());
    ScriptHooks scripts(o.action_scripts, image_dir_env(images), log);
    HookChain chain{&oci_hooks, &scripts};
    Session session = j->session();
    auto restored = restore(req, session, chain);
    // A failed startContainer hook stopped the container: that is the error, whatever the engine saw.
    if (oci_hooks.start_failure()) {
      if (restored && !detached) LOG_INFO(log, "The container was stopped after its startContainer hook failed");
      restored = fail(*oci_hooks.start_failure());
    }
    // poststop: the container is gone, its init exited in the foreground or a restore that had run
    // hooks failed (as runc destroys a container whose start failed). A detached one outlives us.
    if ((!restored && !oci_hooks.ran().empty()) || (restored && !detached)) oci_hooks.run_poststop();
    return restored;
  };
  auto res = restore_in();
  j->images_dir.reset();
  drop_unpacked();
  if (!res) {
    for (auto it = made_dirs.rbegin(); it != made_dirs.rend(); ++it) ::rmdir(it->c_str());
    return report_failure(j, "restore", res.error());
  }
  if (detached) return 0;
  int st = res->exit_status;
  if (WIFEXITED(st)) return WEXITSTATUS(st);
  if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
  return 0;
}

}  // namespace crshim
