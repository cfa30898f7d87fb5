#include "shim/requests.h"

namespace crshim {

DumpRequest dump_request(const Options& opts) {
  DumpRequest req;
  req.pid = opts.tree_pid.value_or(0);
  req.leave_running = opts.leave_running;
  req.shell_job = opts.shell_job;
  req.external = opts.external;
  req.ghost_limit = opts.ghost_limit;
  req.file_locks = opts.file_locks;
  return req;
}

RestoreRequest restore_request(const Options& opts) {
  RestoreRequest req;
  req.detached = opts.restore_detached;
  req.sibling = opts.restore_sibling;
  req.shell_job = opts.shell_job;
  req.pidfile = opts.pidfile.value_or("");
  for (const auto& i : opts.inherit_fds) req.inherit_fds.push_back({i.fd, i.key});
  for (const auto& j : opts.join_ns) req.join_ns.push_back({j.ns, j.target});
  return req;
}

}  // namespace crshim
