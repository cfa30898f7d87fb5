// restore(): validate the whole image set, create the tasks, rebuild them, fire the hooks, resume.
#include <fcntl.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <tuple>

#include "checkpoint/base/fault.h"
#include "checkpoint/base/sys.h"
#include "checkpoint/cgroup/cgroup.h"
#include "checkpoint/engine.h"
#include "checkpoint/image/catalog.h"
#include "checkpoint/image/image.h"
#include "checkpoint/mem/lazy.h"
#include "checkpoint/mnt/mnt_ns.h"
#include "checkpoint/net/net_lock.h"
#include "checkpoint/net/netns.h"
#include "checkpoint/ns/ipc_objects.h"
#include "checkpoint/ns/namespaces.h"
#include "checkpoint/ns/pidns.h"
#include "checkpoint/ns/time_ns.h"
#include "checkpoint/ns/userns.h"
#include "checkpoint/restore/images.h"
#include "checkpoint/restore/task.h"
#include "checkpoint/tty/pty_restore.h"
#include "stats.pb.h"

namespace crshim {

namespace {

using Clock = std::chrono::steady_clock;

uint32_t micros(Clock::duration d) {
  return uint32_t(std::chrono::duration_cast<std::chrono::microseconds>(d).count());
}

// The image of `p`'s parent; null for the root.
const restorer::ProcessImage* parent_of(const restorer::ImageSet& set, const restorer::ProcessImage& p) {
  for (const auto& q : set.processes)
    if (q.pid() == p.pstree.ppid()) return &q;
  return nullptr;
}

// Objects shared between processes (CLONE_VM/FILES/FS/SIGHAND) can only be recreated by the
// parent's clone3 handing its own object to the child. Sharing between tasks that did not get it
// that way (siblings that share a table their parent does not, or a task that shares with a
// grandparent through a parent that does not) has no clone to express it, nor any later syscall
// that could join an existing fd table, fs state or mm: refused.
Status check_sharing(const restorer::ImageSet& set, const restorer::ProcessImage& p) {
  const restorer::ProcessImage* parent = parent_of(set, p);
  struct Kind {
    uint32_t (task_kobj_ids_entry::*id)() const;
    const char* what;
  };
  const Kind kinds[] = {{&task_kobj_ids_entry::vm_id, "address space (CLONE_VM)"},
                        {&task_kobj_ids_entry::files_id, "fd table (CLONE_FILES)"},
                        {&task_kobj_ids_entry::fs_id, "fs state (CLONE_FS)"},
                        {&task_kobj_ids_entry::sighand_id, "signal handlers (CLONE_SIGHAND)"}};
  for (const auto& k : kinds) {
    uint32_t mine = (p.ids.*k.id)();
    bool with_parent = parent && parent->alive() && (parent->ids.*k.id)() == mine;
    for (const auto& q : set.processes) {
      if (&q == &p) break;
      if (!q.alive() || (q.ids.*k.id)() != mine || with_parent) continue;
      return fail(make_error(Errc::unsupported, "restore", image::ids_file(p.pid()),
                             "tasks " + std::to_string(q.pid()) + " and " + std::to_string(p.pid()) + " share their " +
                                 k.what + " but " + std::to_string(p.pid()) +
                                 " does not share it with its parent; only sharing inherited from the parent "
                                 "can be restored"));
    }
  }
  // The kernel shares signal handlers only along with the address space.
  if (parent && parent->alive() && parent->ids.sighand_id() == p.ids.sighand_id() && parent->ids.vm_id() != p.ids.vm_id())
    return fail(make_error(Errc::corrupt_image, "restore", image::ids_file(p.pid()),
                           "signal handlers shared without the address space"));
  return {};
}

// A task's UTS, IPC and cgroup namespaces are its parent's, new ones it makes (unshare) right after
// it is created, restored from the images (`make`: namespaces met first at this task in tree order),
// or those of the earlier task in them, which it joins (`join`: setns through a pidfd, so that task
// must be in its pid namespace). The restorer's own (a task that went back to the host's) cannot be
// reached from inside the tree: refused, before any task exists.
struct NestedNamespaces {
  int make = 0;                                                       // CLONE_NEW* flags
  std::vector<std::pair<int, const restorer::ProcessImage*>> join;  // flag -> the task to join
};
Result<NestedNamespaces> nested_namespaces(const restorer::ImageSet& set, const restorer::ProcessImage& p) {
  NestedNamespaces out;
  const restorer::ProcessImage* parent = p.alive() ? parent_of(set, p) : nullptr;  // a zombie has no ids
  if (!parent || !parent->alive()) return out;  // the root, or check_sharing's concern
  for (auto [id, flag, what] : {std::tuple{&task_kobj_ids_entry::uts_ns_id, CLONE_NEWUTS, "UTS"},
                                {&task_kobj_ids_entry::ipc_ns_id, CLONE_NEWIPC, "IPC"},
                                {&task_kobj_ids_entry::cgroup_ns_id, CLONE_NEWCGROUP, "cgroup"}}) {
    uint32_t mine = (p.ids.*id)();
    if (mine == (parent->ids.*id)()) continue;
    const restorer::ProcessImage* first = nullptr;
    for (const auto& q : set.processes) {
      if (&q == &p) break;
      if (q.alive() && (q.ids.*id)() == mine) {
        first = &q;
        break;
      }
    }
    std::string whose;
    if (mine == (set.inventory.root_ids().*id)()) whose = "the dumper";
    else if (first && first->ids.pid_ns_id() != p.ids.pid_ns_id()) whose = "task " + std::to_string(first->pid()) + " in another pid namespace";
    if (!whose.empty())
      return fail(make_error(Errc::unsupported, "restore", image::ids_file(p.pid()),
                             std::string("the task shares the ") + what + " namespace of " + whose +
                                 ", not its parent's; crshim cannot reach it from the task")
                      .with_hint("a task below the root may be in its parent's namespace, a new one, or one of a task "
                                 "in its own pid namespace"));
    if (first) out.join.push_back({flag, first});
    else out.make |= flag;
  }
  return out;
}

// What this engine can restore so far; refused before any task exists.
Status check_supported(const restorer::ImageSet& set) {
  const auto& root = set.processes[0];
  if (!root.alive())
    return fail(make_error(Errc::unsupported, "restore", image::core_file(root.pid()), "the root task is not alive"));
  for (const auto& p : set.processes) {
    if (!p.alive()) continue;
    const auto& a = p.ids;
    if ((a.pid_ns_id() != root.ids.pid_ns_id()) != (p.ns_depth() > 0))
      return fail(make_error(Errc::corrupt_image, "restore", image::ids_file(p.pid()),
                             "the pid namespace does not match the task's nested pids"));
    if (a.net_ns_id() != root.ids.net_ns_id())
      return fail(make_error(Errc::unsupported, "restore", image::ids_file(p.pid()),
                             "tasks in different network namespaces are not supported yet"));
    // The root's own mount namespace is rebuilt from mountpoints-<ns>.img (mnt::TreeBuilder).
    if (a.mnt_ns_id() != root.ids.mnt_ns_id())
      return fail(make_error(Errc::unsupported, "restore", image::ids_file(p.pid()),
                             "tasks in different mount namespaces are not supported yet"));
    if (a.user_ns_id() != root.ids.user_ns_id())
      return fail(make_error(Errc::unsupported, "restore", image::ids_file(p.pid()),
                             "tasks in different user namespaces are not supported yet"));
    if (a.time_ns_id() != root.ids.time_ns_id())
      return fail(make_error(Errc::unsupported, "restore", image::ids_file(p.pid()),
                             "tasks in different time namespaces are not supported yet"));
    CR_OK(nested_namespaces(set, p));
    CR_OK(check_sharing(set, p));
  }
  for (const auto& p : set.processes)
    if (!p.alive() && p.cores[0].tc().task_state() != 2)
      return fail(make_error(Errc::unsupported, "restore", image::core_file(p.pid()),
                             "task state " + std::to_string(p.cores[0].tc().task_state()) + " is not supported"));
  return {};
}

// The namespace file a --join-ns NS:PID|PATH names.
std::string join_ns_path(const JoinNamespace& j) {
  bool pid_target = !j.target.empty() && j.target.find_first_not_of("0123456789") == std::string::npos;
  return pid_target ? "/proc/" + j.target + "/ns/" + j.ns : j.target;
}

// The user namespace the tree is restored into when it is not crshim's: the joined one (--join-ns
// user) or the tree's own, made with the maps of the images. Owners of objects in the images are its
// ids; crshim, which makes the objects, applies them through its maps (ns::owner_on_host()).
Result<std::optional<ns::UserNs>> target_userns(const restorer::ImageSet& set, const RestoreRequest& req, int images_dir) {
  for (const auto& j : req.join_ns)
    if (j.ns == "user") {
      std::string what = "--join-ns user:" + j.target;
      auto fd = sys::open(join_ns_path(j), O_RDONLY);
      if (!fd) return fail(fd.error().within(what));
      struct stat joined{}, own{};
      if (::fstat(fd->get(), &joined) == 0 && ::stat("/proc/self/ns/user", &own) == 0 && joined.st_ino == own.st_ino &&
          joined.st_dev == own.st_dev)
        return std::optional<ns::UserNs>();  // crshim's own: ids need no translation
      return std::optional<ns::UserNs>(CR_TRY(ns::UserNs::of_ns_fd(fd->get(), what)));
    }
  if (ns::owned_namespaces(set.processes[0].ids, set.inventory.root_ids()) & CLONE_NEWUSER)
    return std::optional<ns::UserNs>(CR_TRY(ns::UserNs::load(images_dir, set.processes[0].ids.user_ns_id())));
  return std::optional<ns::UserNs>();
}

// The root task inside an existing pid namespace (--external pid[..]:KEY at dump): setns() changes
// only where this thread's new children go, so crshim makes it there and goes back at once.
Result<restorer::RestoredTask> create_in_pidns(int pidns_fd, const restorer::ProcessImage& img, bool sibling, int ns_flags,
                                               Logger& log) {
  UniqueFd own = CR_TRY(sys::open("/proc/thread-self/ns/pid", O_RDONLY));
  if (::setns(pidns_fd, CLONE_NEWPID) < 0)
    return fail(sys_error("setns(CLONE_NEWPID)", "the external pid namespace")
                    .with_hint("it must be crshim's own pid namespace or one below it"));
  auto task = restorer::create_task(img, sibling, false, ns_flags, log);
  if (::setns(own.get(), CLONE_NEWPID) < 0) return fail(sys_error("setns(CLONE_NEWPID)", "crshim's own pid namespace"));
  return task;
}

// Pages the rebuild writes back: present and parent pages of every address space (tasks sharing one
// carry copies of its pagemap).
uint64_t pages_to_restore(const restorer::ImageSet& set) {
  uint64_t total = 0;
  std::set<uint32_t> counted;  // pages ids
  for (const auto& img : set.processes)
    if (img.alive() && counted.insert(img.pages_id).second)
      for (const auto& pe : img.pagemap)
        if (pe.flags() & (mem::kPePresent | mem::kPeParent)) total += pe.nr_pages();
  return total;
}

// The whole tree: every task created by its own parent with its pid, sessions and groups set,
// zombies made; then each live task rebuilt. Tasks are killed if the tree is dropped unresumed.
class RestoredTree {
 public:
  Status create(const restorer::ImageSet& set, const RestoreRequest& req, int images_dir, Logger& log,
                const net::RestorePlan& net, cgroup::Placement& cgroups, const tty::RestoredPtys& ptys,
                mnt::TreeBuilder* mounts, int join_pidns, const ns::UserNs* owners) {
    bool shell_job = req.shell_job, sibling = req.sibling;
    images_dir_ = images_dir;
    CR_OK(open_join_ns(req.join_ns));
    if (net.join_fd >= 0) join_fds_.push_back({net.join_fd, net.what});
    bool new_pidns = set.processes[0].ids.pid_ns_id() != set.inventory.root_ids().pid_ns_id() && join_pidns < 0;
    // The tree's own user namespace: made with the root, its maps written before the root runs; or
    // joined (--join-ns user) by a helper that clones the root there after every other join (runc asks
    // for that with --restore-sibling for a container whose config names a user namespace path).
    std::optional<ns::UserNs> userns;
    std::vector<int> join_first;
    if (join_user_) {
      if (!new_pidns)
        return fail(make_error(Errc::unsupported, "restore", "--join-ns user",
                               "joining a user namespace needs a tree with its own pid namespace")
                        .with_hint("tasks in the joined namespace cannot choose their pids in a pid namespace it does not own"));
      for (const auto& [fd, what] : join_fds_) join_first.push_back(fd);
      join_first.push_back(join_user_->fd);
    } else if (ns::owned_namespaces(set.processes[0].ids, set.inventory.root_ids()) & CLONE_NEWUSER) {
      userns = CR_TRY(ns::UserNs::load(images_dir, set.processes[0].ids.user_ns_id()));
    }
    // Every task inherits this at creation: its way back to crshim's files (TaskOptions::lender_fd).
    own_userns_ = userns || join_user_;
    if (own_userns_) {
      int sv[2];
      if (::socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv) < 0) return fail(sys_error("socketpair", "fd lender"));
      lender_ = UniqueFd(sv[0]);
      lender_peer_ = UniqueFd(sv[1]);
    } else {
      lender_ = UniqueFd(sys::pidfd_open(getpid()));
      if (!lender_) return fail(sys_error("pidfd_open", "crshim itself"));
    }
    int ns_flags = ns::owned_namespaces(set.processes[0].ids, set.inventory.root_ids()) & (CLONE_NEWUTS | CLONE_NEWIPC);
    int root_flags = (mounts ? CLONE_NEWNS : 0) | (userns ? CLONE_NEWUSER : 0);
    ns_flags |= net.clone_flags;  // CLONE_NEWNET: an empty network namespace
    std::map<uint32_t, restorer::RestoredTask*> by_pid;
    for (const auto& img : set.processes) {
      std::unique_ptr<restorer::RestoredTask> task;
      int nested = 0;  // namespaces a task below the root makes for itself
      // A time namespace takes its offsets before anyone is in it: made for the root's birth.
      std::optional<ns::ChildTimeNamespace> timens;
      if (img.pstree.ppid() == 0 && (ns::owned_namespaces(img.ids, set.inventory.root_ids()) & CLONE_NEWTIME))
        timens.emplace(CR_TRY(ns::ChildTimeNamespace::enter(images_dir, img.ids.time_ns_id(), log)));
      if (img.pstree.ppid() == 0 && join_pidns >= 0) {
        task = std::make_unique<restorer::RestoredTask>(
            CR_TRY(create_in_pidns(join_pidns, img, sibling, ns_flags | root_flags, log)));
      } else if (img.pstree.ppid() == 0) {
        task = std::make_unique<restorer::RestoredTask>(
            CR_TRY(restorer::create_task(img, sibling, new_pidns, ns_flags | root_flags, log, join_first)));
      } else {
        auto* parent = by_pid.at(img.pstree.ppid());
        task = std::make_unique<restorer::RestoredTask>(CR_TRY(restorer::fork_child(*parent, img, log)));
        // Its own UTS and IPC namespaces (new, or an earlier task's) before it creates children:
        // they are born in them.
        auto nested_ns = CR_TRY(nested_namespaces(set, img));
        nested = nested_ns.make;
        if (int uts_ipc = nested & (CLONE_NEWUTS | CLONE_NEWIPC))
          CR_OK(restorer::setup_namespaces(*task, uts_ipc, img.ids, images_dir_, owners, true));
        for (const auto& [flag, holder] : nested_ns.join)
          CR_OK_IN(restorer::run_early(*task, [&, flag = flag, holder = holder](kernel::Remote& r) -> Status {
                     // The earlier task by its pid in this task's pid namespace (the same).
                     long pidfd = CR_TRY(r.call(SYS_pidfd_open, holder->own_tid(0), 0));
                     auto joined = r.call(SYS_setns, pidfd, flag);
                     CR_OK(r.call(SYS_close, pidfd));
                     if (!joined) return fail(joined.error());
                     return {};
                   }),
                   "join the namespace of task " + std::to_string(holder->pid()));
      }
      if (img.pstree.ppid() == 0 && userns) {
        CR_OK_IN(userns->apply(task->pid()), "user namespace of the root task");
        CR_OK_IN(restorer::run_early(*task, [&](kernel::Remote& r) { return userns->become_root(r); }), "user namespace of the root task");
      }
      if (img.pstree.ppid() == 0 && join_user_)
        CR_OK_IN(restorer::run_early(*task, [&](kernel::Remote& r) { return ns::become(r, join_user_->uid, join_user_->gid); }),
                 "--join-ns user");
      // Into its cgroups before it creates children (they inherit them) or gets its memory (charged there).
      const auto& tcore = img.cores[0].thread_core();
      uint32_t cg_set = tcore.has_cg_set() ? tcore.cg_set() : img.cores[0].tc().cg_set();
      if (img.pstree.ppid() == 0 ? (ns::owned_namespaces(img.ids, set.inventory.root_ids()) & CLONE_NEWCGROUP)
                                 : (nested & CLONE_NEWCGROUP)) {
        // A cgroup namespace is rooted where its creator is when it unshares.
        CR_OK(cgroups.enter_ns_root(task->pid(), img.pid(), cg_set));
        CR_OK(restorer::run_early(*task, [](kernel::Remote& r) -> Status {
          CR_OK_IN(r.call(SYS_unshare, CLONE_NEWCGROUP), "unshare the cgroup namespace");
          return {};
        }));
      }
      CR_OK(cgroups.place(task->pid(), img.pid(), img.pstree.ppid(), cg_set));
      // A session leader starts its session before creating the tasks that belong to it.
      bool root_outside = img.pstree.ppid() == 0 && shell_job;
      if (img.pstree.ppid() == 0) {
        CR_OK(restorer::setup_namespaces(*task, ns_flags, img.ids, images_dir_, owners));
        if (join_first.empty()) CR_OK(restorer::join_namespaces(*task, join_fds_));
        if (mounts) CR_OK(mounts->build(task->pid(), log, ptys.slaves));
      }
      if (img.pstree.sid() == img.pid() && !root_outside) {
        CR_OK(restorer::set_session(*task));
        CR_OK(tty::take_ctty(*task, img.pid(), ptys, log));
      }
      by_pid[img.pid()] = task.get();
      tasks_.push_back(std::move(task));
      CR_OK(fault_point("restore:task-forked"));  // once per task: restore:task-forked:N fails at the N-th
    }
    // Process groups: leaders first, then members (a group must exist before anyone joins it).
    for (int pass = 0; pass < 2; pass++)
      for (size_t i = 0; i < set.processes.size(); i++) {
        const auto& ps = set.processes[i].pstree;
        bool leader = ps.pgid() == ps.pid();
        if (leader != (pass == 0) || ps.sid() == ps.pid() || !by_pid.count(ps.pgid())) continue;
        if (shell_job && ps.ppid() == 0) continue;  // the root keeps the restoring shell's group
        // setpgid() takes the group as the task's own pid namespace sees it.
        const auto& task_img = set.processes[i];
        const auto* leader_img = &task_img;
        for (const auto& p : set.processes)
          if (p.pid() == ps.pgid()) leader_img = &p;
        if (leader_img->ns_depth() != task_img.ns_depth()) continue;  // invisible from there: inherited
        CR_OK(restorer::set_process_group(*tasks_[i], leader_img->own_tid(0)));
      }
    CR_OK(tty::set_foreground_groups(ptys, set, [&](uint32_t vpid) -> restorer::RestoredTask* {
      auto it = by_pid.find(vpid);
      return it == by_pid.end() ? nullptr : it->second;
    }, log));
    // Zombies last, once nobody needs them as a parent or group leader any more.
    for (size_t i = 0; i < set.processes.size(); i++)
      if (!set.processes[i].alive()) CR_OK(restorer::make_zombie(*tasks_[i], int(set.processes[i].cores[0].tc().exit_code())));
    return {};
  }

  restorer::RestoredTask& task(size_t i) { return *tasks_[i]; }
  int lender() const { return lender_.get(); }
  int lender_peer() const { return lender_peer_.get(); }
  bool own_userns() const { return own_userns_; }
  pid_t root_pid() const { return tasks_.empty() ? 0 : tasks_[0]->pid(); }

  Status resume(const restorer::ImageSet& set) {
    for (size_t i = 0; i < tasks_.size(); i++)
      if (set.processes[i].alive()) CR_OK(tasks_[i]->resume());
    return {};
  }

  ~RestoredTree() {
    // Children before parents, so every task is reaped by us as its tracer.
    for (auto it = tasks_.rbegin(); it != tasks_.rend(); ++it) it->reset();
  }

 private:
  // Opens every --join-ns target; the root task inherits the fds and setns()es into them.
  Status open_join_ns(const std::vector<JoinNamespace>& join) {
    for (const auto& j : join) {
      std::string path = join_ns_path(j);
      auto fd = sys::open(path, O_RDONLY);
      if (!fd) return fail(fd.error().within("--join-ns " + j.ns + ":" + j.target));
      if (j.ns == "user") join_user_ = JoinedUser{fd->get(), j.uid, j.gid};
      else join_fds_.push_back({fd->get(), j.ns + " namespace " + path});
      join_owned_.push_back(std::move(*fd));
    }
    return {};
  }

  std::vector<std::unique_ptr<restorer::RestoredTask>> tasks_;
  UniqueFd lender_, lender_peer_;  // TaskOptions::lender_fd and lender_peer
  bool own_userns_ = false;
  std::vector<UniqueFd> join_owned_;
  int images_dir_ = -1;
  std::vector<std::pair<int, std::string>> join_fds_;  // every --join-ns but user's
  struct JoinedUser {
    int fd;
    uint32_t uid, gid;
  };
  std::optional<JoinedUser> join_user_;
};

// What task `i` shares with live tasks rebuilt before it (its ancestors, check_sharing() made sure),
// and whether a later one shares its fd table.
restorer::TaskSharing sharing_of(const restorer::ImageSet& set, size_t i) {
  const auto& me = set.processes[i].ids;
  restorer::TaskSharing share;
  for (size_t j = 0; j < set.processes.size(); j++) {
    const auto& q = set.processes[j];
    if (j == i || !q.alive()) continue;
    if (j < i) {
      share.own_vm &= q.ids.vm_id() != me.vm_id();
      share.own_files &= q.ids.files_id() != me.files_id();
      share.own_fs &= q.ids.fs_id() != me.fs_id();
      share.own_sighand &= q.ids.sighand_id() != me.sighand_id();
    } else {
      share.keep_holder |= q.ids.files_id() == me.files_id();
    }
  }
  return share;
}

Status write_stats(Session& s, Clock::duration forking, Clock::duration total, uint64_t pages) {
  stats_entry st;
  restore_stats_entry* r = st.mutable_restore();
  r->set_pages_compared(0);
  r->set_pages_skipped_cow(0);
  r->set_forking_time(micros(forking));
  r->set_restore_time(micros(total));
  r->set_pages_restored(pages);
  return image::write_single(s.work_dir, image::kStatsRestoreFile, image::kind(image::Type::stats), st);
}

// Up to the hard limit, so fd numbers of the image fit while files are handed over.
void raise_nofile_limit() {
  rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

}  // namespace

Result<RestoreResult> restore(const RestoreRequest& request, Session& session, Hooks& hooks) {
  RestoreRequest req = request;  // inherited fds asked for below join it
  auto start = Clock::now();
  Logger& log = session.log;
  LOG_INFO(log, "Restoring (crshim %s)", CRSHIM_VERSION);
  auto set = CR_TRY(restorer::load_images(session.images_dir));
  CR_OK(check_supported(set));
  // Pages a `dump --lazy-pages` left in the source's tree are in no image: only a lazy restore's daemon
  // fetches them (lazy-pages --page-server); restoring them as zeros would corrupt the tree.
  if (!req.lazy_pages)
    for (const auto& p : set.processes)
      for (const auto& pe : p.pagemap)
        if ((pe.flags() & mem::kPeLazy) && !(pe.flags() & (mem::kPePresent | mem::kPeParent)))
          return fail(make_error(Errc::unsupported, "restore", image::pagemap_file(p.pid()),
                                 "lazy-only pages (PE_LAZY without PE_PRESENT) are held by the lazy dump on the source")
                          .with_hint("restore with --lazy-pages, with `crshim lazy-pages --page-server` fetching them from the source"));
  for (const auto& j : req.join_ns) {
    static const std::map<std::string, uint32_t (task_kobj_ids_entry::*)() const> ids = {
        {"net", &task_kobj_ids_entry::net_ns_id},   {"ipc", &task_kobj_ids_entry::ipc_ns_id},
        {"uts", &task_kobj_ids_entry::uts_ns_id},   {"time", &task_kobj_ids_entry::time_ns_id},
        {"user", &task_kobj_ids_entry::user_ns_id}};
    auto it = ids.find(j.ns);
    if (it == ids.end())
      return fail(make_error(Errc::invalid_argument, "restore", "--join-ns " + j.ns + ":" + j.target,
                             "only ipc, net, time, user and uts namespaces can be joined"));
    // A network namespace in the image is never dumped in full, and a user namespace's ids are the
    // same wherever the tree lives: joining one replaces making it.
    if (j.ns != "net" && j.ns != "user" && (set.processes[0].ids.*(it->second))() != (set.inventory.root_ids().*(it->second))())
      return fail(make_error(Errc::conflict, "restore", "--join-ns " + j.ns + ":" + j.target,
                             "the image holds this " + j.ns + " namespace; it cannot be both restored and joined"));
  }
  // An inherited fd crshim does not have is asked for (an RPC client passes it with its answer).
  std::vector<UniqueFd> asked_for;
  for (auto& in : req.inherit_fds)
    if (::fcntl(in.fd, F_GETFD) < 0) {
      asked_for.push_back(CR_TRY(hooks.request_fd(in.key).map_error([&](Error e) {
        return e.within("--inherit-fd fd[" + std::to_string(in.fd) + "]:" + in.key);
      })));
      in.fd = asked_for.back().get();
    }
  auto netns = CR_TRY(net::plan_restore(set, req, session.images_dir, log));
  int join_pidns = CR_TRY(ns::external_pidns_fd(set, req, session.images_dir, log));
  // Declared before the tree: on failure the tasks are gone before the cgroups made for them are removed.
  auto cgroups = CR_TRY(cgroup::Placement::prepare(session.images_dir, set.inventory.root_cg_set(), req.manage_cgroups,
                                                   req.cgroup_roots, log));
  // Declared before the tree: the mounts live in the root task's namespace and go with it.
  std::optional<mnt::TreeBuilder> mounts;
  if (set.processes[0].ids.mnt_ns_id() != set.inventory.root_ids().mnt_ns_id())
    mounts.emplace(CR_TRY(mnt::TreeBuilder::prepare(session.images_dir, set.processes[0].ids.mnt_ns_id(), req)));
  else if (!req.root.empty())
    LOG_WARN(log, "--root %s: the image has no mount namespace; restoring in crshim's", req.root.c_str());
  raise_nofile_limit();

  // --lazy-pages: the daemon must be listening before any task exists.
  std::optional<mem::LazyClient> lazy;
  if (req.lazy_pages) lazy.emplace(CR_TRY(mem::LazyClient::connect(session.work_dir, std::chrono::seconds(5))));
  CR_OK(hooks.fire(HookPoint::pre_restore, 0));
  files::RestoreFiles files(set.files, session.images_dir, req.shell_job);
  auto owners_ns = CR_TRY(target_userns(set, req, session.images_dir));
  files.set_userns(owners_ns ? &*owners_ns : nullptr);
  // Owners the target namespace has no id for are refused before any task exists.
  CR_OK(files::check_owners(files, set.files));
  {
    std::set<uint32_t> ipc_checked{set.inventory.root_ids().ipc_ns_id()};
    for (const auto& p : set.processes)
      if (p.alive() && ipc_checked.insert(p.ids.ipc_ns_id()).second)
        CR_OK(ns::check_ipc_owners(p.ids.ipc_ns_id(), session.images_dir, files.userns()));
  }
  files.set_tcp_close(req.tcp_close);
  for (const auto& in : req.inherit_fds) files.inherit(in.fd, in.key);
  // Before any task exists: tasks inherit the ptys, and session leaders take theirs as they are created.
  auto ptys = CR_TRY(tty::restore_ptys(files, set, req.orphan_pts_master, log));
  RestoredTree tree;
  CR_OK(tree.create(set, req, session.images_dir, log, netns, cgroups, ptys, mounts ? &*mounts : nullptr, join_pidns,
                    owners_ns ? &*owners_ns : nullptr));
  if (mounts) CR_OK(fault_point("restore:mounts"));
  // From here on the image's paths name files in the restored root, not in crshim's.
  UniqueFd restored_root;
  if (mounts) {
    restored_root = CR_TRY(sys::open("/proc/" + std::to_string(tree.root_pid()) + "/root", O_PATH | O_DIRECTORY));
    files.set_root(restored_root.get());
  }
  // Declared after the tree: on failure the veths it made go before the tasks do.
  auto net_guard = CR_TRY(net::restore_netns(netns, tree.root_pid(), req, session.images_dir, log));
  // Sockets are made in the tree's network namespace when it has one of its own (made, joined or inherited).
  UniqueFd tree_netns = CR_TRY(sys::open("/proc/" + std::to_string(tree.root_pid()) + "/ns/net", O_RDONLY));
  if (CR_TRY(sys::read_link("/proc/" + std::to_string(tree.root_pid()) + "/ns/net")) != CR_TRY(sys::read_link("/proc/self/ns/net")))
    files.set_netns(tree_netns.get());
  // Locked again before any socket exists (--network-lock, the inventory's method); a failure removes
  // what this restore added, the lock a dump left stays for the next try.
  auto net_lock = CR_TRY(net::lock_for_restore(set, netns, tree_netns.get(), req.network_lock, log));
  CR_OK(fault_point("restore:cgroups"));
  auto forked = Clock::now();
  // From here on every failure kills the tasks (RestoredTree's destructor) before returning.
  CR_OK(fault_point("restore:task-created"));
  CR_OK(hooks.fire(HookPoint::setup_namespaces, tree.root_pid()));
  CR_OK(hooks.fire(HookPoint::post_setup_namespaces, 0));
  CR_OK(fault_point("restore:setup-namespaces"));
  for (const auto& o : ptys.orphans) CR_OK(hooks.fire_fd(HookPoint::orphan_pts_master, 0, o.master));
  mem::SharedMemory shmem(session.images_dir);
  restorer::TaskOptions topts{req.shell_job, kernel::xsave_layout(), tree.lender(), tree.lender_peer(),
                              tree.own_userns(), &shmem, session.progress};
  topts.lazy = lazy ? &*lazy : nullptr;
  ProgressPhase progress(session.progress, "restore", pages_to_restore(set));
  uint64_t pages = 0;
  for (size_t i = 0; i < set.processes.size(); i++) {
    const auto& img = set.processes[i];
    if (!img.alive()) continue;
    restorer::TaskSharing share = sharing_of(set, i);
    CR_OK_IN(restorer::rebuild_task(tree.task(i), set, img, session.images_dir, files, topts, share, log),
             "restore pid " + std::to_string(img.pid()));
    if (share.own_vm)
      for (const auto& pe : img.pagemap)
        if (pe.flags() & mem::kPePresent) pages += pe.nr_pages();
  }
  CR_OK(hooks.fire(HookPoint::post_restore, tree.root_pid()));
  // As CRIU: the network of a tree with its own namespace is unlocked before it resumes.
  if ((netns.clone_flags & CLONE_NEWNET) || netns.join_fd >= 0) CR_OK(hooks.fire(HookPoint::network_unlock, 0));
  CR_OK(net_lock.unlock());
  // After this point the tree is complete: hook failures are reported, not fatal (as CRIU).
  if (Status st = hooks.fire(HookPoint::pre_resume, 0); !st)
    LOG_ERROR(log, "pre-resume: %s", st.error().render().c_str());
  CR_OK(fault_point("restore:before-resume"));
  if (!req.pidfile.empty()) CR_OK(sys::write_file(req.pidfile, std::to_string(tree.root_pid()) + "\n"));
  CR_OK(tree.resume(set));
  // The daemon may finish once everything is delivered; the tree runs whatever it answers.
  if (lazy)
    if (Status st = lazy->finish(); !st) LOG_WARN(log, "lazy-pages: %s", st.error().render().c_str());
  cgroups.commit();
  // Every task has its files: the --link-remap links are not needed any more (a failed restore keeps
  // them, as CRIU does, so the images can be restored again).
  if (Status st = files.unlink_link_remaps(); !st) LOG_WARN(log, "%s", st.error().render().c_str());
  net_guard.commit();

  RestoreResult result;
  result.root_pid = tree.root_pid();
  if (Status st = hooks.fire(HookPoint::post_resume, result.root_pid); !st)
    LOG_ERROR(log, "post-resume: %s", st.error().render().c_str());
  if (Status st = write_stats(session, forked - start, Clock::now() - start, pages); !st)
    LOG_WARN(log, "Can't write stats: %s", st.error().render().c_str());
  result.total_us = micros(Clock::now() - start);
  LOG_INFO(log, "Restore finished successfully, root pid %d", result.root_pid);
  if (!req.detached && !req.sibling) {
    // Like CRIU without -d: stay the parent and wait for the restored tree's root to exit.
    int status = 0;
    while (waitpid(result.root_pid, &status, 0) < 0 && errno == EINTR) {
    }
    result.exit_status = status;
  }
  return result;
}

}  // namespace crshim
