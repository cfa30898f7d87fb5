#include "oci/oci_hooks.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <optional>
#include <string_view>
#include <utility>

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

// A namespace of a container task the hook joins.
struct NsEntry {
  UniqueFd fd;
  int type;
};

// Where a container hook runs: the task's namespaces that differ from crshim's, in the order they
// are joined (user first, for the rights over the rest; mount last), and its root directory.
struct ContainerPlace {
  std::vector<NsEntry> ns;
  UniqueFd root;
};

Result<ContainerPlace> container_place(pid_t pid, const std::string& label) {
  static constexpr std::pair<const char*, int> kOrder[] = {
      {"user", CLONE_NEWUSER}, {"cgroup", CLONE_NEWCGROUP}, {"ipc", CLONE_NEWIPC}, {"uts", CLONE_NEWUTS},
      {"net", CLONE_NEWNET},   {"pid", CLONE_NEWPID},       {"time", CLONE_NEWTIME}, {"mnt", CLONE_NEWNS}};
  const std::string proc = "/proc/" + std::to_string(pid);
  ContainerPlace place;
  for (const auto& [name, type] : kOrder) {
    struct stat mine, theirs;
    std::string path = proc + "/ns/" + name;
    if (::stat(path.c_str(), &theirs) < 0) {
      if (errno == ENOENT && std::string_view(name) == "time") continue;  // a kernel without time namespaces
      return fail(sys_error("stat", path, "OCI hook " + label));
    }
    if (::stat((std::string("/proc/self/ns/") + name).c_str(), &mine) == 0 && mine.st_ino == theirs.st_ino &&
        mine.st_dev == theirs.st_dev)
      continue;
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) return fail(sys_error("open", path, "OCI hook " + label));
    place.ns.push_back({CR_TRY(above_stdio(std::move(fd))), type});
  }
  UniqueFd root(::open((proc + "/root").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!root.valid()) return fail(sys_error("open", proc + "/root", "OCI hook " + label));
  place.root = CR_TRY(above_stdio(std::move(root)));
  return place;
}

// In the forked hook child: joins the container's namespaces and root. Returns false after writing
// why to stderr (the hook's log). Only async-signal-safe calls.
bool enter_container(const ContainerPlace& place, bool& joined_pid) {
  auto say = [](const char* what) {
    char num[16];
    int n = sizeof num, e = errno;
    num[--n] = '\n';
    do num[--n] = char('0' + e % 10); while ((e /= 10) > 0 && n > 0);
    (void)!::write(2, what, ::strlen(what));
    (void)!::write(2, ": errno ", 8);
    (void)!::write(2, num + n, sizeof num - size_t(n));
    return false;
  };
  for (const auto& n : place.ns) {
    if (::setns(n.fd.get(), n.type) < 0) return say("setns into the container's namespaces");
    if (n.type == CLONE_NEWPID) joined_pid = true;
  }
  if (::fchdir(place.root.get()) < 0 || ::chroot(".") < 0 || ::chdir("/") < 0)
    return say("entering the container's root directory");
  return true;
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

Status run_hook(const Hook& hook, const std::string& name, const std::string& stdin_text, Logger& log, pid_t ns_of) {
  const std::string label = name + " " + hook.path;
  std::optional<ContainerPlace> place;
  if (ns_of > 0) place = CR_TRY(container_place(ns_of, label));
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

  if (place) LOG_INFO(log, "Running OCI hook %s in the namespaces of pid %d", label.c_str(), int(ns_of));
  else LOG_INFO(log, "Running OCI hook %s", label.c_str());
  pid_t child = ::fork();
  if (child < 0) return fail(sys_error("fork", "OCI hook " + label));
  if (child == 0) {
    ::setpgid(0, 0);  // so a timeout kills what the hook started too
    if (::dup2(in_r.get(), 0) < 0 || ::dup2(out_w.get(), 1) < 0 || ::dup2(out_w.get(), 2) < 0) ::_exit(127);
    ::sigaction(SIGPIPE, &dfl, nullptr);
    ::sigaction(SIGCHLD, &dfl, nullptr);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    // Our ends of the pipes: close-on-exec is not enough when a process stays behind without exec
    // (the pid namespace case below), and the hook must see EOF on its stdin.
    for (int fd : {in_w.get(), out_r.get()})
      if (fd > 2) ::close(fd);  // one at 0..2 was replaced by dup2() already
    bool joined_pid = false;
    if (place && !enter_container(*place, joined_pid)) ::_exit(126);
    if (joined_pid) {
      // A pid namespace applies to children only: the hook is a child that stays in our group, and
      // this process passes its exit on.
      pid_t hook_pid = ::fork();
      if (hook_pid < 0) ::_exit(126);
      if (hook_pid > 0) {
        int st = 0;
        while (::waitpid(hook_pid, &st, 0) < 0)
          if (errno != EINTR) ::_exit(126);
        if (WIFSIGNALED(st)) {
          ::signal(WTERMSIG(st), SIG_DFL);
          ::kill(::getpid(), WTERMSIG(st));
          ::_exit(128 + WTERMSIG(st));
        }
        ::_exit(WEXITSTATUS(st));
      }
    }
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
  if (WIFEXITED(status) && WEXITSTATUS(status) == 126 && place) how += " (could it enter the container?)";
  return fail(make_error(Errc::aborted, "OCI hook", label, how));
}

Status send_fd(int sock, int fd, const std::string& name) {
  // The message text names what the fd is, as runc's console socket protocol has it.
  return sys::send_with_fd(sock, name, fd, "console socket");
}

OciHooks::OciHooks(const HookLists& hooks, State state, Logger& log, int console_socket)
    : hooks_(hooks), state_(std::move(state)), log_(log), console_socket_(console_socket) {}

Status OciHooks::run_list(const std::vector<Hook>& list, const char* kind, bool in_container) {
  const std::string json = state_json(state_);
  for (size_t i = 0; i < list.size(); i++) {
    std::string name = std::string(kind) + "[" + std::to_string(i) + "]";
    ran_.push_back(name);
    CR_OK(run_hook(list[i], name, json, log_, in_container ? pid_ : 0));
  }
  return {};
}

void OciHooks::run_poststop() {
  if (stopped_) return;
  stopped_ = true;
  state_.status = "stopped";
  state_.pid = pid_;
  const std::string json = state_json(state_);
  for (size_t i = 0; i < hooks_.poststop.size(); i++) {
    std::string name = "poststop[" + std::to_string(i) + "]";
    ran_.push_back(name);
    if (Status st = run_hook(hooks_.poststop[i], name, json, log_); !st)
      LOG_WARN(log_, "poststop hook failed: %s", st.error().render().c_str());
  }
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
    case HookPoint::post_setup_namespaces:
      // The restored init's namespaces and mounts exist: createContainer runs in them, as runc runs it
      // in the container after its mounts are made. A failure aborts the restore.
      state_.status = "created";
      return run_list(hooks_.create_container, "createContainer", true);
    case HookPoint::pre_resume: {
      // Every task is rebuilt and about to continue. A failure must stop the container (OCI spec),
      // but the engine only logs pre-resume failures: kill the stopped init so it never resumes.
      state_.status = "created";
      Status st = run_list(hooks_.start_container, "startContainer", true);
      if (!st) {
        start_failure_ = st.error();
        if (pid_ > 0) ::kill(pid_, SIGKILL);
      }
      return st;
    }
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
