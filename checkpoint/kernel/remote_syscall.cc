#include "checkpoint/kernel/remote_syscall.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "checkpoint/base/sys.h"

namespace crshim::kernel {

namespace {

std::string tid_object(pid_t tid) { return "tid " + std::to_string(tid); }

constexpr uint64_t sigbit(int sig) { return 1ULL << (sig - 1); }

// Signals the kernel forces on a fault. If one of them were blocked when forced, the kernel would
// reset its handler to SIG_DFL, so they stay unblocked during a window.
constexpr uint64_t kSyncSignals =
    sigbit(SIGTRAP) | sigbit(SIGSYS) | sigbit(SIGSEGV) | sigbit(SIGBUS) | sigbit(SIGILL) | sigbit(SIGFPE);

bool is_exit(long nr) { return nr == SYS_exit || nr == SYS_exit_group; }

// One hex mask line ("SigIgn:\t0000000000000010") from a /proc status text.
uint64_t status_mask(std::string_view text, std::string_view key) {
  for (auto line : sys::split(text, '\n')) {
    if (line.size() > key.size() && line.substr(0, key.size()) == key && line[key.size()] == ':') {
      uint64_t v = 0;
      if (sys::parse_u64(sys::trim(line.substr(key.size() + 1)), v, 16)) return v;
    }
  }
  return 0;
}

// CPU the thread last ran on: field 39 of /proc/<tid>/stat (counted after the "(comm)" field).
int last_cpu(pid_t tid) {
  auto text = sys::read_file("/proc/" + std::to_string(tid) + "/stat");
  if (!text) return -1;
  auto close = text->rfind(')');
  if (close == std::string::npos) return -1;
  auto fields = sys::split(std::string_view(*text).substr(close + 1), ' ');
  constexpr size_t kProcessor = 39 - 3;  // fields[0] is field 3 (state)
  uint64_t cpu = 0;
  if (fields.size() <= kProcessor || !sys::parse_u64(fields[kProcessor], cpu)) return -1;
  return static_cast<int>(cpu);
}

Error signal_error(long nr, pid_t tid, const siginfo_t& si) {
  Error e = make_error(Errc::internal, "remote " + syscall_name(nr), tid_object(tid),
                       std::string("the thread got ") + (sigabbrev_np(si.si_signo) ? "SIG" : "signal ") +
                           (sigabbrev_np(si.si_signo) ? sigabbrev_np(si.si_signo) : std::to_string(si.si_signo)) +
                           " (si_code " + std::to_string(si.si_code) + ")");
  if (si.si_signo == SIGSYS)
    e.with_hint("the target's seccomp filter refused the syscall; seize with PTRACE_O_SUSPEND_SECCOMP");
  return e;
}

}  // namespace

std::string syscall_name(long nr) {
  switch (nr) {
#define CRSHIM_SYSCALL_NAME(x) \
  case SYS_##x:                \
    return #x;
    CRSHIM_SYSCALL_NAME(read)
    CRSHIM_SYSCALL_NAME(write)
    CRSHIM_SYSCALL_NAME(close)
    CRSHIM_SYSCALL_NAME(lseek)
    CRSHIM_SYSCALL_NAME(mmap)
    CRSHIM_SYSCALL_NAME(mprotect)
    CRSHIM_SYSCALL_NAME(munmap)
    CRSHIM_SYSCALL_NAME(brk)
    CRSHIM_SYSCALL_NAME(rt_sigaction)
    CRSHIM_SYSCALL_NAME(rt_sigprocmask)
    CRSHIM_SYSCALL_NAME(ioctl)
    CRSHIM_SYSCALL_NAME(preadv)
    CRSHIM_SYSCALL_NAME(pwritev)
    CRSHIM_SYSCALL_NAME(mremap)
    CRSHIM_SYSCALL_NAME(mincore)
    CRSHIM_SYSCALL_NAME(madvise)
    CRSHIM_SYSCALL_NAME(dup2)
    CRSHIM_SYSCALL_NAME(dup3)
    CRSHIM_SYSCALL_NAME(nanosleep)
    CRSHIM_SYSCALL_NAME(getitimer)
    CRSHIM_SYSCALL_NAME(setitimer)
    CRSHIM_SYSCALL_NAME(getpid)
    CRSHIM_SYSCALL_NAME(clone)
    CRSHIM_SYSCALL_NAME(clone3)
    CRSHIM_SYSCALL_NAME(fork)
    CRSHIM_SYSCALL_NAME(exit)
    CRSHIM_SYSCALL_NAME(exit_group)
    CRSHIM_SYSCALL_NAME(kill)
    CRSHIM_SYSCALL_NAME(tgkill)
    CRSHIM_SYSCALL_NAME(fcntl)
    CRSHIM_SYSCALL_NAME(chdir)
    CRSHIM_SYSCALL_NAME(fchdir)
    CRSHIM_SYSCALL_NAME(umask)
    CRSHIM_SYSCALL_NAME(getppid)
    CRSHIM_SYSCALL_NAME(setsid)
    CRSHIM_SYSCALL_NAME(setpgid)
    CRSHIM_SYSCALL_NAME(getpgid)
    CRSHIM_SYSCALL_NAME(getsid)
    CRSHIM_SYSCALL_NAME(sigaltstack)
    CRSHIM_SYSCALL_NAME(prctl)
    CRSHIM_SYSCALL_NAME(arch_prctl)
    CRSHIM_SYSCALL_NAME(gettid)
    CRSHIM_SYSCALL_NAME(set_tid_address)
    CRSHIM_SYSCALL_NAME(restart_syscall)
    CRSHIM_SYSCALL_NAME(timer_create)
    CRSHIM_SYSCALL_NAME(timer_settime)
    CRSHIM_SYSCALL_NAME(timer_gettime)
    CRSHIM_SYSCALL_NAME(timer_delete)
    CRSHIM_SYSCALL_NAME(clock_nanosleep)
    CRSHIM_SYSCALL_NAME(openat)
    CRSHIM_SYSCALL_NAME(set_robust_list)
    CRSHIM_SYSCALL_NAME(get_robust_list)
    CRSHIM_SYSCALL_NAME(timerfd_create)
    CRSHIM_SYSCALL_NAME(prlimit64)
    CRSHIM_SYSCALL_NAME(sched_setaffinity)
    CRSHIM_SYSCALL_NAME(sched_getaffinity)
    CRSHIM_SYSCALL_NAME(userfaultfd)
    CRSHIM_SYSCALL_NAME(membarrier)
    CRSHIM_SYSCALL_NAME(rseq)
    CRSHIM_SYSCALL_NAME(pidfd_open)
    CRSHIM_SYSCALL_NAME(pidfd_getfd)
    CRSHIM_SYSCALL_NAME(close_range)
    CRSHIM_SYSCALL_NAME(rt_tgsigqueueinfo)
    CRSHIM_SYSCALL_NAME(capset)
    CRSHIM_SYSCALL_NAME(chroot)
    CRSHIM_SYSCALL_NAME(epoll_ctl)
    CRSHIM_SYSCALL_NAME(flock)
    CRSHIM_SYSCALL_NAME(personality)
    CRSHIM_SYSCALL_NAME(recvmsg)
    CRSHIM_SYSCALL_NAME(rt_sigqueueinfo)
    CRSHIM_SYSCALL_NAME(rt_sigtimedwait)
    CRSHIM_SYSCALL_NAME(seccomp)
    CRSHIM_SYSCALL_NAME(setdomainname)
    CRSHIM_SYSCALL_NAME(sethostname)
    CRSHIM_SYSCALL_NAME(setfsgid)
    CRSHIM_SYSCALL_NAME(setfsuid)
    CRSHIM_SYSCALL_NAME(setgroups)
    CRSHIM_SYSCALL_NAME(setns)
    CRSHIM_SYSCALL_NAME(setresgid)
    CRSHIM_SYSCALL_NAME(setresuid)
    CRSHIM_SYSCALL_NAME(shmat)
    CRSHIM_SYSCALL_NAME(unshare)
#undef CRSHIM_SYSCALL_NAME
  }
  return "syscall " + std::to_string(nr);
}

// ---- PtraceSyscall ----

Result<PtraceSyscall> PtraceSyscall::begin(Tracee& tracee, uint64_t insn, Options opts) {
  const pid_t tid = tracee.tid();
  if (!tracee.stopped())
    return fail(make_error(Errc::internal, "remote syscall", tid_object(tid), "the thread is not stopped"));
  CR_OK(tracee.leave_syscall_stop());

  PtraceSyscall ps;
  ps.tracee_ = &tracee;
  ps.insn_ = insn;
  ps.orig_regs_ = CR_TRY(get_regs(tid));
  ps.orig_mask_ = CR_TRY(get_sigmask(tid));

  ps.mode_ = opts.mode;
  if (!tracee.seized()) {
    // Leaving a syscall-stop needs PTRACE_INTERRUPT, which only seized tracees accept.
    if (ps.mode_ == Mode::syscall_stops)
      return fail(make_error(Errc::invalid_argument, "remote syscall", tid_object(tid),
                             "syscall_stops mode needs a thread attached with PTRACE_SEIZE"));
    ps.mode_ = Mode::single_step;
  }
  if (ps.mode_ == Mode::automatic) {
    // The single-step trap is a forced SIGTRAP: for an ignored SIGTRAP the kernel would reset the
    // disposition to SIG_DFL, and an already pending one would swallow ours. Avoid both.
    std::string status = CR_TRY(sys::read_file("/proc/" + std::to_string(tid) + "/status"));
    const uint64_t trap_busy =
        (status_mask(status, "SigIgn") | status_mask(status, "SigPnd") | status_mask(status, "ShdPnd")) &
        sigbit(SIGTRAP);
    ps.mode_ = trap_busy ? Mode::syscall_stops : Mode::single_step;
  }
  uint64_t window = ~kSyncSignals;
  if (ps.mode_ == Mode::syscall_stops) window |= sigbit(SIGTRAP);  // no trap of ours to let through
  CR_OK(set_sigmask(tid, window));
  tracee.dirty_ = true;
  ps.active_ = true;

  if (opts.pin_cpu) {
    int cpu = last_cpu(tid);
    if (cpu >= 0 && cpu < CPU_SETSIZE && sched_getaffinity(0, sizeof(ps.old_affinity_), &ps.old_affinity_) == 0 &&
        CPU_ISSET(cpu, &ps.old_affinity_)) {
      cpu_set_t one;
      CPU_ZERO(&one);
      CPU_SET(cpu, &one);
      ps.pinned_ = sched_setaffinity(0, sizeof(one), &one) == 0;
    }
  }
  return ps;
}

PtraceSyscall::PtraceSyscall(PtraceSyscall&& o) noexcept
    : tracee_(o.tracee_),
      insn_(o.insn_),
      mode_(o.mode_),
      active_(std::exchange(o.active_, false)),
      orig_regs_(o.orig_regs_),
      orig_mask_(o.orig_mask_),
      pinned_(std::exchange(o.pinned_, false)),
      old_affinity_(o.old_affinity_),
      new_tids_(std::move(o.new_tids_)),
      calls_(o.calls_) {}

PtraceSyscall::~PtraceSyscall() { (void)restore(); }

pid_t PtraceSyscall::tid() const { return tracee_ ? tracee_->tid() : -1; }

Status PtraceSyscall::restore() {
  Status st;
  if (active_) {
    active_ = false;
    if (!tracee_->gone()) {
      st = [this]() -> Status {
        const pid_t tid = tracee_->tid();
        // From a syscall-stop the kernel would not apply its restart rule on resume; go through
        // an interrupt stop first, then write back the untouched registers (orig_rax included).
        CR_OK(tracee_->leave_syscall_stop());
        // Leaving the step stop needs PTRACE_INTERRUPT (seized threads only); a legacy-attached thread
        // keeps the flag until it is resumed or detached, which clears it.
        if (mode_ == Mode::single_step && calls_ > 0 && tracee_->seized()) CR_OK(tracee_->leave_step_stop());
        CR_OK(set_regs(tid, orig_regs_));
        CR_OK(set_sigmask(tid, orig_mask_));
        return {};
      }();
      if (st) tracee_->dirty_ = false;
    }
  }
  if (pinned_) {
    pinned_ = false;
    (void)sched_setaffinity(0, sizeof(old_affinity_), &old_affinity_);
  }
  return st;
}

Status PtraceSyscall::resume_step(int req) {
  if (ptrace(static_cast<__ptrace_request>(req), tracee_->tid(), nullptr, nullptr) != 0)
    return fail(sys_error(req == PTRACE_SINGLESTEP ? "ptrace(PTRACE_SINGLESTEP)" : "ptrace(PTRACE_SYSCALL)",
                          tid_object(tracee_->tid())));
  tracee_->kind_ = StopKind::running;
  return {};
}

Result<long> PtraceSyscall::call(long nr, std::array<long, 6> args) {
  if (!active_)
    return fail(make_error(Errc::internal, "remote " + syscall_name(nr), tid_object(tid()), "the window is closed"));
  if (tracee_->gone())
    return fail(make_error(Errc::not_found, "remote " + syscall_name(nr), tid_object(tid()), "the thread is gone"));
  if (mode_ == Mode::single_step && nr == SYS_rt_sigaction && args[0] == SIGTRAP && args[1] != 0) {
    // Each step trap is a forced SIGTRAP, which the kernel turns into SIG_DFL when SIGTRAP is
    // ignored; once the program's SIGTRAP disposition is being set, stop raising traps.
    if (tracee_->seized()) {
      mode_ = Mode::syscall_stops;
    } else {
      uint64_t handler = 0;
      CR_OK(read_mem(tracee_->tid(), static_cast<uint64_t>(args[1]), {reinterpret_cast<uint8_t*>(&handler), 8}));
      if (handler == reinterpret_cast<uint64_t>(SIG_IGN))
        return fail(make_error(Errc::unsupported, "remote rt_sigaction", tid_object(tid()),
                               "SIGTRAP cannot be set to SIG_IGN while single-stepping")
                        .with_hint("attach the thread with PTRACE_SEIZE so the syscall_stops mode is available"));
    }
  }
  Regs r = orig_regs_;
  r.rip = insn_;
  r.rax = static_cast<unsigned long long>(nr);
  r.orig_rax = static_cast<unsigned long long>(-1L);  // no syscall of ours to "restart"
  r.rdi = static_cast<unsigned long long>(args[0]);
  r.rsi = static_cast<unsigned long long>(args[1]);
  r.rdx = static_cast<unsigned long long>(args[2]);
  r.r10 = static_cast<unsigned long long>(args[3]);
  r.r8 = static_cast<unsigned long long>(args[4]);
  r.r9 = static_cast<unsigned long long>(args[5]);
  r.eflags &= ~0x100ULL;  // TF: stepping is the kernel's business
  CR_OK(set_regs(tracee_->tid(), r));
  ++calls_;
  const long ret = CR_TRY(run(nr));
  if (ret < 0 && ret >= -4095)
    return fail(errno_error(static_cast<int>(-ret), "remote " + syscall_name(nr), tid_object(tid())));
  return ret;
}

Result<long> PtraceSyscall::run(long nr) {
  const pid_t tid = tracee_->tid();
  const int req = mode_ == Mode::single_step ? PTRACE_SINGLESTEP : PTRACE_SYSCALL;
  const std::string op = "remote " + syscall_name(nr);
  bool entered = false;
  CR_OK(resume_step(req));
  for (int n = 0; n < 10000; ++n) {
    int st = CR_TRY(wait_tid(tid));
    if (WIFEXITED(st) || WIFSIGNALED(st)) {
      tracee_->kind_ = StopKind::gone;
      if (is_exit(nr)) return 0;
      return fail(make_error(Errc::not_found, op, tid_object(tid),
                             WIFSIGNALED(st) ? "the thread was killed by signal " + std::to_string(WTERMSIG(st))
                                             : std::string("the thread exited")));
    }
    if (!WIFSTOPPED(st)) continue;
    const int sig = WSTOPSIG(st);
    const unsigned event = static_cast<unsigned>(st) >> 16;
    if (event == PTRACE_EVENT_CLONE || event == PTRACE_EVENT_FORK || event == PTRACE_EVENT_VFORK) {
      unsigned long child = 0;
      if (ptrace(PTRACE_GETEVENTMSG, tid, nullptr, &child) != 0)
        return fail(sys_error("ptrace(PTRACE_GETEVENTMSG)", tid_object(tid)));
      new_tids_.push_back(static_cast<pid_t>(child));
      CR_OK(resume_step(req));
      continue;
    }
    if (event == PTRACE_EVENT_EXIT) {
      if (is_exit(nr)) {
        (void)ptrace(PTRACE_CONT, tid, nullptr, nullptr);
        continue;
      }
      tracee_->kind_ = StopKind::event;
      return fail(make_error(Errc::not_found, op, tid_object(tid), "the thread is exiting"));
    }
    if (event != 0) {
      // Group-stop or stray interrupt: finish the syscall first; a group stop is reinstated by
      // the kernel at detach.
      CR_OK(resume_step(req));
      continue;
    }
    if (sig == (SIGTRAP | 0x80)) {
      if (mode_ == Mode::syscall_stops && !entered) {
        entered = true;
        CR_OK(resume_step(req));
        continue;
      }
      if (mode_ == Mode::syscall_stops) {
        tracee_->kind_ = StopKind::syscall;
        Regs now = CR_TRY(get_regs(tid));
        return static_cast<long>(now.rax);
      }
      CR_OK(resume_step(req));
      continue;
    }
    // A signal-delivery-stop: our step trap, a fault, or a signal we could not block.
    siginfo_t si{};
    if (ptrace(PTRACE_GETSIGINFO, tid, nullptr, &si) != 0) {
      si = siginfo_t{};
      si.si_signo = sig;
      si.si_code = SI_USER;
    }
    const bool from_kernel = si.si_code > 0 && si.si_code != SI_KERNEL;
    if (mode_ == Mode::single_step && sig == SIGTRAP) {
      Regs now = CR_TRY(get_regs(tid));
      if (now.rip == insn_ + 2) {
        // A user SIGTRAP pending at the same time absorbs ours (legacy signals do not queue
        // twice); it still has to reach the program later.
        if (!from_kernel) tracee_->deferred_.push_back(si);
        tracee_->kind_ = StopKind::signal;
        return static_cast<long>(now.rax);
      }
    }
    if (from_kernel && (kSyncSignals & sigbit(sig))) {
      tracee_->kind_ = StopKind::signal;  // suppressed when the window restores and resumes
      return fail(signal_error(nr, tid, si));
    }
    tracee_->deferred_.push_back(si);
    CR_OK(resume_step(req));
  }
  return fail(make_error(Errc::timeout, op, tid_object(tid), "too many stops"));
}

// ---- memory ----

namespace {

template <bool Write>
Status access_mem(pid_t pid, uint64_t addr, uint8_t* buf, size_t size) {
  size_t done = 0;
  while (done < size) {
    iovec local{buf + done, size - done};
    iovec remote{reinterpret_cast<void*>(addr + done), size - done};
    ssize_t n = Write ? process_vm_writev(pid, &local, 1, &remote, 1, 0) : process_vm_readv(pid, &local, 1, &remote, 1, 0);
    if (n > 0) {
      done += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EFAULT)
      return fail(sys_error(Write ? "process_vm_writev" : "process_vm_readv", "pid " + std::to_string(pid)));
    break;  // EFAULT: a page the call refuses (read-only, PROT_NONE); /proc/PID/mem forces access
  }
  if (done == size) return {};
  const std::string path = "/proc/" + std::to_string(pid) + "/mem";
  UniqueFd fd = CR_TRY(sys::open(path, Write ? O_WRONLY : O_RDONLY));
  char where[64];
  snprintf(where, sizeof(where), " at 0x%llx", static_cast<unsigned long long>(addr + done));
  if (Write) return sys::pwrite_all(fd.get(), buf + done, size - done, static_cast<off_t>(addr + done), path + where);
  return sys::pread_exact(fd.get(), buf + done, size - done, static_cast<off_t>(addr + done), path + where);
}

}  // namespace

Status read_mem(pid_t pid, uint64_t addr, std::span<uint8_t> out) {
  return access_mem<false>(pid, addr, out.data(), out.size());
}

Status write_mem(pid_t pid, uint64_t addr, std::span<const uint8_t> data) {
  return access_mem<true>(pid, addr, const_cast<uint8_t*>(data.data()), data.size());
}

Result<uint64_t> find_syscall_insn(pid_t pid) {
  const std::string maps_path = "/proc/" + std::to_string(pid) + "/maps";
  std::string maps = CR_TRY(sys::read_file(maps_path));
  for (auto line : sys::split(maps, '\n')) {
    if (line.size() < 6 || line.substr(line.size() - 6) != "[vdso]") continue;
    auto dash = line.find('-');
    auto space = line.find(' ');
    uint64_t start = 0, end = 0;
    if (dash == std::string_view::npos || space == std::string_view::npos || space < dash ||
        !sys::parse_u64(line.substr(0, dash), start, 16) || !sys::parse_u64(line.substr(dash + 1, space - dash - 1), end, 16) ||
        end <= start || end - start > (1u << 20))
      return fail(make_error(Errc::corrupt_image, "parse", maps_path, "bad [vdso] line"));
    std::vector<uint8_t> text(end - start);
    CR_OK_IN(read_mem(pid, start, text), "read [vdso]");
    for (size_t i = 0; i + 1 < text.size(); ++i)
      if (text[i] == 0x0f && text[i + 1] == 0x05) return start + i;
    return fail(make_error(Errc::not_found, "find syscall instruction", "pid " + std::to_string(pid),
                           "no 0f 05 in [vdso]"));
  }
  return fail(make_error(Errc::not_found, "find syscall instruction", maps_path, "no [vdso] mapping"));
}

Result<uint64_t> remote_mmap(RemoteSyscall& rs, size_t size, int prot) {
  long addr = CR_TRY(rs.syscall(SYS_mmap, 0, static_cast<long>(size), prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  return static_cast<uint64_t>(addr);
}

Status remote_munmap(RemoteSyscall& rs, uint64_t addr, size_t size) {
  CR_OK(rs.syscall(SYS_munmap, static_cast<long>(addr), static_cast<long>(size)));
  return {};
}

}  // namespace crshim::kernel
