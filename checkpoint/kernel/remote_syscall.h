// Remote syscalls run by a stopped thread at an existing `syscall` instruction, and target memory access.
#pragma once

#include <sched.h>
#include <sys/types.h>

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "checkpoint/base/result.h"
#include "checkpoint/kernel/regs.h"
#include "checkpoint/kernel/tracee.h"

namespace crshim::kernel {

// Name of a syscall we inject ("mmap"), or "syscall <nr>".
std::string syscall_name(long nr);

// The executor interface: a batched in-target executor can implement it later.
class RemoteSyscall {
 public:
  virtual ~RemoteSyscall() = default;
  // Runs syscall `nr` in the target thread. Kernel error returns (-4095..-1) become an Error that
  // names the syscall and the thread, with err = the errno.
  virtual Result<long> call(long nr, std::array<long, 6> args) = 0;
  virtual pid_t tid() const = 0;

  Result<long> syscall(long nr, long a1 = 0, long a2 = 0, long a3 = 0, long a4 = 0, long a5 = 0, long a6 = 0) {
    return call(nr, {a1, a2, a3, a4, a5, a6});
  }
};

// Executes syscalls through ptrace: for each call the thread's registers are set to
// {rip = insn, rax = nr, orig_rax = -1, args}, it is single-stepped over the instruction, and rax is
// read at the trap. While the window is open, every asynchronous signal is blocked (synchronous
// ones stay unblocked: the kernel would otherwise reset their handlers when forcing them). The
// thread's registers and sigmask are put back by restore() or the destructor; an interrupted
// syscall of the thread then restarts exactly as if it had never been stopped.
// Must not outlive its Tracee; use from the attaching thread only.
class PtraceSyscall final : public RemoteSyscall {
 public:
  enum class Mode {
    // single_step, unless SIGTRAP is ignored or already pending in the target. A seized thread
    // also switches to syscall_stops from an injected rt_sigaction that sets SIGTRAP on.
    automatic,
    single_step,    // one stop per call (PTRACE_SINGLESTEP, ~12 µs on one CPU)
    syscall_stops,  // two stops per call (PTRACE_SYSCALL); raises no SIGTRAP in the target
  };
  struct Options {
    Mode mode = Mode::automatic;
    // Run the tracer on the tracee's last CPU for the window: cross-CPU round trips cost ~4x.
    bool pin_cpu = true;
  };

  // Opens an injection window on a stopped thread; `insn` is the address of a `0f 05` pair in an
  // executable mapping of the target (see find_syscall_insn).
  static Result<PtraceSyscall> begin(Tracee& tracee, uint64_t insn, Options opts);
  static Result<PtraceSyscall> begin(Tracee& tracee, uint64_t insn) { return begin(tracee, insn, Options{}); }

  PtraceSyscall(PtraceSyscall&& o) noexcept;
  PtraceSyscall& operator=(PtraceSyscall&&) = delete;
  PtraceSyscall(const PtraceSyscall&) = delete;
  PtraceSyscall& operator=(const PtraceSyscall&) = delete;
  ~PtraceSyscall() override;

  Result<long> call(long nr, std::array<long, 6> args) override;
  pid_t tid() const override;

  // Puts back the thread's registers and sigmask and closes the window (idempotent).
  Status restore();
  // Switches to another syscall instruction (e.g. a trampoline mapped by an earlier call).
  void set_insn(uint64_t insn) { insn_ = insn; }

  Mode mode() const { return mode_; }
  bool active() const { return active_; }
  // The registers and sigmask the window will put back.
  const Regs& original_regs() const { return orig_regs_; }
  uint64_t original_sigmask() const { return orig_mask_; }
  // Threads/processes created by injected clone/clone3/fork (PTRACE_EVENT_CLONE/FORK/VFORK; the
  // tracee needs PTRACE_O_TRACECLONE & co.). They start in their own ptrace stop; see Tracee::adopt.
  std::vector<pid_t> take_new_tids() { return std::exchange(new_tids_, {}); }
  unsigned long calls() const { return calls_; }

 private:
  PtraceSyscall() = default;
  Result<long> run(long nr);
  Status resume_step(int req);

  Tracee* tracee_ = nullptr;
  uint64_t insn_ = 0;
  Mode mode_ = Mode::single_step;
  bool active_ = false;
  Regs orig_regs_;
  uint64_t orig_mask_ = 0;
  bool pinned_ = false;
  cpu_set_t old_affinity_{};
  std::vector<pid_t> new_tids_;
  unsigned long calls_ = 0;
};

// Address of a `0f 05` (syscall) byte pair in the target's [vdso].
Result<uint64_t> find_syscall_insn(pid_t pid);

// Target memory access: process_vm_{read,write}v, falling back to /proc/PID/mem (which can write
// read-only private pages, e.g. RELRO) for what they refuse.
Status read_mem(pid_t pid, uint64_t addr, std::span<uint8_t> out);
Status write_mem(pid_t pid, uint64_t addr, std::span<const uint8_t> data);

// Anonymous private mapping in the target (a scratch area for syscall arguments).
Result<uint64_t> remote_mmap(RemoteSyscall& rs, size_t size, int prot = 0x3 /* PROT_READ|PROT_WRITE */);
Status remote_munmap(RemoteSyscall& rs, uint64_t addr, size_t size);

}  // namespace crshim::kernel
