// dump --lazy-pages (post-copy): the dump listens before the tree is frozen and, once its images are
// written, serves the pages it left in the frozen tree to the destination's `crshim lazy-pages
// --page-server` (mem::LazyPagesSource) until that has them all.
#pragma once

#include <optional>

#include "checkpoint/base/log.h"
#include "checkpoint/base/result.h"
#include "checkpoint/engine.h"
#include "checkpoint/hook_points.h"
#include "checkpoint/mem/lazy_remote.h"
#include "checkpoint/mem/page_server.h"

namespace crshim::dumper {

// Listens on req.ps_address:req.ps_port for a lazy dump (nothing for another dump); a port in use
// fails before anything is frozen.
Result<std::optional<mem::PageServer>> listen_for_lazy_pages(const DumpRequest& req);

// Fires status-ready, waits for the daemon and serves it. Gives up, with the reason in the error,
// on SIGINT, SIGTERM or SIGHUP and when `hangup_fd` (the RPC client's socket, or -1) hangs up; the
// caller then resumes the tree.
Status serve_lazy_pages(mem::PageServer& server, mem::LazyPagesSource& source, int hangup_fd, Logger& log, Hooks& hooks);

}  // namespace crshim::dumper
