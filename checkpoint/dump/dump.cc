// dump(): freeze the tree, write every image, then kill or resume it; any failure resumes it as it was.
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <random>

#include "checkpoint/base/fault.h"
#include "checkpoint/base/sys.h"
#include "checkpoint/dump/context.h"
#include "checkpoint/dump/process.h"
#include "checkpoint/engine.h"
#include "checkpoint/files/fds.h"
#include "checkpoint/image/catalog.h"
#include "checkpoint/image/image.h"
#include "checkpoint/kernel/proc.h"
#include "checkpoint/kernel/tracee.h"
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
  auto kids = CR_TRY(proc::children(pid));
  if (!kids.empty())
    return fail(make_error(Errc::unsupported, "dump", who,
                           "the process has " + std::to_string(kids.size()) + " child process(es); process trees are not supported yet"));
  if (stat->session != pid && !req.shell_job)
    return fail(make_error(Errc::invalid_argument, "dump", who, "the root task is not a session leader")
                    .with_hint("use --shell-job, or start the program with setsid"));
  return files::check_fds_supported(pid, req.shell_job);
}

Status write_common_images(dumper::DumpContext& ctx, const pstree_entry& root) {
  int dir = ctx.session.images_dir;
  CR_OK(ctx.files.finish());
  {
    auto w = CR_TRY(image::Writer::create(dir, image::kPstreeFile, image::kind(image::Type::pstree)));
    pstree_entry ps = root;
    ps.set_ppid(0);  // the root of the dumped tree
    CR_OK(w.write(ps));
    CR_OK(w.close());
  }
  {
    auto w = CR_TRY(image::Writer::create(dir, image::kSeccompFile, image::kind(image::Type::seccomp)));
    CR_OK(w.write(ctx.seccomp));
    CR_OK(w.close());
  }
  // The inventory goes last: its presence means the image set is complete.
  inventory_entry inv;
  inv.set_img_version(2);
  inv.set_fdinfo_per_id(true);
  *inv.mutable_root_ids() = CR_TRY(dumper::task_ids(getpid(), ctx.ids, true));
  inv.set_ns_per_id(true);
  inv.set_root_cg_set(1);
  inv.set_lsmtype(NO_LSM);
  inv.set_network_lock_method(2);  // skip: no network namespace is dumped
  inv.mutable_plugins_entry();
  inv.set_dump_criu_run_id(run_id());
  auto w = CR_TRY(image::Writer::create(dir, image::kInventoryFile, image::kind(image::Type::inventory)));
  CR_OK(w.write(inv));
  return w.close();
}

Status write_stats(const dumper::DumpContext& ctx, Clock::duration freezing, Clock::duration frozen) {
  stats_entry st;
  dump_stats_entry* d = st.mutable_dump();
  d->set_freezing_time(micros(freezing));
  d->set_frozen_time(micros(frozen));
  d->set_memdump_time(uint32_t(ctx.result.memdump_us));
  d->set_memwrite_time(uint32_t(ctx.result.memwrite_us));
  d->set_pages_scanned(ctx.result.pages_scanned);
  d->set_pages_skipped_parent(0);
  d->set_pages_written(ctx.result.pages_written);
  d->set_pages_lazy(0);
  auto w = CR_TRY(image::Writer::create(ctx.session.work_dir, image::kStatsDumpFile, image::kind(image::Type::stats)));
  CR_OK(w.write(st));
  return w.close();
}

}  // namespace

Result<DumpResult> dump(const DumpRequest& req, Session& session, Hooks& hooks) {
  auto start = Clock::now();
  Logger& log = session.log;
  LOG_INFO(log, "Dumping pid %d (crshim %s)", req.pid, CRSHIM_VERSION);
  CR_OK(hooks.fire(HookPoint::pre_dump, 0));
  CR_OK(preflight(req));

  kernel::FreezeOptions freeze_opts;
  // A seccomp filter in the target could refuse the syscalls we make it run.
  if (kernel::tracer_can_suspend_seccomp()) freeze_opts.ptrace_options |= PTRACE_O_SUSPEND_SECCOMP;
  auto frozen = CR_TRY(kernel::FrozenProcess::freeze(req.pid, freeze_opts));
  auto frozen_at = Clock::now();
  LOG_INFO(log, "Froze %d: %zu threads in %lld us", req.pid, frozen.threads().size(),
           (long long)std::chrono::duration_cast<std::chrono::microseconds>(frozen.freeze_duration()).count());

  dumper::DumpContext ctx{req, session, kernel::xsave_layout(), files::DumpFiles(session.images_dir, req.shell_job), {}, {}, 1, {}};
  pstree_entry root;
  Status st = fault_point("dump:frozen");
  if (st) st = dumper::dump_process(frozen, ctx, root);
  if (st) st = fault_point("dump:images");
  if (st) st = write_common_images(ctx, root);
  if (st) st = hooks.fire(HookPoint::post_dump, 0);
  if (!st) {
    // FrozenProcess puts every register and signal mask back and detaches: the task runs on as before.
    Status thawed = frozen.thaw();
    if (!thawed) LOG_ERROR(log, "Resuming %d after the failed dump: %s", req.pid, thawed.error().render().c_str());
    return fail(st.error());
  }

  auto frozen_for = Clock::now() - frozen_at;
  if (req.leave_running) {
    CR_OK(frozen.thaw());
  } else {
    CR_OK(frozen.kill());
  }
  CR_OK(write_stats(ctx, std::chrono::duration_cast<Clock::duration>(frozen.freeze_duration()), frozen_for));
  ctx.result.frozen_us = micros(frozen_for);
  ctx.result.total_us = micros(Clock::now() - start);
  LOG_INFO(log, "Dumping finished successfully");
  return ctx.result;
}

}  // namespace crshim
