#include "oci/oci_hooks.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

#include "checkpoint/base/sys.h"
#include "checkpoint/base/unique_fd.h"

extern char** environ;

namespace crshim::oci {

namespace {

using Clock = std::chrono::steady_clock;
constexpr size_t kMaxLoggedOutput = 64u << 10;

// A pipe end numbered above stdio, so the child's dup2() onto 0..2 never overwrites a source.
Result<UniqueFd> above_stdio(UniqueFd fd) {
  if (fd.get() > 2) return fd;
  int moved = ::fcntl(fd.get(), F_DUPFD_CLOEXEC, 3);
  if (moved < 0) return fail(sys_error("fcntl(F_DUPFD_CLOEXEC)"));
  return UniqueFd(moved);
}

std::string describe_status(int status) {
  if (WIFEXITED(status)) return "exit status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "killed by signal " + std::to_string(WTERMSIG(status));
  return "wait status " + std::to_string(status);
}

}  // namespace

std::string state_json(const State& s) {
  nlohmann::json j = {{"ociVersion", s.oci_version}, {"id", s.id},         {"status", s.status},
                      {"pid", s.pid},                {"bundle", s.bundle}, {"annotations", nlohmann::json::object()}};
  for (const auto& [k, v] : s.annotations) j["annotations"][k] = v;
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

Status run_hook(const Hook& hook, const std::string& name, const std::string& stdin_text, Logger& log) {
  const std::string label = name + " " + hook.path;
  // Everything the child needs is built before fork(): afterwards it only makes async-signal-safe calls.
  std::vector<std::string> args = hook.args.empty() ? std::vector<std::string>{hook.path} : hook.args;
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env = hook.env;
  std::vector<char*> envp;
  if (env.empty())
    for (char** e = environ; e && *e; ++e) envp.push_back(*e);
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::string path = hook.path;

  int in[2], out[2];
  if (::pipe2(in, O_CLOEXEC) < 0) return fail(sys_error("pipe2", "OCI hook " + label));
  UniqueFd in_r(in[0]), in_w(in[1]);
  if (::pipe2(out, O_CLOEXEC) < 0) return fail(sys_error("pipe2", "OCI hook " + label));
  UniqueFd out_r(out[0]), out_w(out[1]);
  in_r = CR_TRY(above_stdio(std::move(in_r)));
  out_w = CR_TRY(above_stdio(std::move(out_w)));
  sigset_t none;
  sigemptyset(&none);
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;

  LOG_INFO(log, "Running OCI hook %s", label.c_str());
  pid_t child = ::fork();
  if (child < 0) return fail(sys_error("fork", "OCI hook " + label));
  if (child == 0) {
    ::setpgid(0, 0);  // so a timeout kills what the hook started too
    if (::dup2(in_r.get(), 0) < 0 || ::dup2(out_w.get(), 1) < 0 || ::dup2(out_w.get(), 2) < 0) ::_exit(127);
    ::sigaction(SIGPIPE, &dfl, nullptr);
    ::sigaction(SIGCHLD, &dfl, nullptr);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::execve(path.c_str(), argv.data(), envp.data());
    ::_exit(127);
  }
  in_r.reset();
  out_w.reset();
  // The state is one short line: it fits the pipe, and a hook that never reads it is no error.
  std::string text = stdin_text + "\n";
  struct sigaction old_pipe {}, ign {};
  ign.sa_handler = SIG_IGN;
  ::sigaction(SIGPIPE, &ign, &old_pipe);
  (void)sys::write_all(in_w.get(), text, "OCI hook stdin");
  ::sigaction(SIGPIPE, &old_pipe, nullptr);
  in_w.reset();
  if (::fcntl(out_r.get(), F_SETFL, O_NONBLOCK) < 0) return fail(sys_error("fcntl(O_NONBLOCK)", "OCI hook " + label));

  std::string output;
  size_t logged = 0;
  auto drain = [&]() {
    char buf[4096];
    for (;;) {
      ssize_t n = ::read(out_r.get(), buf, sizeof buf);
      if (n > 0) {
        size_t keep = std::min(size_t(n), kMaxLoggedOutput - std::min(logged, kMaxLoggedOutput));
        output.append(buf, keep);
        logged += size_t(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      return n < 0 && errno == EAGAIN;
    }
  };
  UniqueFd pidfd(sys::pidfd_open(child));
  const bool limited = hook.timeout.has_value();
  const auto deadline = Clock::now() + std::chrono::seconds(hook.timeout.value_or(0));
  bool pipe_open = true, exited = false;
  int status = 0;
  while (!exited) {
    long long left = limited ? std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count() : 1000;
    if (left <= 0) break;
    pollfd fds[2] = {{pipe_open ? out_r.get() : -1, POLLIN, 0}, {pidfd.get(), POLLIN, 0}};
    int wait_ms = static_cast<int>(pidfd.valid() ? std::min<long long>(left, 1000) : std::min<long long>(left, 20));
    int r = ::poll(fds, 2, wait_ms);
    if (r < 0 && errno != EINTR) return fail(sys_error("poll", "OCI hook " + label));
    if (pipe_open && r > 0 && fds[0].revents) pipe_open = drain();
    pid_t w = ::waitpid(child, &status, WNOHANG);
    if (w == child) exited = true;
    else if (w < 0 && errno != EINTR) return fail(sys_error("waitpid", "OCI hook " + label));
  }
  if (!exited) {
    ::kill(-child, SIGKILL);
    ::kill(child, SIGKILL);
    while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
    }
  }
  if (pipe_open) drain();
  for (auto line : sys::split(output, '\n')) LOG_INFO(log, "OCI hook %s: %.*s", label.c_str(), int(line.size()), line.data());
  if (!exited) {
    LOG_ERROR(log, "OCI hook %s timed out after %d s", label.c_str(), *hook.timeout);
    return fail(make_error(Errc::timeout, "OCI hook", label, "no exit within its timeout of " + std::to_string(*hook.timeout) + " s"));
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
    LOG_INFO(log, "OCI hook %s: exit status 0", label.c_str());
    return {};
  }
  std::string how = describe_status(status);
  if (WIFEXITED(status) && WEXITSTATUS(status) == 127) how += " (could it be executed?)";
  return fail(make_error(Errc::aborted, "OCI hook", label, how));
}

Status send_fd(int sock, int fd, const std::string& name) {
  // The message text names what the fd is, as runc's console socket protocol has it.
  return sys::send_with_fd(sock, name, fd, "console socket");
}

OciHooks::OciHooks(const HookLists& hooks, State state, Logger& log, int console_socket)
    : hooks_(hooks), state_(std::move(state)), log_(log), console_socket_(console_socket) {}

Status OciHooks::run_list(const std::vector<Hook>& list, const char* kind) {
  const std::string json = state_json(state_);
  for (size_t i = 0; i < list.size(); i++) {
    std::string name = std::string(kind) + "[" + std::to_string(i) + "]";
    ran_.push_back(name);
    CR_OK(run_hook(list[i], name, json, log_));
  }
  return {};
}

Status OciHooks::fire(HookPoint point, pid_t pid) {
  if (pid > 0) pid_ = pid;
  state_.pid = pid_;
  switch (point) {
    case HookPoint::setup_namespaces:
      // runc's order on restore: prestart, then createRuntime; a failure aborts the restore.
      state_.status = "creating";
      CR_OK(run_list(hooks_.prestart, "prestart"));
      return run_list(hooks_.create_runtime, "createRuntime");
    case HookPoint::post_resume: {
      // The container runs already: a failing poststart hook is reported, not fatal (OCI spec).
      state_.status = "running";
      if (Status st = run_list(hooks_.poststart, "poststart"); !st)
        LOG_WARN(log_, "poststart hook failed: %s", st.error().render().c_str());
      return {};
    }
    default: return {};
  }
}

Status OciHooks::fire_fd(HookPoint point, pid_t pid, int fd) {
  if (point != HookPoint::orphan_pts_master) return fire(point, pid);
  if (console_socket_ < 0)
    return fail(make_error(Errc::invalid_argument, "OCI bundle", "process.terminal",
                           "the restored container has a terminal but no console socket was given")
                    .with_hint("pass --console-socket SOCK"));
  CR_OK(send_fd(console_socket_, fd, "orphan-pts-master"));
  sent_console_ = true;
  LOG_INFO(log_, "Sent the new console master to the console socket");
  return {};
}

}  // namespace crshim::oci
