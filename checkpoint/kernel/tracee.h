// ptrace control of live threads: stop one (Tracee) or all of a process (FrozenProcess), put back on thaw.
#pragma once

#include <signal.h>
#include <sys/ptrace.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <set>
#include <vector>

#include "checkpoint/base/result.h"
#include "checkpoint/kernel/regs.h"

namespace crshim::kernel {

// TRACESYSGOOD is always added: it lets us tell syscall-stops from real SIGTRAPs.
inline constexpr unsigned kDefaultPtraceOptions = PTRACE_O_TRACESYSGOOD;

// PTRACE_O_SUSPEND_SECCOMP needs CAP_SYS_ADMIN and a tracer that is not itself under seccomp.
bool tracer_can_suspend_seccomp();

// Per-thread blocked-signal mask (bit N-1 = signal N), through PTRACE_{GET,SET}SIGMASK.
Result<uint64_t> get_sigmask(pid_t tid);
Status set_sigmask(pid_t tid, uint64_t mask);

// waitpid(tid, __WALL) retrying EINTR; timeout < 0 blocks, otherwise polls with backoff and fails
// with Errc::timeout. Returns the raw wait status.
Result<int> wait_tid(pid_t tid, std::chrono::milliseconds timeout = std::chrono::milliseconds(-1));

enum class StopKind {
  running,  // attached but not in a ptrace-stop
  event,    // PTRACE_EVENT_STOP after PTRACE_INTERRUPT (or a new auto-attached thread)
  group,    // PTRACE_EVENT_STOP for a group-stop: the process was stopped by SIGSTOP & co.
  signal,   // signal-delivery-stop (also the single-step trap after an injected syscall)
  syscall,  // syscall-enter/exit-stop (SIGTRAP|0x80)
  gone,     // detached or exited
};

// One ptrace-attached thread. All calls must come from the thread that attached (ptrace is
// per tracer thread). Not copyable; the destructor puts back modified state and detaches.
class Tracee {
 public:
  // PTRACE_SEIZE without stopping. ESRCH when the thread is gone; EPERM when already traced or when
  // PTRACE_O_SUSPEND_SECCOMP is asked for without the rights.
  static Result<Tracee> seize(pid_t tid, unsigned options = kDefaultPtraceOptions);
  // Takes over a thread this process already traces (a PTRACE_TRACEME child, or a thread
  // auto-attached through PTRACE_O_TRACECLONE). With wait_for_stop the first stop is awaited here;
  // otherwise the caller has already reaped it and `kind` says what it was. A first stop that is a
  // PTRACE_EVENT_STOP means the thread inherited PTRACE_SEIZE semantics; a SIGSTOP signal stop
  // means a legacy attach, where PTRACE_INTERRUPT (and so interrupt(), detaching a running thread
  // and PtraceSyscall's syscall_stops mode) is unavailable.
  static Result<Tracee> adopt(pid_t tid, unsigned options, bool wait_for_stop, StopKind kind = StopKind::signal);

  Tracee(Tracee&& o) noexcept;
  Tracee& operator=(Tracee&& o) noexcept;
  Tracee(const Tracee&) = delete;
  Tracee& operator=(const Tracee&) = delete;
  ~Tracee();

  // PTRACE_INTERRUPT and wait for the stop, then capture registers and sigmask. A signal that is
  // dequeued before the interrupt lands is delivered right away (the thread runs its handler setup
  // or default action and then stops), so it is neither lost nor left half-delivered.
  Status interrupt(std::chrono::milliseconds timeout = std::chrono::seconds(5));
  // The two halves of interrupt(), to stop many threads in parallel.
  Status request_interrupt();
  Status wait_interrupted(std::chrono::milliseconds timeout = std::chrono::seconds(5));

  // PTRACE_CONT with `sig`; the thread stays attached.
  Status resume(int sig = 0);
  // Re-sends signals deferred during injection, then PTRACE_DETACH with `sig`. Does not restore
  // registers: call restore_saved_state() first when they were changed.
  Status detach(int sig = 0);
  Status set_options(unsigned options);
  // Puts back the registers and sigmask captured at the last interrupt()/adopt().
  Status restore_saved_state();

  pid_t tid() const { return tid_; }
  bool seized() const { return seized_; }
  unsigned options() const { return options_; }
  StopKind stop_kind() const { return kind_; }
  bool stopped() const { return kind_ != StopKind::running && kind_ != StopKind::gone; }
  bool gone() const { return kind_ == StopKind::gone; }
  // The stop signal when stop_kind() == group (the process was already stopped).
  int group_stop_signal() const { return group_sig_; }
  const Regs& saved_regs() const { return saved_regs_; }
  uint64_t saved_sigmask() const { return saved_mask_; }
  // Signals the thread dequeued while being interrupted and that were delivered then.
  const std::vector<int>& delivered_signals() const { return delivered_; }
  // Signals that arrived during an injection window (SIGSTOP, or a synchronous signal sent by
  // someone else); they are re-sent to this thread at resume()/detach(). Queued signals keep their
  // siginfo; others are re-sent with tgkill and keep only the signal number.
  const std::vector<siginfo_t>& deferred_signals() const { return deferred_; }

 private:
  friend class PtraceSyscall;
  friend class FrozenProcess;
  enum class OnSignal { deliver, defer };

  explicit Tracee(pid_t tid, unsigned options) : tid_(tid), options_(options) {}
  Status capture_state();
  // Waits until the thread sits in an event/group stop, handling signal-delivery-stops on the way.
  Status wait_event_stop(std::chrono::milliseconds timeout, OnSignal on_signal);
  // From a syscall-stop, moves the thread into an interrupt stop inside the kernel's signal path,
  // where registers written by us get the kernel's restart handling on resume. No-op otherwise.
  Status leave_syscall_stop();
  // From the stop after a PTRACE_SINGLESTEP, moves the thread into an interrupt stop: the kernel keeps
  // a thread's single-step flag until it is resumed otherwise, and a thread released with it set (by a
  // tracer that died) is killed by SIGTRAP at its next syscall exit. No-op otherwise.
  Status leave_step_stop();
  Status enter_interrupt_stop();
  Status requeue_deferred();
  void release() { kind_ = StopKind::gone; }

  pid_t tid_ = -1;
  unsigned options_ = 0;
  StopKind kind_ = StopKind::gone;
  int group_sig_ = 0;
  bool dirty_ = false;     // registers/sigmask changed since capture and not put back
  bool captured_ = false;  // saved_regs_/saved_mask_ hold real values
  bool seized_ = true;     // PTRACE_SEIZE semantics (PTRACE_INTERRUPT, event stops)
  bool unresponsive_ = false;  // did not stop within the freeze timeout
  Regs saved_regs_;
  uint64_t saved_mask_ = 0;
  std::vector<int> delivered_;
  std::vector<siginfo_t> deferred_;
};

struct FreezeOptions {
  // Clone/fork/exec tracing options are stripped: freezing must not auto-attach anything.
  unsigned ptrace_options = kDefaultPtraceOptions;
  std::chrono::milliseconds timeout{5000};  // per wait for one thread to stop
  int max_rounds = 1000;                    // re-listings of /proc/PID/task before giving up
};

// Every thread of one process, seized and stopped. Threads created while freezing are caught by
// re-listing /proc/PID/task until the set is stable. Destruction or thaw() puts back every thread's
// original registers and sigmask and detaches, so a failed dump leaves the process as it was.
class FrozenProcess {
 public:
  static Result<FrozenProcess> freeze(pid_t pid, const FreezeOptions& opts = {});
  // The two halves of freeze(), to stop many processes at once: start_freeze() seizes and interrupts
  // the threads listed now without waiting; finish_freeze() waits for their stops and re-lists until
  // the thread set is stable. Until finish_freeze() succeeds the process is not fully frozen.
  static Result<FrozenProcess> start_freeze(pid_t pid, const FreezeOptions& opts = {});
  Status finish_freeze(const FreezeOptions& opts = {});

  FrozenProcess(FrozenProcess&& o) noexcept;
  FrozenProcess& operator=(FrozenProcess&& o) noexcept;
  FrozenProcess(const FrozenProcess&) = delete;
  FrozenProcess& operator=(const FrozenProcess&) = delete;
  ~FrozenProcess();

  // Restores every thread's saved registers and sigmask and detaches them all (continuing past
  // errors; returns the first one).
  Status thaw();
  // SIGKILL the process, reap the traced threads, detach.
  Status kill();

  pid_t pid() const { return pid_; }
  bool frozen() const { return frozen_; }
  std::vector<Tracee>& threads() { return threads_; }
  const std::vector<Tracee>& threads() const { return threads_; }
  Tracee* find(pid_t tid);
  Tracee& leader() { return *find(pid_); }
  // Wall time from the first seize until every thread was stopped.
  std::chrono::nanoseconds freeze_duration() const { return freeze_time_; }
  int rounds() const { return rounds_; }

 private:
  FrozenProcess() = default;
  // One listing of /proc/PID/task: seizes and interrupts the threads not seen before; true if any.
  Result<bool> seize_listed(const FreezeOptions& opts);

  pid_t pid_ = -1;
  std::set<pid_t> known_;  // every tid listed so far
  size_t waited_ = 0;      // threads_[0, waited_) are stopped
  std::chrono::steady_clock::time_point started_{};
  bool frozen_ = false;
  std::vector<Tracee> threads_;
  std::chrono::nanoseconds freeze_time_{0};
  int rounds_ = 0;
};

}  // namespace crshim::kernel
