// CPU state of a ptrace-stopped thread (NT_PRSTATUS, fxsave, xsave) and the syscall-restart rule.
#pragma once

#include <sys/types.h>
#include <sys/user.h>

#include <cstdint>
#include <vector>

#include "checkpoint/base/result.h"

namespace crshim::kernel {

// Kernel-internal return values of an interrupted syscall (include/linux/errno.h); they are only
// visible to a tracer, never to the program.
inline constexpr long kERESTARTSYS = 512;
inline constexpr long kERESTARTNOINTR = 513;
inline constexpr long kERESTARTNOHAND = 514;
inline constexpr long kERESTART_RESTARTBLOCK = 516;

// General registers as the kernel reports them in NT_PRSTATUS (216 bytes on x86_64, with
// fs_base/gs_base). Fields are accessed directly: regs.rip, regs.orig_rax.
struct Regs : user_regs_struct {
  Regs() : user_regs_struct{} {}
  // True when the thread stopped inside (or right after) a syscall.
  bool in_syscall() const { return static_cast<long>(orig_rax) >= 0; }
  bool operator==(const Regs& o) const;
};

// Legacy 512-byte fxsave area (NT_PRFPREG).
struct FpRegs : user_fpregs_struct {
  FpRegs() : user_fpregs_struct{} {}
};

// The thread's full extended state in the standard (non-compacted) XSAVE format (NT_X86_XSTATE).
// The size comes from the kernel and depends on the CPU (2432 bytes on the reference machine).
struct XState {
  std::vector<uint8_t> bytes;

  // XCR0 user feature mask: ptrace reports it in the first word of the fxsave software-reserved
  // bytes (offset 464; signal frames use a different layout there).
  uint64_t xfeatures() const;
  // XSTATE_BV from the XSAVE header (offset 512): which components hold non-init state.
  uint64_t xstate_bv() const;
};

Result<Regs> get_regs(pid_t tid);
Status set_regs(pid_t tid, const Regs& regs);
Result<FpRegs> get_fpregs(pid_t tid);
Status set_fpregs(pid_t tid, const FpRegs& fp);
Result<XState> get_xstate(pid_t tid);
Status set_xstate(pid_t tid, const XState& xs);

enum class RestartMode {
  in_place,  // the thread resumes in this kernel: RESTARTBLOCK goes through restart_syscall
  image,     // the registers go into an image: restart_block cannot be carried, report EINTR
};

// Applies the kernel's syscall-restart rule to registers captured while a syscall was interrupted,
// so they can be resumed without the kernel's own signal-return path (e.g. after a syscall-stop or
// in a restored task): -ERESTARTSYS/-ERESTARTNOINTR/-ERESTARTNOHAND re-execute the syscall,
// -ERESTART_RESTARTBLOCK continues through restart_syscall (in place) or returns -EINTR (image).
// orig_rax is always set to -1 afterwards so the kernel will not apply the rule a second time.
// Returns true when rip/rax were changed.
bool fixup_syscall_restart(Regs& regs, RestartMode mode);

}  // namespace crshim::kernel
