// `crshim lazy-pages`: serve the memory of a tree restored with --lazy-pages through userfaultfd.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include "checkpoint/base/sys.h"
#include "checkpoint/image/catalog.h"
#include "checkpoint/image/image.h"
#include "checkpoint/mem/lazy.h"
#include "checkpoint/mem/lazy_remote.h"
#include "checkpoint/mem/lazy_server.h"
#include "inventory.pb.h"
#include "shim/daemon.h"
#include "shim/job.h"
#include "shim/requests.h"
#include "shim/verbs.h"

namespace crshim {

namespace {

// A test and tuning knob: milliseconds between background batches (slows the push down so that the
// restored tree visibly runs before its memory is complete).
std::chrono::milliseconds push_pause_from_env() {
  const char* v = ::getenv("CRSHIM_LAZY_PUSH_PAUSE_MS");
  uint64_t ms = 0;
  if (v && sys::parse_u64(v, ms) && ms <= 60000) return std::chrono::milliseconds(ms);
  return std::chrono::milliseconds(0);
}

}  // namespace

int run_lazy_pages(const Options& opts) {
  if (Status st = refuse_unsupported(opts); !st) return report_failure(nullptr, "lazy-pages", st.error());
  auto job = open_job(opts, "lazy-pages.log", false);
  if (!job) return report_failure(nullptr, "lazy-pages", job.error());
  Job& j = **job;
  // Bad images fail now, not when the restore hands over its first task.
  {
    auto inv = image::Reader::open(j.images_dir.get(), image::kInventoryFile, image::kind(image::Type::inventory));
    if (!inv) return report_failure(&j, "lazy-pages", inv.error().with_hint("-D must name the images the tree is restored from"));
    inventory_entry ie;
    if (Status st = inv->read_one(ie); !st) return report_failure(&j, "lazy-pages", st.error());
  }
  ::signal(SIGPIPE, SIG_IGN);
  // --page-server: lazy-only pages come from the lazy dump on the source, reached before anything
  // else so that a wrong address fails at once.
  std::unique_ptr<mem::RemotePages> remote;
  if (opts.page_server) {
    if (!opts.address || !opts.port)
      return report_failure(&j, "lazy-pages", make_error(Errc::invalid_argument, "connect", "lazy dump", "no address or port")
                                                  .with_hint("give --address and --port of `crshim dump --lazy-pages` on the source"));
    auto connected = mem::RemotePages::connect(*opts.address, *opts.port);
    if (!connected) return report_failure(&j, "lazy-pages", connected.error());
    remote = std::move(*connected);
    LOG_INFO(j.log, "Connected to the lazy dump at %s port %u", opts.address->c_str(), unsigned(*opts.port));
  }
  auto listener = mem::lazy_listen(j.work_dir.get());
  if (!listener) return report_failure(&j, "lazy-pages", listener.error());
  LOG_INFO(j.log, "Listening on %s", mem::kLazySocketName);
  // Ready: the restore may start.
  auto background = start_serving(opts, "lazy-pages daemon");
  if (!background) return report_failure(&j, "lazy-pages", background.error());
  if (*background > 0) return 0;
  mem::LazyServerOptions so;
  so.images_dir = j.images_dir.get();
  so.work_dir = j.work_dir.get();
  so.connect_timeout = std::chrono::seconds(opts.timeout);
  so.push_pause = push_pause_from_env();
  so.remote = remote.get();
  auto stats = mem::serve_lazy_pages(std::move(*listener), so, j.log);
  (void)::unlinkat(j.work_dir.get(), mem::kLazySocketName, 0);
  if (!stats) return report_failure(&j, "lazy-pages", stats.error());
  // Every page is in place: the source's tree may go.
  if (remote)
    if (Status st = remote->close(); !st) return report_failure(&j, "lazy-pages", st.error());
  LOG_MSG(j.log,
          "lazy-pages: %llu tasks, %llu forked; %llu lazy pages: %llu faults served (%llu pages), %llu pages pushed, "
          "%llu zero pages, %llu dropped, %llu fetched from the source (%llu more reused)",
          (unsigned long long)stats->tasks, (unsigned long long)stats->forks, (unsigned long long)stats->total_pages,
          (unsigned long long)stats->faults, (unsigned long long)stats->fault_pages,
          (unsigned long long)stats->pushed_pages, (unsigned long long)stats->zero_pages,
          (unsigned long long)stats->dropped_pages, (unsigned long long)stats->remote_pages,
          (unsigned long long)stats->reused_pages);
  return 0;
}

}  // namespace crshim
