// Hook points as CRIU RPC notifications: a NOTIFY message to the client, then a blocking wait for its answer.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "checkpoint/base/log.h"
#include "checkpoint/hook_points.h"

namespace crshim {

// Used when criu_opts.notify_scripts is set. Sends criu_resp{NOTIFY, success, notify{script, pid?}}
// on the RPC socket and waits for criu_req{NOTIFY, notify_success}; anything but notify_success=true
// (another type, false, a closed socket) fails the point.
class RpcNotifyHooks final : public Hooks {
 public:
  // `sock` is borrowed: it stays the caller's (the same socket answers the request).
  RpcNotifyHooks(int sock, Logger& log) : sock_(sock), log_(log) {}

  Status fire(HookPoint point, pid_t pid) override;
  // The NOTIFY goes out in one sendmsg() with `fd` as SCM_RIGHTS (CRIU's orphan-pts-master).
  Status fire_fd(HookPoint point, pid_t pid, int fd) override;

  // crshim's extension: NOTIFY "req-inherit-fd" carrying the key (criu_notify field 1001); the
  // client's ack must carry the file as SCM_RIGHTS.
  bool can_request_fd() const override { return true; }
  Result<UniqueFd> request_fd(const std::string& key) override;

  // --external keys the client returned in its answer to query-ext-files (opts.external).
  const std::vector<std::string>& extra_external() const { return extra_external_; }

 private:
  Status notify(HookPoint point, pid_t pid, int fd);

  int sock_;
  Logger& log_;
  std::vector<std::string> extra_external_;
};

}  // namespace crshim
