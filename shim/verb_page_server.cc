// `crshim page-server`: receives one dump's pagemaps and pages over TCP into the images dir, as
// CRIU's page server does, so the dump of another host lands here.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>

#include "checkpoint/base/sys.h"
#include "checkpoint/dump/incremental.h"
#include "checkpoint/mem/page_server.h"
#include "shim/daemon.h"
#include "shim/job.h"
#include "shim/requests.h"
#include "shim/verbs.h"

namespace crshim {

int run_page_server(const Options& opts) {
  if (Status st = refuse_unsupported(opts); !st) return report_failure(nullptr, "page-server", st.error());
  if (!opts.ps_socket && !opts.port)
    return report_failure(nullptr, "page-server",
                          make_error(Errc::invalid_argument, "page-server", "--port", "no port given")
                              .with_hint("use --port PORT (0 picks a free one), or --ps-socket FD"));
  // Checked before anything is written, so a wrong number is not reported as a failed recv later.
  if (opts.ps_socket && ::fcntl(*opts.ps_socket, F_GETFD) < 0)
    return report_failure(nullptr, "page-server",
                          sys_error("use", "--ps-socket " + std::to_string(*opts.ps_socket), "not an open descriptor")
                              .with_hint("pass the connected socket of the dumper as an inherited descriptor"));
  auto job = open_job(opts, "page-server.log", true);
  if (!job) return report_failure(nullptr, "page-server", job.error());
  Logger& log = (*job)->log;
  int dir = (*job)->images_dir.get();
  // --prev-images-dir: "parent" links to the previous dump's images here, as a local pre-dump chain,
  // so pages the dump leaves to the parent are found at restore.
  if (opts.prev_images_dir) {
    auto parent = dumper::ParentImages::link(dir, *opts.prev_images_dir);
    if (!parent) return report_failure(job->get(), "page-server", parent.error());
  }
  if (opts.ps_socket) {
    auto background = start_serving(opts, "page server daemon");
    if (!background) return report_failure(job->get(), "page-server", background.error());
    if (*background > 0) return 0;
    Status st = mem::PageServer::serve(*opts.ps_socket, dir, log, "fd " + std::to_string(*opts.ps_socket), false);
    if (!st) return report_failure(job->get(), "page-server", st.error());
    return 0;
  }
  auto server = mem::PageServer::listen(opts.address.value_or(""), *opts.port);
  if (!server) return report_failure(job->get(), "page-server", server.error());
  LOG_INFO(log, "Page server listening on %s port %u", opts.address.value_or("*").c_str(), unsigned(server->port()));
  if (*opts.port == 0) {
    printf("Listening on port %u\n", unsigned(server->port()));
    fflush(stdout);
  }
  auto background = start_serving(opts, "page server daemon");
  if (!background) return report_failure(job->get(), "page-server", background.error());
  if (*background > 0) return 0;
  Status st = server->serve_one(dir, log);
  if (!st) return report_failure(job->get(), "page-server", st.error());
  LOG_INFO(log, "Page server finished");
  return 0;
}

}  // namespace crshim
