// `crshim restore`: recreate a process tree from an image directory.
#include <sys/wait.h>

#include "checkpoint/engine.h"
#include "hooks/script_hooks.h"
#include "shim/job.h"
#include "shim/requests.h"
#include "shim/verbs.h"

namespace crshim {

int run_restore(const Options& opts) {
  if (Status st = refuse_unsupported(opts); !st) return report_failure(nullptr, "restore", st.error());
  auto job = open_job(opts, "restore.log", false);
  if (!job) return report_failure(nullptr, "restore", job.error());
  RestoreRequest req = restore_request(opts);
  ScriptHooks hooks(opts.action_scripts, image_dir_env((*job)->images_dir.get()), (*job)->log);
  Session session = (*job)->session();
  auto res = restore(req, session, hooks);
  if (!res) return report_failure(job->get(), "restore", res.error());
  if (req.detached) return 0;
  // Without -d crshim stays the parent and exits like the restored root did.
  int st = res->exit_status;
  if (WIFEXITED(st)) return WEXITSTATUS(st);
  if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
  return 0;
}

}  // namespace crshim
