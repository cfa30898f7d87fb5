#include "checkpoint/kernel/tracee.h"

#include <dirent.h>
#include <sched.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <set>
#include <string>

#include "checkpoint/base/sys.h"

namespace crshim::kernel {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

std::string tid_object(pid_t tid) { return "tid " + std::to_string(tid); }

bool is_stop_signal(int sig) { return sig == SIGSTOP || sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU; }

// Value of "Key:" in /proc/<tid>/status, trimmed.
Result<std::string> status_field(const std::string& path, std::string_view key) {
  std::string text = CR_TRY(sys::read_file(path));
  for (auto line : sys::split(text, '\n')) {
    if (line.size() > key.size() && line.substr(0, key.size()) == key && line[key.size()] == ':')
      return std::string(sys::trim(line.substr(key.size() + 1)));
  }
  return fail(make_error(Errc::not_found, "parse", path, "no " + std::string(key) + " field"));
}

Result<std::vector<pid_t>> list_tasks(pid_t pid) {
  const std::string path = "/proc/" + std::to_string(pid) + "/task";
  DIR* dir = opendir(path.c_str());
  if (!dir) return fail(sys_error("opendir", path));
  std::vector<pid_t> tids;
  errno = 0;
  while (dirent* de = readdir(dir)) {
    uint64_t v = 0;
    if (sys::parse_u64(de->d_name, v)) tids.push_back(static_cast<pid_t>(v));
  }
  int err = errno;
  closedir(dir);
  if (err != 0) return fail(errno_error(err, "readdir", path));
  return tids;
}

// State letter from /proc/<tid>/stat ('R', 'S', 'Z', ...), '?' when unreadable.
char thread_state(pid_t tid) {
  auto text = sys::read_file("/proc/" + std::to_string(tid) + "/stat");
  if (!text) return '?';
  auto p = text->rfind(')');
  return p == std::string::npos || p + 2 >= text->size() ? '?' : (*text)[p + 2];
}

}  // namespace

bool tracer_can_suspend_seccomp() {
  auto seccomp = status_field("/proc/self/status", "Seccomp");
  auto caps = status_field("/proc/self/status", "CapEff");
  if (!seccomp || !caps) return false;
  uint64_t mode = 1, eff = 0;
  if (!sys::parse_u64(*seccomp, mode) || !sys::parse_u64(*caps, eff, 16)) return false;
  constexpr int kCapSysAdmin = 21;
  return mode == 0 && (eff >> kCapSysAdmin & 1) != 0;
}

Result<uint64_t> get_sigmask(pid_t tid) {
  uint64_t mask = 0;
  if (ptrace(PTRACE_GETSIGMASK, tid, reinterpret_cast<void*>(sizeof(mask)), &mask) != 0)
    return fail(sys_error("ptrace(PTRACE_GETSIGMASK)", tid_object(tid)));
  return mask;
}

Status set_sigmask(pid_t tid, uint64_t mask) {
  if (ptrace(PTRACE_SETSIGMASK, tid, reinterpret_cast<void*>(sizeof(mask)), &mask) != 0)
    return fail(sys_error("ptrace(PTRACE_SETSIGMASK)", tid_object(tid)));
  return {};
}

Result<int> wait_tid(pid_t tid, milliseconds timeout) {
  int st = 0;
  if (timeout.count() < 0) {
    for (;;) {
      pid_t r = waitpid(tid, &st, __WALL);
      if (r == tid) return st;
      if (r < 0 && errno != EINTR) return fail(sys_error("waitpid", tid_object(tid)));
    }
  }
  // No waitpid with a timeout exists; poll, yielding first (a ptrace stop usually lands within
  // microseconds), then sleeping with a growing interval.
  const auto deadline = Clock::now() + timeout;
  long sleep_ns = 20'000;
  for (int spins = 0;; ++spins) {
    pid_t r = waitpid(tid, &st, __WALL | WNOHANG);
    if (r == tid) return st;
    if (r < 0 && errno != EINTR) return fail(sys_error("waitpid", tid_object(tid)));
    if (Clock::now() >= deadline)
      return fail(make_error(Errc::timeout, "waitpid", tid_object(tid),
                             "no ptrace stop within " + std::to_string(timeout.count()) + " ms")
                      .with_hint("the thread may be in uninterruptible sleep (D state); see /proc/" +
                                 std::to_string(tid) + "/stack"));
    if (spins < 50) {
      sched_yield();
    } else {
      timespec ts{0, sleep_ns};
      nanosleep(&ts, nullptr);
      sleep_ns = std::min(sleep_ns * 2, 1'000'000L);
    }
  }
}

// ---- Tracee ----

Result<Tracee> Tracee::seize(pid_t tid, unsigned options) {
  options |= PTRACE_O_TRACESYSGOOD;
  if (ptrace(PTRACE_SEIZE, tid, nullptr, reinterpret_cast<void*>(static_cast<uintptr_t>(options))) != 0) {
    Error e = sys_error("ptrace(PTRACE_SEIZE)", tid_object(tid));
    // A tracer already there is the likeliest cause, whatever the options: say so first.
    const std::string status = "/proc/" + std::to_string(tid) + "/status";
    auto tracer = e.err == EPERM ? status_field(status, "TracerPid") : Result<std::string>(std::string("0"));
    if (tracer && *tracer != "0")
      e.with_hint("the thread is traced by pid " + *tracer + " (TracerPid in " + status + "): detach that tracer first");
    else if (e.err == EPERM && (options & PTRACE_O_SUSPEND_SECCOMP))
      e.with_hint("PTRACE_O_SUSPEND_SECCOMP needs CAP_SYS_ADMIN and a tracer that is not under seccomp");
    else if (e.err == EPERM)
      e.with_hint("the thread may already be traced (TracerPid in " + status + ")");
    return fail(std::move(e));
  }
  Tracee t(tid, options);
  t.kind_ = StopKind::running;
  return t;
}

Result<Tracee> Tracee::adopt(pid_t tid, unsigned options, bool wait_for_stop, StopKind kind) {
  Tracee t(tid, options | PTRACE_O_TRACESYSGOOD);
  t.kind_ = kind;
  if (wait_for_stop) {
    int st = CR_TRY(wait_tid(tid, std::chrono::seconds(5)));
    if (!WIFSTOPPED(st))
      return fail(make_error(Errc::not_found, "adopt", tid_object(tid), "exited before its first stop"));
    const unsigned event = static_cast<unsigned>(st) >> 16;
    if (event == PTRACE_EVENT_STOP) {
      t.kind_ = is_stop_signal(WSTOPSIG(st)) ? StopKind::group : StopKind::event;
      t.group_sig_ = t.kind_ == StopKind::group ? WSTOPSIG(st) : 0;
    } else {
      t.kind_ = StopKind::signal;
    }
  }
  t.seized_ = t.kind_ == StopKind::event || t.kind_ == StopKind::group;
  if (ptrace(PTRACE_SETOPTIONS, tid, nullptr, reinterpret_cast<void*>(static_cast<uintptr_t>(t.options_))) != 0) {
    Error e = sys_error("ptrace(PTRACE_SETOPTIONS)", tid_object(tid));
    t.release();  // not ours to detach if we could not even set options
    return fail(std::move(e));
  }
  CR_OK(t.capture_state());
  return t;
}

Tracee::Tracee(Tracee&& o) noexcept
    : tid_(std::exchange(o.tid_, -1)),
      options_(o.options_),
      kind_(std::exchange(o.kind_, StopKind::gone)),
      group_sig_(o.group_sig_),
      dirty_(std::exchange(o.dirty_, false)),
      captured_(o.captured_),
      seized_(o.seized_),
      unresponsive_(o.unresponsive_),
      saved_regs_(o.saved_regs_),
      saved_mask_(o.saved_mask_),
      delivered_(std::move(o.delivered_)),
      deferred_(std::move(o.deferred_)) {}

Tracee& Tracee::operator=(Tracee&& o) noexcept {
  if (this != &o) {
    this->~Tracee();
    new (this) Tracee(std::move(o));
  }
  return *this;
}

Tracee::~Tracee() {
  if (tid_ < 0 || kind_ == StopKind::gone) return;
  if (dirty_) (void)restore_saved_state();
  (void)detach(0);
}

Status Tracee::capture_state() {
  saved_regs_ = CR_TRY(get_regs(tid_));
  saved_mask_ = CR_TRY(get_sigmask(tid_));
  dirty_ = false;
  captured_ = true;
  return {};
}

Status Tracee::request_interrupt() {
  if (kind_ == StopKind::gone) return fail(make_error(Errc::internal, "interrupt", tid_object(tid_), "not attached"));
  if (stopped()) return {};
  if (ptrace(PTRACE_INTERRUPT, tid_, nullptr, nullptr) != 0)
    return fail(sys_error("ptrace(PTRACE_INTERRUPT)", tid_object(tid_)));
  return {};
}

Status Tracee::wait_interrupted(milliseconds timeout) {
  if (kind_ == StopKind::gone) return fail(make_error(Errc::internal, "interrupt", tid_object(tid_), "not attached"));
  if (!stopped()) {
    Status st = wait_event_stop(timeout, OnSignal::deliver);
    if (!st && st.error().code == Errc::timeout) {
      unresponsive_ = true;
      std::string t = timeout.count() % 1000 ? std::to_string(timeout.count()) + " ms" : std::to_string(timeout.count() / 1000) + " s";
      return fail(make_error(Errc::timeout, "freeze", tid_object(tid_),
                             "did not stop within " + t + "; it is in an uninterruptible wait (a vfork parent, stuck I/O)")
                      .with_hint("see /proc/" + std::to_string(tid_) + "/stack; raise --timeout if it is only slow"));
    }
    CR_OK(st);
  }
  return capture_state();
}

Status Tracee::interrupt(milliseconds timeout) {
  if (stopped()) return {};
  CR_OK(request_interrupt());
  return wait_interrupted(timeout);
}

Status Tracee::wait_event_stop(milliseconds timeout, OnSignal on_signal) {
  const auto deadline = Clock::now() + timeout;
  // A thread flooded with signals could keep us here; bound the loop.
  for (int n = 0; n < 10000; ++n) {
    auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
    int st = CR_TRY(wait_tid(tid_, std::max(left, milliseconds(0))));
    if (WIFEXITED(st) || WIFSIGNALED(st)) {
      kind_ = StopKind::gone;
      return fail(make_error(Errc::not_found, "stop", tid_object(tid_), "the thread exited"));
    }
    if (!WIFSTOPPED(st)) continue;
    const int sig = WSTOPSIG(st);
    const unsigned event = static_cast<unsigned>(st) >> 16;
    if (event == PTRACE_EVENT_STOP) {
      kind_ = is_stop_signal(sig) ? StopKind::group : StopKind::event;
      group_sig_ = kind_ == StopKind::group ? sig : 0;
      return {};
    }
    if (event == PTRACE_EVENT_EXIT) {
      kind_ = StopKind::event;  // stopped, so it can still be detached and left to die
      return fail(make_error(Errc::not_found, "stop", tid_object(tid_), "the thread is exiting"));
    }
    int resume_sig = 0;
    if (event == 0 && sig != (SIGTRAP | 0x80)) {
      // A signal-delivery-stop: the signal is already dequeued, so it must not be dropped.
      if (on_signal == OnSignal::deliver) {
        delivered_.push_back(sig);
        resume_sig = sig;
      } else {
        siginfo_t si{};
        if (ptrace(PTRACE_GETSIGINFO, tid_, nullptr, &si) != 0) {
          si = siginfo_t{};
          si.si_signo = sig;
          si.si_code = SI_USER;
        }
        deferred_.push_back(si);
      }
    }
    // Other ptrace events and stray syscall-stops: keep going until the interrupt stop.
    if (ptrace(PTRACE_CONT, tid_, nullptr, reinterpret_cast<void*>(static_cast<uintptr_t>(resume_sig))) != 0) {
      if (errno == ESRCH) continue;  // killed meanwhile: the next wait reports the exit
      return fail(sys_error("ptrace(PTRACE_CONT)", tid_object(tid_)));
    }
    kind_ = StopKind::running;
  }
  return fail(make_error(Errc::timeout, "stop", tid_object(tid_), "too many signal stops while interrupting"));
}

Status Tracee::leave_syscall_stop() {
  if (kind_ != StopKind::syscall) return {};
  // At a syscall-enter-stop orig_rax = -1 makes the kernel skip the pending syscall.
  Regs r = CR_TRY(get_regs(tid_));
  r.orig_rax = static_cast<unsigned long long>(-1L);
  CR_OK(set_regs(tid_, r));
  return enter_interrupt_stop();
}

Status Tracee::leave_step_stop() {
  if (kind_ != StopKind::signal) return {};
  return enter_interrupt_stop();
}

Status Tracee::enter_interrupt_stop() {
  // The resumed thread runs straight into the interrupt trap inside the signal path (no user code
  // runs: the trap is taken on the way back to user mode). PTRACE_CONT also clears a single-step flag.
  if (ptrace(PTRACE_INTERRUPT, tid_, nullptr, nullptr) != 0)
    return fail(sys_error("ptrace(PTRACE_INTERRUPT)", tid_object(tid_)));
  if (ptrace(PTRACE_CONT, tid_, nullptr, nullptr) != 0)
    return fail(sys_error("ptrace(PTRACE_CONT)", tid_object(tid_)));
  kind_ = StopKind::running;
  return wait_event_stop(std::chrono::seconds(5), OnSignal::defer);
}

Status Tracee::restore_saved_state() {
  if (kind_ == StopKind::gone) return {};
  if (!stopped())
    return fail(make_error(Errc::internal, "restore registers", tid_object(tid_), "the thread is not stopped"));
  CR_OK(leave_syscall_stop());
  if (!captured_) return {};  // nothing was read, so nothing of ours was changed either
  CR_OK(set_regs(tid_, saved_regs_));
  CR_OK(set_sigmask(tid_, saved_mask_));
  dirty_ = false;
  return {};
}

Status Tracee::requeue_deferred() {
  if (deferred_.empty()) return {};
  pid_t tgid = tid_;
  if (auto v = status_field("/proc/" + std::to_string(tid_) + "/status", "Tgid")) {
    uint64_t n = 0;
    if (sys::parse_u64(*v, n)) tgid = static_cast<pid_t>(n);
  }
  Status result;
  for (siginfo_t& si : deferred_) {
    // The kernel only lets us forge siginfo for queued (negative, non-tkill) codes; the rest are
    // re-sent with tgkill, which keeps the signal but not its sender fields.
    long r = (si.si_code < 0 && si.si_code != SI_TKILL)
                 ? syscall(SYS_rt_tgsigqueueinfo, tgid, tid_, si.si_signo, &si)
                 : syscall(SYS_tgkill, tgid, tid_, si.si_signo);
    if (r != 0 && errno != ESRCH && result)
      result = fail(sys_error("re-send deferred signal " + std::to_string(si.si_signo), tid_object(tid_)));
  }
  deferred_.clear();
  return result;
}

Status Tracee::resume(int sig) {
  if (!stopped()) return fail(make_error(Errc::internal, "resume", tid_object(tid_), "the thread is not stopped"));
  CR_OK(leave_syscall_stop());
  CR_OK(requeue_deferred());
  if (ptrace(PTRACE_CONT, tid_, nullptr, reinterpret_cast<void*>(static_cast<uintptr_t>(sig))) != 0)
    return fail(sys_error("ptrace(PTRACE_CONT)", tid_object(tid_)));
  kind_ = StopKind::running;
  return {};
}

Status Tracee::detach(int sig) {
  if (kind_ == StopKind::gone) return {};
  if (kind_ == StopKind::running) {
    // A thread that did not stop in time will not stop now (D state): the kernel detaches it when
    // this process exits, which a dump that failed on it is about to do (the service forks a worker
    // per request).
    if (unresponsive_) return {};
    // PTRACE_DETACH needs a stopped tracee.
    CR_OK(request_interrupt());
    if (auto r = wait_event_stop(std::chrono::seconds(2), OnSignal::deliver); !r) {
      if (kind_ == StopKind::gone) return {};
      return r;
    }
  }
  CR_OK(leave_syscall_stop());
  Status requeued = requeue_deferred();
  if (ptrace(PTRACE_DETACH, tid_, nullptr, reinterpret_cast<void*>(static_cast<uintptr_t>(sig))) != 0 &&
      errno != ESRCH) {
    return fail(sys_error("ptrace(PTRACE_DETACH)", tid_object(tid_)));
  }
  kind_ = StopKind::gone;
  return requeued;
}

Status Tracee::set_options(unsigned options) {
  options |= PTRACE_O_TRACESYSGOOD;
  if (ptrace(PTRACE_SETOPTIONS, tid_, nullptr, reinterpret_cast<void*>(static_cast<uintptr_t>(options))) != 0)
    return fail(sys_error("ptrace(PTRACE_SETOPTIONS)", tid_object(tid_)));
  options_ = options;
  return {};
}

// ---- FrozenProcess ----

Result<FrozenProcess> FrozenProcess::freeze(pid_t pid, const FreezeOptions& opts) {
  auto fp = CR_TRY(start_freeze(pid, opts));
  CR_OK(fp.finish_freeze(opts));
  return fp;
}

Result<FrozenProcess> FrozenProcess::start_freeze(pid_t pid, const FreezeOptions& opts) {
  FrozenProcess fp;
  fp.pid_ = pid;
  fp.frozen_ = true;  // from here on, the destructor thaws whatever got stopped
  fp.started_ = Clock::now();
  CR_TRY(fp.seize_listed(opts));
  return fp;
}

Result<bool> FrozenProcess::seize_listed(const FreezeOptions& opts) {
  const pid_t pid = pid_;
  const std::string what = "freeze pid " + std::to_string(pid);
  const unsigned options = (opts.ptrace_options | PTRACE_O_TRACESYSGOOD) &
                           ~unsigned(PTRACE_O_TRACECLONE | PTRACE_O_TRACEFORK | PTRACE_O_TRACEVFORK |
                                     PTRACE_O_TRACEVFORKDONE);
  ++rounds_;
  auto tids = list_tasks(pid);
  if (!tids) {
    Error e = tids.error();
    if (e.err == ENOENT) e.code = Errc::not_found;
    return fail(e.within(what));
  }
  const size_t first_new = threads_.size();
  for (pid_t tid : *tids) {
    if (!known_.insert(tid).second) continue;
    auto t = Tracee::seize(tid, options);
    if (!t) {
      if (t.error().err == ESRCH && tid != pid) continue;  // exited since the listing
      if (t.error().err == EPERM && tid != pid) {
        // A thread that is exiting cannot be attached; it is no part of what we dump.
        char state = thread_state(tid);
        if (state == 'Z' || state == 'X' || state == '?') continue;
      }
      if (t.error().err == EPERM && thread_state(tid) == 'Z') {
        // A leader that left through pthread_exit() while other threads run cannot be attached.
        return fail(make_error(Errc::unsupported, "freeze", "pid " + std::to_string(pid),
                               "thread " + std::to_string(tid) + " is a zombie (exited leader)")
                        .within(what));
      }
      return fail(t.error().within(what));
    }
    if (auto r = t->request_interrupt(); !r) {
      if (r.error().err == ESRCH && tid != pid) continue;
      return fail(r.error().within(what));
    }
    threads_.push_back(std::move(*t));
  }
  return threads_.size() != first_new;
}

Status FrozenProcess::finish_freeze(const FreezeOptions& opts) {
  const std::string what = "freeze pid " + std::to_string(pid_);
  for (;;) {
    for (size_t i = waited_; i < threads_.size(); ++i) {
      Tracee& t = threads_[i];
      if (auto r = t.wait_interrupted(opts.timeout); !r) {
        if (t.gone() && t.tid() != pid_) continue;  // a thread that exited on its own
        return fail(r.error().within(what));
      }
    }
    std::erase_if(threads_, [](const Tracee& t) { return t.gone(); });
    waited_ = threads_.size();
    if (rounds_ >= opts.max_rounds)
      return fail(make_error(Errc::timeout, "freeze", "pid " + std::to_string(pid_),
                             "the thread set did not settle after " + std::to_string(opts.max_rounds) + " rounds"));
    if (!CR_TRY(seize_listed(opts))) {
      // Everything listed is stopped, and stopped threads cannot create new ones: stable.
      freeze_time_ = Clock::now() - started_;
      if (!find(pid_))
        return fail(make_error(Errc::not_found, "freeze", "pid " + std::to_string(pid_), "the leader is gone"));
      return {};
    }
  }
}

FrozenProcess::FrozenProcess(FrozenProcess&& o) noexcept
    : pid_(o.pid_),
      known_(std::move(o.known_)),
      waited_(o.waited_),
      started_(o.started_),
      frozen_(std::exchange(o.frozen_, false)),
      threads_(std::move(o.threads_)),
      freeze_time_(o.freeze_time_),
      rounds_(o.rounds_) {
  o.threads_.clear();
}

FrozenProcess& FrozenProcess::operator=(FrozenProcess&& o) noexcept {
  if (this != &o) {
    (void)thaw();
    pid_ = o.pid_;
    known_ = std::move(o.known_);
    waited_ = o.waited_;
    started_ = o.started_;
    frozen_ = std::exchange(o.frozen_, false);
    threads_ = std::move(o.threads_);
    o.threads_.clear();
    freeze_time_ = o.freeze_time_;
    rounds_ = o.rounds_;
  }
  return *this;
}

FrozenProcess::~FrozenProcess() { (void)thaw(); }

Tracee* FrozenProcess::find(pid_t tid) {
  for (auto& t : threads_)
    if (t.tid() == tid) return &t;
  return nullptr;
}

Status FrozenProcess::thaw() {
  if (!frozen_) return {};
  frozen_ = false;
  Status first;
  auto keep = [&first](Status s) {
    if (!s && first) first = std::move(s);
  };
  for (auto& t : threads_) {
    if (t.gone()) continue;
    if (t.stopped()) keep(t.restore_saved_state());
    keep(t.detach(0));
  }
  threads_.clear();
  return first;
}

Status FrozenProcess::kill() {
  if (!frozen_) return {};
  frozen_ = false;
  Status first;
  if (::kill(pid_, SIGKILL) != 0 && errno != ESRCH) first = fail(sys_error("kill(SIGKILL)", "pid " + std::to_string(pid_)));
  // Traced threads stay zombies until their tracer reaps them. They are reaped as each one goes, in
  // the order the kernel lets them: the last thread of an exiting pid-namespace init waits (in
  // zap_pid_ns_processes) until its other threads are reaped, and the leader is reported last, so
  // no thread may be waited for alone.
  std::vector<Tracee*> left;
  for (auto& t : threads_)
    if (!t.gone()) left.push_back(&t);
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  while (!left.empty()) {
    bool moved = false;
    for (auto it = left.begin(); it != left.end();) {
      int st = 0;
      pid_t r = waitpid((*it)->tid(), &st, __WALL | WNOHANG);
      bool done = (r < 0 && errno == ECHILD) || (r == (*it)->tid() && (WIFEXITED(st) || WIFSIGNALED(st)));
      // A PTRACE_EVENT_EXIT stop (when asked for): let it finish dying.
      if (r == (*it)->tid() && !done) (void)ptrace(PTRACE_CONT, (*it)->tid(), nullptr, nullptr);
      moved |= r != 0;
      if (done) {
        (*it)->release();
        it = left.erase(it);
      } else {
        ++it;
      }
    }
    if (left.empty()) break;
    if (Clock::now() >= deadline) {
      if (first)
        first = fail(make_error(Errc::timeout, "waitpid", tid_object(left.front()->tid()), "the killed thread did not exit within 10 s")
                         .with_hint("the thread may be in uninterruptible sleep (D state); see /proc/" +
                                    std::to_string(left.front()->tid()) + "/stack"));
      break;
    }
    if (!moved) {
      timespec ts{0, 1'000'000};
      nanosleep(&ts, nullptr);
    }
  }
  for (auto& t : threads_) t.release();
  threads_.clear();
  return first;
}

}  // namespace crshim::kernel
