// restore(): validate the whole image set, create the tasks, rebuild them, fire the hooks, resume.
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>

#include "checkpoint/base/fault.h"
#include "checkpoint/base/sys.h"
#include "checkpoint/engine.h"
#include "checkpoint/image/catalog.h"
#include "checkpoint/image/image.h"
#include "checkpoint/restore/images.h"
#include "checkpoint/restore/task.h"
#include "stats.pb.h"

namespace crshim {

namespace {

using Clock = std::chrono::steady_clock;

uint32_t micros(Clock::duration d) {
  return uint32_t(std::chrono::duration_cast<std::chrono::microseconds>(d).count());
}

// What this engine can restore so far; refused before any task exists.
Status check_supported(const restorer::ImageSet& set) {
  if (set.processes.size() != 1)
    return fail(make_error(Errc::unsupported, "restore", image::kPstreeFile,
                           std::to_string(set.processes.size()) + " processes in the image; process trees are not supported yet"));
  const auto& root = set.processes[0];
  if (!root.alive())
    return fail(make_error(Errc::unsupported, "restore", image::core_file(root.pid()), "the root task is not alive"));
  const auto& a = root.ids;
  const auto& b = set.inventory.root_ids();
  if (a.pid_ns_id() != b.pid_ns_id() || a.net_ns_id() != b.net_ns_id() || a.ipc_ns_id() != b.ipc_ns_id() ||
      a.uts_ns_id() != b.uts_ns_id() || a.mnt_ns_id() != b.mnt_ns_id() || a.user_ns_id() != b.user_ns_id() ||
      a.cgroup_ns_id() != b.cgroup_ns_id() || (a.has_time_ns_id() && a.time_ns_id() != b.time_ns_id()))
    return fail(make_error(Errc::unsupported, "restore", image::ids_file(root.pid()),
                           "the task lived in its own namespaces; restoring namespaces is not supported yet"));
  return {};
}

Status write_stats(Session& s, Clock::duration forking, Clock::duration total, uint64_t pages) {
  stats_entry st;
  restore_stats_entry* r = st.mutable_restore();
  r->set_pages_compared(0);
  r->set_pages_skipped_cow(0);
  r->set_forking_time(micros(forking));
  r->set_restore_time(micros(total));
  r->set_pages_restored(pages);
  auto w = CR_TRY(image::Writer::create(s.work_dir, image::kStatsRestoreFile, image::kind(image::Type::stats)));
  CR_OK(w.write(st));
  return w.close();
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

Result<RestoreResult> restore(const RestoreRequest& req, Session& session, Hooks& hooks) {
  auto start = Clock::now();
  Logger& log = session.log;
  LOG_INFO(log, "Restoring (crshim %s)", CRSHIM_VERSION);
  auto set = CR_TRY(restorer::load_images(session.images_dir));
  CR_OK(check_supported(set));
  const auto& img = set.processes[0];
  raise_nofile_limit();

  CR_OK(hooks.fire(HookPoint::pre_restore, 0));
  auto task = CR_TRY(restorer::create_task(img, log));
  auto forked = Clock::now();
  // From here on every failure kills the task (RestoredTask's destructor) before returning.
  CR_OK(fault_point("restore:task-created"));
  CR_OK(hooks.fire(HookPoint::setup_namespaces, task.pid()));
  CR_OK(hooks.fire(HookPoint::post_setup_namespaces, 0));
  restorer::TaskOptions topts{req.shell_job, kernel::xsave_layout()};
  files::RestoreFiles files(set.files, session.images_dir, req.shell_job);
  CR_OK_IN(restorer::rebuild_task(task, set, img, session.images_dir, files, topts, log),
           "restore pid " + std::to_string(img.pid()));
  CR_OK(hooks.fire(HookPoint::post_restore, task.pid()));
  CR_OK(hooks.fire(HookPoint::pre_resume, 0));
  CR_OK(fault_point("restore:before-resume"));
  if (!req.pidfile.empty()) CR_OK(sys::write_file(req.pidfile, std::to_string(task.pid()) + "\n"));
  uint64_t pages = 0;
  for (const auto& pe : img.pagemap)
    if (pe.flags() & 4) pages += pe.nr_pages();
  CR_OK(task.resume());

  RestoreResult result;
  result.root_pid = task.pid();
  if (Status st = hooks.fire(HookPoint::post_resume, result.root_pid); !st)
    LOG_ERROR(log, "post-resume: %s", st.error().render().c_str());
  if (Status st = write_stats(session, forked - start, Clock::now() - start, pages); !st)
    LOG_WARN(log, "Can't write stats: %s", st.error().render().c_str());
  result.total_us = micros(Clock::now() - start);
  LOG_INFO(log, "Restore finished successfully, root pid %d", result.root_pid);
  if (!req.detached) {
    // Like CRIU without -d: stay the parent and wait for the restored tree's root to exit.
    int status = 0;
    while (waitpid(result.root_pid, &status, 0) < 0 && errno == EINTR) {
    }
    result.exit_status = status;
  }
  return result;
}

}  // namespace crshim
