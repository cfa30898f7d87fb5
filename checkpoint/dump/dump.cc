// dump(): freeze the tree, write every image, then kill or resume it; any failure resumes it as it was.
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <optional>
#include <random>
#include <set>

#include "checkpoint/base/fault.h"
#include "checkpoint/cgroup/cgroup.h"
#include "checkpoint/base/sys.h"
#include "checkpoint/dump/context.h"
#include "checkpoint/dump/lazy_dump.h"
#include "checkpoint/dump/process.h"
#include "checkpoint/dump/tree.h"
#include "checkpoint/engine.h"
#include "checkpoint/files/fds.h"
#include "checkpoint/files/inet.h"
#include "checkpoint/image/catalog.h"
#include "checkpoint/image/image.h"
#include "checkpoint/kernel/proc.h"
#include "checkpoint/kernel/tracee.h"
#include "checkpoint/mem/lazy_remote.h"
#include "checkpoint/mem/page_server.h"
#include "checkpoint/mnt/mnt_ns.h"
#include "checkpoint/net/net_lock.h"
#include "checkpoint/net/netns.h"
#include "checkpoint/ns/namespaces.h"
#include "checkpoint/ns/pidns.h"
#include "checkpoint/ns/time_ns.h"
#include "checkpoint/ns/userns.h"
#include "stats.pb.h"

namespace crshim {

namespace {

using Clock = std::chrono::steady_clock;

uint32_t micros(Clock::duration d) {
  return uint32_t(std::chrono::duration_cast<std::chrono::microseconds>(d).count());
}

std::string run_id() {
  std::random_device rd;
  char buf[64];
  snprintf(buf, sizeof buf, "crshim-%s-%08x%08x", CRSHIM_VERSION, rd(), rd());
  return buf;
}

// Refuses, before anything is frozen, what this engine cannot dump, listing every problem at once.
Status preflight(const DumpRequest& req) {
  pid_t pid = req.pid;
  std::string who = "pid " + std::to_string(pid);
  if (pid <= 0) return fail(make_error(Errc::invalid_argument, "dump", who, "no process given").with_hint("use -t PID"));
  if (pid == getpid()) return fail(make_error(Errc::invalid_argument, "dump", who, "crshim cannot dump itself"));
  auto stat = proc::read_stat(pid);
  if (!stat) {
    if (stat.error().err == ENOENT)
      return fail(make_error(Errc::not_found, "dump", who, "no such process"));
    return fail(stat.error());
  }
  if (stat->state == 'Z' || stat->state == 'X')
    return fail(make_error(Errc::invalid_argument, "dump", who, "the process is a zombie"));
  // Every problem at once, so one run tells the user all there is to fix.
  std::vector<std::string> problems;
  std::string hint;
  // A refusal's own text, or the failed call's whole story when it has none.
  auto add_problem = [&](const std::string& prefix, const Error& e) {
    problems.push_back(prefix + (e.message.empty() ? e.render() : e.message));
    if (hint.empty()) hint = e.hint;
  };
  if (stat->session != pid && !req.shell_job) {
    problems.push_back("the root task is not a session leader");
    hint = "use --shell-job, or start the program with setsid";
  }
  // The network namespace: external, left empty, or dumped in full if all its links can be (net::preflight_problem).
  if (auto net_problem = net::preflight_problem(pid, req); !net_problem.empty()) problems.push_back(net_problem);
  // The mount namespace: every mount must be reproducible or marked external.
  if (auto mnt_problems = mnt::check_dumpable(pid, req); !mnt_problems) {
    problems.push_back(mnt_problems.error().render());
  } else if (!mnt_problems->empty()) {
    problems.insert(problems.end(), mnt_problems->begin(), mnt_problems->end());
    if (hint.empty()) hint = "mark mounts that come from the host external: --external mnt[PATH]:KEY";
  }
  // A user namespace of its own: one, a child of crshim's, for the whole tree.
  auto userns_of = [](pid_t p) { return sys::read_link("/proc/" + std::to_string(p) + "/ns/user"); };
  auto root_userns = userns_of(pid);
  if (ns::in_other_userns(pid))
    if (auto maps = ns::UserNs::of_task(pid); !maps) add_problem("", maps.error());
  auto tree = CR_TRY(dumper::list_tree(pid));
  for (pid_t p : tree) {
    if (auto u = userns_of(p); p != pid && root_userns && u && *u != *root_userns)
      problems.push_back("pid " + std::to_string(p) + ": in another user namespace than the root's, which is not supported");
    // A pre-dump takes memory only: sockets are not touched.
    if (!req.pre_dump)
      if (auto tcp = files::inet::tcp_problems(p, {req.tcp_established, req.tcp_close, req.skip_in_flight}); !tcp.empty()) {
        problems.push_back(tcp);
        if (hint.empty())
          hint = "use --tcp-established to dump established TCP connections, or --tcp-close to restore them closed";
      }
    if (auto timens = ns::time_ns_problem(p); !timens.empty()) {
      problems.push_back((p == pid ? "" : "pid " + std::to_string(p) + ": ") + timens);
      if (hint.empty()) hint = "dump the process that runs in the new time namespace (its child), not the one that made it";
    }
    Status st = files::check_fds_supported(p, req.shell_job);
    if (st || st.error().err == ENOENT) continue;
    add_problem(p == pid ? "" : "pid " + std::to_string(p) + ": ", st.error());
  }
  if (problems.empty()) return {};
  std::string all;
  for (const auto& p : problems) all += (all.empty() ? "" : "; ") + p;
  return fail(make_error(Errc::unsupported, "dump", who, all).with_hint(hint));
}

// Pids as the root task's pid namespace sees them, plus the pids of tasks in namespaces nested below.
Status map_virtual_pids(dumper::FrozenTree& tree, dumper::DumpContext& ctx) {
  size_t& levels = ctx.pid_levels;
  for (size_t i : tree.preorder()) {
    auto& task = tree.tasks()[i];
    std::vector<pid_t> tids{task.pid};
    if (task.frozen) {
      tids.clear();
      for (const auto& t : task.frozen->threads()) tids.push_back(t.tid());
    }
    for (pid_t tid : tids) {
      auto st = CR_TRY(proc::read_status(task.pid, tid == task.pid ? 0 : tid));
      if (st.nspid.empty()) return fail(make_error(Errc::unsupported, "dump", "pid " + std::to_string(tid), "no NSpid in status"));
      if (levels == 0) levels = st.nspid.size();
      if (st.nspid.size() < levels)
        return fail(make_error(Errc::unsupported, "dump", "pid " + std::to_string(task.pid),
                               "the task is outside of the root task's pid namespace"));
      ctx.vpids[tid] = st.nspid[levels - 1];
      if (st.nspid.size() > levels) ctx.nested_pids[tid].assign(st.nspid.begin() + long(levels), st.nspid.end());
    }
  }
  return {};
}

Status write_common_images(dumper::DumpContext& ctx, const std::vector<pstree_entry>& tree, NetLockMethod lock,
                           const std::string& dump_run_id) {
  int dir = ctx.session.images_dir;
  CR_OK(ctx.files.finish());
  {
    auto w = CR_TRY(image::Writer::create(dir, image::kPstreeFile, image::kind(image::Type::pstree)));
    for (size_t i = 0; i < tree.size(); i++) {
      pstree_entry ps = tree[i];
      if (i == 0) ps.set_ppid(0);  // the root of the dumped tree
      CR_OK(w.write(ps));
    }
    CR_OK(w.close());
  }
  CR_OK(image::write_single(dir, image::kSeccompFile, image::kind(image::Type::seccomp), ctx.seccomp));
  // The inventory goes last: its presence means the image set is complete.
  inventory_entry inv;
  inv.set_img_version(2);
  inv.set_fdinfo_per_id(true);
  *inv.mutable_root_ids() = CR_TRY(dumper::task_ids(getpid(), ctx.ids));
  inv.set_ns_per_id(true);
  inv.set_root_cg_set(1);
  inv.set_lsmtype(NO_LSM);
  inv.set_network_lock_method(uint32_t(lock));  // CRIU's numbering, as NetLockMethod's
  inv.mutable_plugins_entry();
  inv.set_dump_criu_run_id(dump_run_id);  // names the nftables lock table
  return image::write_single(dir, image::kInventoryFile, image::kind(image::Type::inventory), inv);
}

Status write_stats(const dumper::DumpContext& ctx, Clock::duration freezing, Clock::duration frozen) {
  stats_entry st;
  dump_stats_entry* d = st.mutable_dump();
  d->set_freezing_time(micros(freezing));
  d->set_frozen_time(micros(frozen));
  d->set_memdump_time(uint32_t(ctx.result.memdump_us));
  d->set_memwrite_time(uint32_t(ctx.result.memwrite_us));
  d->set_pages_scanned(ctx.result.pages_scanned);
  d->set_pages_skipped_parent(ctx.result.pages_skipped_parent);
  d->set_pages_written(ctx.result.pages_written);
  d->set_pages_lazy(ctx.result.pages_lazy);
  return image::write_single(ctx.session.work_dir, image::kStatsDumpFile, image::kind(image::Type::stats), st);
}

// --page-server: connected before anything is frozen, so an unreachable server costs the tree nothing.
Result<std::unique_ptr<mem::PageServerClient>> connect_page_server(const DumpRequest& req) {
  if (!req.page_server) return std::unique_ptr<mem::PageServerClient>();
  if (req.ps_fd >= 0) {
    UniqueFd sock(fcntl(req.ps_fd, F_DUPFD_CLOEXEC, 3));
    if (!sock.valid()) return fail(sys_error("dup", "page server socket fd " + std::to_string(req.ps_fd)));
    return mem::PageServerClient::adopt(std::move(sock));
  }
  if (req.ps_address.empty() || req.ps_port == 0)
    return fail(make_error(Errc::invalid_argument, "dump", "page server", "no address or port")
                    .with_hint("give --address ADDR --port PORT of a running page server"));
  return mem::PageServerClient::connect(req.ps_address, req.ps_port);
}

// UTS and IPC namespaces that tasks below the root made (unshare): each once, from the first task
// in tree order that is in it. The root's and the dumper's are not dumped here.
Status dump_nested_uts_ipc(const std::vector<std::pair<pid_t, task_kobj_ids_entry>>& ids, const task_kobj_ids_entry& dumper,
                           int images_dir, const ns::UserNs* userns) {
  std::set<uint32_t> uts_done{dumper.uts_ns_id(), ids[0].second.uts_ns_id()};
  std::set<uint32_t> ipc_done{dumper.ipc_ns_id(), ids[0].second.ipc_ns_id()};
  for (size_t i = 1; i < ids.size(); i++) {
    const auto& [pid, task] = ids[i];
    // Compared with the dumper's ids but for the namespaces still to dump, so that only those are.
    task_kobj_ids_entry view = dumper;
    if (uts_done.insert(task.uts_ns_id()).second) view.set_uts_ns_id(task.uts_ns_id());
    if (ipc_done.insert(task.ipc_ns_id()).second) view.set_ipc_ns_id(task.ipc_ns_id());
    if (ns::owned_namespaces(view, dumper)) CR_OK(ns::dump_namespaces(pid, view, dumper, images_dir, userns));
  }
  return {};
}

// The page server confirms that every page arrived; what each pagemap covers stays here for the
// next incremental dump (the pagemaps themselves are on the server).
Status finish_page_server(dumper::DumpContext& ctx, mem::PageServerClient* server) {
  if (!server) return {};
  CR_OK(server->finish());
  return dumper::write_coverage_record(ctx.session.images_dir, server->coverage());
}

// After a failed dump, before the tree is thawed: the tracking uffds armed by it are closed again.
void disarm_new_tracking(dumper::FrozenTree& tree, dumper::DumpContext& ctx) {
  for (auto& task : tree.tasks()) {
    auto it = task.frozen ? ctx.armed_now.find(task.pid) : ctx.armed_now.end();
    if (it == ctx.armed_now.end()) continue;
    Status st = dumper::disarm_write_tracking(*task.frozen, it->second);
    if (!st) LOG_ERROR(ctx.session.log, "Closing the write tracking armed in %d: %s", task.pid, st.error().render().c_str());
  }
}

// A pre-dump: the memory of every live task, write tracking armed for the next dump, and the tree
// left running whatever happens (as CRIU's, it runs no hooks).
Result<DumpResult> finish_pre_dump(const DumpRequest& req, dumper::FrozenTree& tree, dumper::DumpContext& ctx, Status st,
                                   Clock::time_point start, mem::PageServerClient* server) {
  auto frozen_at = Clock::now();
  for (size_t i : tree.preorder()) {
    if (!st) break;
    auto& task = tree.tasks()[i];
    if (task.zombie) continue;
    pstree_entry unused;
    st = dumper::dump_process(*task.frozen, ctx, unused);
  }
  if (st) st = dumper::write_tracking_record(ctx.session.images_dir, ctx.tracking);
  if (st) st = finish_page_server(ctx, server);
  auto frozen_for = Clock::now() - frozen_at;
  if (!st) disarm_new_tracking(tree, ctx);
  Status thawed = tree.thaw();
  if (!st) {
    if (!thawed) LOG_ERROR(ctx.session.log, "Resuming the tree of %d: %s", req.pid, thawed.error().render().c_str());
    return fail(st.error());
  }
  CR_OK(thawed);
  CR_OK(write_stats(ctx, std::chrono::microseconds(tree.freeze_us()), frozen_for));
  ctx.result.frozen_us = micros(frozen_for);
  ctx.result.total_us = micros(Clock::now() - start);
  LOG_INFO(ctx.session.log, "Pre-dump finished: %llu pages written", (unsigned long long)ctx.result.pages_written);
  return ctx.result;
}

}  // namespace

Result<DumpResult> dump(const DumpRequest& req, Session& session, Hooks& hooks) {
  auto start = Clock::now();
  Logger& log = session.log;
  LOG_INFO(log, "Dumping pid %d (crshim %s)", req.pid, CRSHIM_VERSION);
  if (!req.pre_dump) CR_OK(hooks.fire(HookPoint::pre_dump, 0));  // CRIU runs no hooks in a pre-dump
  CR_OK(preflight(req));
  auto page_server = CR_TRY(connect_page_server(req));
  auto lazy_server = CR_TRY(dumper::listen_for_lazy_pages(req));
  mem::LazyPagesSource lazy_source;
  // The tree is frozen with ptrace; a freezer cgroup a runtime froze first is thawed meanwhile.
  auto paused = CR_TRY(cgroup::PausedFreezer::thaw_if_frozen(req.freeze_cgroup, log));

  kernel::FreezeOptions freeze_opts;
  freeze_opts.timeout = std::chrono::seconds(req.freeze_timeout_s);
  // A seccomp filter in the target could refuse the syscalls we make it run.
  if (kernel::tracer_can_suspend_seccomp()) freeze_opts.ptrace_options |= PTRACE_O_SUSPEND_SECCOMP;
  auto tree = CR_TRY(dumper::FrozenTree::freeze(req.pid, freeze_opts, log));
  auto frozen_at = Clock::now();
  LOG_INFO(log, "Froze %zu tasks in %llu us", tree.tasks().size(), (unsigned long long)tree.freeze_us());
  ProgressPhase progress(session.progress, req.pre_dump ? "pre-dump" : "dump", 0);

  dumper::DumpContext ctx(req, session);
  ctx.page_sink = page_server.get();
  if (lazy_server) ctx.lazy_source = &lazy_source;
  if (ns::in_other_userns(req.pid)) {
    auto userns = ns::UserNs::of_task(req.pid);
    if (!userns) {
      Status thawed = tree.thaw();
      if (!thawed) LOG_ERROR(log, "Resuming the tree of %d: %s", req.pid, thawed.error().render().c_str());
      return fail(userns.error());
    }
    ctx.userns = std::move(*userns);
    ctx.files.set_userns(&*ctx.userns);
  }
  std::optional<dumper::ParentImages> parent;
  if (!req.parent_img.empty()) {
    auto p = dumper::ParentImages::link(session.images_dir, req.parent_img);
    if (!p) {
      Status thawed = tree.thaw();
      if (!thawed) LOG_ERROR(log, "Resuming the tree of %d: %s", req.pid, thawed.error().render().c_str());
      return fail(p.error());
    }
    parent = std::move(*p);
    ctx.parent = &*parent;
  }
  std::vector<pstree_entry> pstree;
  std::vector<std::pair<pid_t, task_kobj_ids_entry>> ids;
  Status st = fault_point("dump:frozen");
  if (st) st = map_virtual_pids(tree, ctx);
  // Every task's cgroup set, known before its core is written (thread_core.cg_set refers to it).
  cgroup::Collector cgroups;
  if (st) st = cgroups.init();
  if (req.pre_dump) return finish_pre_dump(req, tree, ctx, st, start, page_server.get());
  for (size_t i : tree.preorder()) {
    const auto& task = tree.tasks()[i];
    if (!st) break;
    if (task.zombie) continue;
    auto cg = cgroups.add_task(task.pid);
    if (cg) ctx.cg_sets[task.pid] = *cg;
    else st = fail(cg.error());
  }
  // As CRIU: a tree with its own network namespace has it locked while its sockets are dumped
  // (runc runs its network strategies on these hooks); there is no lock method to apply here.
  bool net_locked = false;
  if (st) {
    auto own = net::own_netns(req.pid);
    if (!own) st = fail(own.error());
    else if (*own && (st = hooks.fire(HookPoint::network_lock, 0))) net_locked = true;
  }
  // Then crshim's own lock (--network-lock): the namespace when it is dumped, else each TCP connection.
  std::string dump_run_id = run_id();
  net::NetworkLock net_lock;
  if (st) {
    std::vector<pid_t> pids;
    for (size_t i : tree.preorder()) pids.push_back(tree.tasks()[i].pid);
    auto lock = net::lock_for_dump(req, pids, dump_run_id, log);
    if (lock) net_lock = std::move(*lock);
    else st = fail(lock.error());
  }
  for (size_t i : tree.preorder()) {
    if (!st) break;
    auto& task = tree.tasks()[i];
    pstree.emplace_back();
    if (task.zombie) {
      st = dumper::dump_zombie(task.pid, task.exit_code, ctx, pstree.back());
      continue;
    }
    st = dumper::dump_process(*task.frozen, ctx, pstree.back());
    if (st) {
      auto tid = dumper::task_ids(task.pid, ctx.ids);
      if (tid) ids.push_back({task.pid, *tid});
      else st = fail(tid.error());
    }
  }
  // Processes sharing an mm, fd table, fs state or signal handlers are dumped as CRIU does: equal
  // ids in ids-<pid>.img, each shared object's contents once; restore decides what it can recreate.
  if (st && !ids.empty()) {
    // Time namespaces: one per tree for now, dumped with the root (UTS and IPC ones below; where
    // each task's cgroup namespace is rooted is in cgroup.img).
    auto dumper_ids = dumper::task_ids(getpid(), ctx.ids);
    if (!dumper_ids) st = fail(dumper_ids.error());
    for (size_t i = 1; st && i < ids.size(); i++)
      if (ids[i].second.time_ns_id() != ids[0].second.time_ns_id())
        st = fail(make_error(Errc::unsupported, "dump", "pid " + std::to_string(ids[i].first),
                             "the task is in another time namespace than the root; not supported yet"));
    if (st) st = net::dump_netns(req, ids, *dumper_ids, session.images_dir, log);
    // A pid namespace of its own: made anew at restore (the root is its pid 1), or external.
    if (st && ids[0].second.pid_ns_id() != dumper_ids->pid_ns_id())
      st = ns::dump_pidns(req.pid, ctx.vpids[req.pid], ids[0].second.pid_ns_id(), req.external, session.images_dir, log);
    if (st) {
      // The network namespace is net::dump_netns's: the other namespaces' dump sees the dumper's.
      task_kobj_ids_entry root_ids = ids[0].second;
      root_ids.set_net_ns_id(dumper_ids->net_ns_id());
      root_ids.set_mnt_ns_id(dumper_ids->mnt_ns_id());  // mnt::dump_mounts's
      root_ids.set_user_ns_id(dumper_ids->user_ns_id());  // ctx.userns, saved here
      st = ns::dump_namespaces(req.pid, root_ids, *dumper_ids, session.images_dir, ctx.userns ? &*ctx.userns : nullptr);
      if (st && ctx.userns) st = ctx.userns->save(session.images_dir, ids[0].second.user_ns_id());
      if (st) st = dump_nested_uts_ipc(ids, *dumper_ids, session.images_dir, ctx.userns ? &*ctx.userns : nullptr);
    }
    for (size_t i = 1; st && i < ids.size(); i++)
      if (ids[i].second.mnt_ns_id() != ids[0].second.mnt_ns_id())
        st = fail(make_error(Errc::unsupported, "dump", "pid " + std::to_string(ids[i].first),
                             "the task is in another mount namespace than the root; not supported yet"));
    if (st && ids[0].second.mnt_ns_id() != dumper_ids->mnt_ns_id())
      st = mnt::dump_mounts(req.pid, ids[0].second.mnt_ns_id(), req, session.images_dir, log);
  }
  if (st) st = cgroups.write(session.images_dir, ctx.cg_sets[req.pid]);
  if (st && req.track_mem) st = dumper::write_tracking_record(session.images_dir, ctx.tracking);
  if (st) st = finish_page_server(ctx, page_server.get());
  if (st) st = fault_point("dump:images");
  if (st) st = write_common_images(ctx, pstree, req.network_lock, dump_run_id);
  if (st) st = hooks.fire(HookPoint::post_dump, 0);
  if (st && lazy_server) st = dumper::serve_lazy_pages(*lazy_server, lazy_source, req.hangup_fd, log, hooks);
  if (!st) {
    ctx.files.end_tcp_repair();
    disarm_new_tracking(tree, ctx);
    // Every register and signal mask is put back before the tasks are released: they run on as before.
    Status thawed = tree.thaw();
    if (!thawed) LOG_ERROR(log, "Resuming the tree of %d after the failed dump: %s", req.pid, thawed.error().render().c_str());
    if (net_locked) (void)hooks.fire(HookPoint::network_unlock, 0);
    if (Status un = net_lock.abort(); !un)
      LOG_ERROR(log, "Unlocking the network after the failed dump: %s", un.error().render().c_str());
    return fail(st.error());
  }
  ctx.files.keep_link_remaps();  // the images name them now; a failed dump removes them (~DumpFiles)

  auto frozen_for = Clock::now() - frozen_at;
  if (req.leave_running) {
    ctx.files.end_tcp_repair();
    CR_OK(tree.thaw());
    if (net_locked) CR_OK(hooks.fire(HookPoint::network_unlock, 0));
    CR_OK(net_lock.abort());
  } else {
    CR_OK(tree.kill());
    net_lock.keep();  // the connections stay quiet until the restore unlocks them
    paused.tasks_gone();
  }
  CR_OK(write_stats(ctx, std::chrono::microseconds(tree.freeze_us()), frozen_for));
  ctx.result.frozen_us = micros(frozen_for);
  ctx.result.total_us = micros(Clock::now() - start);
  LOG_INFO(log, "Dumping finished successfully");
  return ctx.result;
}

}  // namespace crshim
