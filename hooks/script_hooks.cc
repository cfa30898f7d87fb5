#include "hooks/script_hooks.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <string_view>

#include "checkpoint/base/sys.h"
#include "checkpoint/base/unique_fd.h"

extern char** environ;

namespace crshim {

namespace {

using Clock = std::chrono::steady_clock;

// How much script output is copied into the log per run; the rest is read and dropped.
constexpr size_t kMaxLoggedOutput = 64u << 10;

bool is_crtools_var(std::string_view entry) {
  return entry.starts_with("CRTOOLS_SCRIPT_ACTION=") || entry.starts_with("CRTOOLS_IMAGE_DIR=") ||
         entry.starts_with("CRTOOLS_INIT_PID=") || entry.starts_with("CRTOOLS_PTS_MASTER_FD=");
}

// A copy of `fd` numbered 3 or above, so the child's dup2() onto 0..2 never overwrites a source.
Result<UniqueFd> above_stdio(UniqueFd fd) {
  if (fd.get() > 2) return fd;
  int moved = ::fcntl(fd.get(), F_DUPFD_CLOEXEC, 3);
  if (moved < 0) return fail(sys_error("fcntl(F_DUPFD_CLOEXEC)"));
  return UniqueFd(moved);
}

// Copies script output into the log line by line.
class OutputLogger {
 public:
  OutputLogger(Logger& log, const std::string& script) : log_(log), script_(script) {}

  void feed(const char* data, size_t n) {
    if (logged_ >= kMaxLoggedOutput) return;
    n = std::min(n, kMaxLoggedOutput - logged_);
    logged_ += n;
    line_.append(data, n);
    size_t nl;
    while ((nl = line_.find('\n')) != std::string::npos) {
      emit(line_.substr(0, nl));
      line_.erase(0, nl + 1);
    }
    if (logged_ >= kMaxLoggedOutput) {
      if (!line_.empty()) emit(line_);
      line_.clear();
      LOG_WARN(log_, "Action script %s: output beyond %zu bytes not logged", script_.c_str(), kMaxLoggedOutput);
    }
  }

  void finish() {
    if (!line_.empty()) emit(line_);
    line_.clear();
  }

 private:
  void emit(const std::string& line) { LOG_INFO(log_, "Action script %s: %s", script_.c_str(), line.c_str()); }

  Logger& log_;
  const std::string& script_;
  std::string line_;
  size_t logged_ = 0;
};

// Reads what is available; false once the write side is closed everywhere.
bool drain(int fd, OutputLogger& out) {
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n > 0) {
      out.feed(buf, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    return n < 0 && errno == EAGAIN;
  }
}

std::string describe_status(int status) {
  if (WIFEXITED(status)) return "exit status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "killed by signal " + std::to_string(WTERMSIG(status));
  return "wait status " + std::to_string(status);
}

}  // namespace

ScriptHooks::ScriptHooks(std::vector<std::string> scripts, std::string image_dir, Logger& log,
                         std::chrono::milliseconds timeout)
    : scripts_(std::move(scripts)), image_dir_(std::move(image_dir)), log_(log), timeout_(timeout) {}

void ScriptHooks::set_init_pid(pid_t pid) {
  if (init_pid_ == 0 && pid > 0) init_pid_ = pid;
}

Status ScriptHooks::fire(HookPoint point, pid_t pid) {
  set_init_pid(pid);
  const char* action = hook_name(point);
  for (const auto& script : scripts_) CR_OK(run_one(script, action));
  return {};
}

Status ScriptHooks::fire_fd(HookPoint point, pid_t pid, int fd) {
  set_init_pid(pid);
  const char* action = hook_name(point);
  for (const auto& script : scripts_) CR_OK(run_one(script, action, fd));
  return {};
}

Status ScriptHooks::run_one(const std::string& script, const char* action, int pass_fd) {
  // Everything the child needs is built now: after fork() it only makes async-signal-safe calls.
  std::vector<std::string> env_store;
  for (char** e = environ; e && *e; ++e)
    if (!is_crtools_var(*e)) env_store.emplace_back(*e);
  env_store.push_back(std::string("CRTOOLS_SCRIPT_ACTION=") + action);
  env_store.push_back("CRTOOLS_IMAGE_DIR=" + image_dir_);
  if (init_pid_ > 0) env_store.push_back("CRTOOLS_INIT_PID=" + std::to_string(init_pid_));
  if (pass_fd > 2) env_store.push_back("CRTOOLS_PTS_MASTER_FD=" + std::to_string(pass_fd));
  std::vector<char*> envp;
  envp.reserve(env_store.size() + 1);
  for (auto& s : env_store) envp.push_back(s.data());
  envp.push_back(nullptr);
  char sh_name[] = "sh";
  char sh_c[] = "-c";
  std::string script_arg = script;
  char* argv[] = {sh_name, sh_c, script_arg.data(), nullptr};

  UniqueFd devnull = CR_TRY(above_stdio(CR_TRY(sys::open("/dev/null", O_RDONLY))));
  int p[2];
  if (::pipe2(p, O_CLOEXEC) < 0) return fail(sys_error("pipe2", "action script output"));
  UniqueFd out_r(p[0]);
  UniqueFd out_w = CR_TRY(above_stdio(UniqueFd(p[1])));
  if (::fcntl(out_r.get(), F_SETFL, O_NONBLOCK) < 0) return fail(sys_error("fcntl(O_NONBLOCK)", "action script output"));
  sigset_t no_signals;
  sigemptyset(&no_signals);
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;

  LOG_INFO(log_, "Running action script %s for %s", script.c_str(), action);
  pid_t child = ::fork();
  if (child < 0) return fail(sys_error("fork", "action script " + script));
  if (child == 0) {
    // Own process group, so a timeout can kill whatever the script started too.
    ::setpgid(0, 0);
    if (::dup2(devnull.get(), 0) < 0 || ::dup2(out_w.get(), 1) < 0 || ::dup2(out_w.get(), 2) < 0) ::_exit(127);
    ::sigaction(SIGPIPE, &dfl, nullptr);
    ::sigaction(SIGCHLD, &dfl, nullptr);
    ::sigprocmask(SIG_SETMASK, &no_signals, nullptr);
    if (pass_fd > 2 && ::fcntl(pass_fd, F_SETFD, 0) < 0) ::_exit(127);
    ::execve("/bin/sh", argv, envp.data());
    ::_exit(127);
  }
  out_w.reset();
  devnull.reset();
  // A pidfd wakes us the moment the script exits; without one, poll in short ticks.
  UniqueFd pidfd(sys::pidfd_open(child));

  OutputLogger output(log_, script);
  bool pipe_open = true;
  int status = 0;
  bool exited = false;
  const auto deadline = Clock::now() + timeout_;
  while (!exited) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) break;
    pollfd fds[2] = {{pipe_open ? out_r.get() : -1, POLLIN, 0}, {pidfd.get(), POLLIN, 0}};
    int wait_ms = static_cast<int>(pidfd.valid() ? left : std::min<long long>(left, 20));
    int r = ::poll(fds, 2, wait_ms);
    if (r < 0 && errno != EINTR) return fail(sys_error("poll", "action script " + script));
    if (pipe_open && r > 0 && fds[0].revents) pipe_open = drain(out_r.get(), output);
    pid_t w = ::waitpid(child, &status, WNOHANG);
    if (w == child) exited = true;
    else if (w < 0 && errno != EINTR) return fail(sys_error("waitpid", "action script " + script));
  }
  if (!exited) {
    ::kill(-child, SIGKILL);
    ::kill(child, SIGKILL);
    while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
    }
    if (pipe_open) drain(out_r.get(), output);
    output.finish();
    LOG_ERROR(log_, "Action script %s for %s timed out after %lld ms", script.c_str(), action,
              static_cast<long long>(timeout_.count()));
    return fail(make_error(Errc::timeout, "action script", script,
                           std::string("no exit after ") + std::to_string(timeout_.count()) + " ms at " + action));
  }
  // Whatever the script left in the pipe; a background child still holding it is not waited for.
  if (pipe_open) drain(out_r.get(), output);
  output.finish();
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
    LOG_INFO(log_, "Action script %s for %s: exit status 0", script.c_str(), action);
    return {};
  }
  std::string how = describe_status(status);
  LOG_ERROR(log_, "Action script %s for %s failed: %s", script.c_str(), action, how.c_str());
  return fail(make_error(Errc::aborted, "action script", script, std::string("failed at ") + action + ": " + how));
}

std::string image_dir_env(int images_dir_fd) {
  return "/proc/" + std::to_string(::getpid()) + "/fd/" + std::to_string(images_dir_fd);
}

}  // namespace crshim
