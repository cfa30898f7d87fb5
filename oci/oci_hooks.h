// The OCI hooks sink of a bundle restore: prestart and createRuntime hooks at setup-namespaces with the
// restored pid, createContainer and startContainer in the restored init's namespaces, poststart after
// resume, poststop when the container is gone, and the new console master handed to --console-socket.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "checkpoint/base/log.h"
#include "checkpoint/hook_points.h"
#include "oci/config.h"

namespace crshim::oci {

// What the OCI state JSON a hook reads on stdin says.
struct State {
  std::string oci_version;
  std::string id;
  // "creating" for prestart/createRuntime, "created" for createContainer/startContainer, "running" for
  // poststart, "stopped" for poststop
  std::string status;
  pid_t pid = 0;
  std::string bundle;
  std::map<std::string, std::string> annotations;
};

// One line: {"ociVersion","id","status","pid","bundle","annotations"}.
std::string state_json(const State& state);

// Runs `hook` (argv = args, env = env or crshim's when empty) with `stdin_text` on stdin, its output
// copied into the log. `name` ("prestart[0]") labels it. A non-zero exit, a signal or the hook's
// timeout (none when unset) is an error. With `ns_of` > 0 the hook runs in the namespaces of that
// task (user, cgroup, ipc, uts, net, pid, time, mount: each one that differs from crshim's) with its
// root directory, so its path resolves in the container.
Status run_hook(const Hook& hook, const std::string& name, const std::string& stdin_text, Logger& log,
                pid_t ns_of = 0);

// Sends `fd` over the connected unix socket `sock` with SCM_RIGHTS, `name` as the payload (what runc
// and console receivers expect: "orphan-pts-master").
Status send_fd(int sock, int fd, const std::string& name);

class OciHooks final : public crshim::Hooks {
 public:
  // `state` carries everything but status and pid. `console_socket` (-1: none) stays the caller's.
  OciHooks(const HookLists& hooks, State state, Logger& log, int console_socket = -1);

  Status fire(HookPoint point, pid_t pid) override;
  Status fire_fd(HookPoint point, pid_t pid, int fd) override;

  // Runs the poststop hooks ("stopped", the init's pid): after a foreground container's init exited,
  // or after a restore that failed once hooks had run. Failures are warnings; every hook runs.
  void run_poststop();
  // A startContainer failure: the engine only logs pre-resume failures, so the sink kills the
  // restored init (the tree cannot resume) and keeps the error for the caller to report.
  const std::optional<Error>& start_failure() const { return start_failure_; }

  // What ran, in order ("prestart[0]"), for the log and tests.
  const std::vector<std::string>& ran() const { return ran_; }
  bool sent_console() const { return sent_console_; }

 private:
  Status run_list(const std::vector<Hook>& list, const char* kind, bool in_container = false);

  const HookLists& hooks_;
  State state_;
  Logger& log_;
  int console_socket_;
  pid_t pid_ = 0;
  bool sent_console_ = false;
  bool stopped_ = false;
  std::optional<Error> start_failure_;
  std::vector<std::string> ran_;
};

}  // namespace crshim::oci
