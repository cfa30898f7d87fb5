// `crshim dump`: checkpoint a process tree into an image directory.
#include <cstdio>
#include <string>

#include "checkpoint/engine.h"
#include "hooks/hook_chain.h"
#include "hooks/script_hooks.h"
#include "hooks/status_fd.h"
#include "shim/job.h"
#include "shim/requests.h"
#include "shim/verbs.h"

namespace crshim {

int run_dump(const Options& opts) {
  if (Status st = refuse_unsupported(opts); !st) return report_failure(nullptr, "dump", st.error());
  auto job = open_job(opts, "dump.log", true);
  if (!job) return report_failure(nullptr, "dump", job.error());
  DumpRequest req = dump_request(opts);
  ScriptHooks scripts(opts.action_scripts, image_dir_env((*job)->images_dir.get()), (*job)->log);
  scripts.set_init_pid(req.pid);
  // --status-fd: a lazy dump says when it listens for the destination.
  StatusFdHooks status(UniqueFd(opts.status_fd.value_or(-1)));
  HookChain hooks{&scripts, &status};
  Session session = (*job)->session();
  auto res = dump(req, session, hooks);
  if (!res) return report_failure(job->get(), "dump", res.error());
  if (opts.display_stats)
    printf("Frozen time: %llu us, pages written: %llu%s\n", (unsigned long long)res->frozen_us,
           (unsigned long long)res->pages_written,
           req.lazy_pages ? (", lazy: " + std::to_string(res->pages_lazy)).c_str() : "");
  return 0;
}

}  // namespace crshim
