// CRIU's RPC protocol (swrk and service): criu_req -> Options mapping and the per-connection request loop.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "checkpoint/base/result.h"
#include "rpc.pb.h"
#include "shim/options.h"

namespace crshim::rpc {

// The version VERSION reports: 4.2, no sublevel, no gitid, so runc/go-criu/libcriu compute 40200 and
// enable every path they gate (the highest gate is 31601). `name` carries "crshim <version>".
inline constexpr int kVersionMajor = 4;
inline constexpr int kVersionMinor = 2;

// CRIU keeps cr_errmsg below 1 KiB; runc reads answers into a 40 KiB buffer.
inline constexpr size_t kMaxErrmsg = 1023;
// CRIU's errno for requests whose options do not make sense.
inline constexpr int kBadRequestErrno = 56;  // EBADRQC

// Who is on the other end of the socket (SO_PEERCRED): client fd numbers resolve through its /proc.
struct Peer {
  pid_t pid = 0;
  uid_t uid = 0;
  gid_t gid = 0;
};
Result<Peer> peer_credentials(int sock);

// swrk serves an inherited socketpair end (one client, may pass fds by exec inheritance);
// service serves accepted connections and refuses rst_sibling, inherit_fd and ps.fd as CRIU does.
enum class Mode { swrk, service };

// A DUMP or RESTORE request translated into our terms.
struct JobRequest {
  // verb dump/restore; images_dir/work_dir are /proc/<peer>/fd/<n> paths when given as client fds;
  // log_file defaults to "criu.log" (CRIU's RPC default); criu_opts.config_file already applied.
  Options opts;
  bool notify_scripts = false;
  std::optional<std::string> status_fd_path;  // the client's status_fd, reopened through /proc
  uint32_t empty_ns = 0;                      // CLONE_NEW* mask; only CLONE_NEWNET passes mapping
  bool has_cpu_cap = false;
  bool has_pidfd_store = false;
};

// Faithful mapping of criu_req.opts on top of `base` (the config-file defaults of the serving process),
// with CRIU's validity rules (bare log_file, empty_ns only NEWNET, swrk-only options, inherit fds open).
// Failures are Errc::invalid_argument (answered with errno EBADRQC).
Result<JobRequest> map_request(const criu_req& req, const Options& base, const Peer& peer, Mode mode);

// What the engine can honour today. Refuses (Errc::unsupported, every problem listed) options whose
// effect it would silently drop; returns the accepted-but-ignored ones, one "name: why" each, for the log.
Result<std::vector<std::string>> check_engine_support(const JobRequest& job);

// `msg` cut to kMaxErrmsg bytes without splitting a UTF-8 sequence.
std::string cap_errmsg(std::string msg);

struct ServeConfig {
  Mode mode = Mode::swrk;
  Options base;               // defaults every request starts from (config files of the serving process)
  bool require_root = false;  // refuse peers whose SO_PEERCRED uid is not 0 ...
  std::optional<gid_t> allowed_group;  // ... unless this group is theirs (primary or supplementary)
};

// Serves one connection: answers requests until the final answer (keep_open is honoured after a
// successful VERSION or FEATURE_CHECK) or until the client hangs up between requests.
// Returns the exit code: 0 when the last request succeeded.
int serve(int sock, const ServeConfig& cfg);

}  // namespace crshim::rpc
