#include "checkpoint/kernel/regs.h"

#include <elf.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace crshim::kernel {

namespace {

std::string tid_object(pid_t tid) { return "tid " + std::to_string(tid); }

// GETREGSET into `buf`; returns the length the kernel filled in.
Result<size_t> getregset(pid_t tid, int note, void* buf, size_t size, const char* what) {
  iovec iov{buf, size};
  if (ptrace(PTRACE_GETREGSET, tid, reinterpret_cast<void*>(static_cast<uintptr_t>(note)), &iov) != 0)
    return fail(sys_error(std::string("ptrace(PTRACE_GETREGSET, ") + what + ")", tid_object(tid)));
  return iov.iov_len;
}

Status setregset(pid_t tid, int note, const void* buf, size_t size, const char* what) {
  iovec iov{const_cast<void*>(buf), size};
  if (ptrace(PTRACE_SETREGSET, tid, reinterpret_cast<void*>(static_cast<uintptr_t>(note)), &iov) != 0)
    return fail(sys_error(std::string("ptrace(PTRACE_SETREGSET, ") + what + ")", tid_object(tid)));
  return {};
}

uint64_t load_u64(const std::vector<uint8_t>& b, size_t off) {
  uint64_t v = 0;
  if (b.size() >= off + sizeof(v)) std::memcpy(&v, b.data() + off, sizeof(v));
  return v;
}

}  // namespace

bool Regs::operator==(const Regs& o) const {
  return std::memcmp(static_cast<const user_regs_struct*>(this), static_cast<const user_regs_struct*>(&o),
                     sizeof(user_regs_struct)) == 0;
}

uint64_t XState::xfeatures() const { return load_u64(bytes, 464); }
uint64_t XState::xstate_bv() const { return load_u64(bytes, 512); }

Result<Regs> get_regs(pid_t tid) {
  Regs r;
  size_t n = CR_TRY(getregset(tid, NT_PRSTATUS, static_cast<user_regs_struct*>(&r), sizeof(user_regs_struct),
                              "NT_PRSTATUS"));
  if (n != sizeof(user_regs_struct))
    return fail(make_error(Errc::unsupported, "ptrace(PTRACE_GETREGSET, NT_PRSTATUS)", tid_object(tid),
                           "unexpected size " + std::to_string(n) + " (a 32-bit task?)"));
  return r;
}

Status set_regs(pid_t tid, const Regs& regs) {
  return setregset(tid, NT_PRSTATUS, static_cast<const user_regs_struct*>(&regs), sizeof(user_regs_struct),
                   "NT_PRSTATUS");
}

Result<FpRegs> get_fpregs(pid_t tid) {
  FpRegs fp;
  size_t n = CR_TRY(getregset(tid, NT_PRFPREG, static_cast<user_fpregs_struct*>(&fp), sizeof(user_fpregs_struct),
                              "NT_PRFPREG"));
  if (n != sizeof(user_fpregs_struct))
    return fail(make_error(Errc::unsupported, "ptrace(PTRACE_GETREGSET, NT_PRFPREG)", tid_object(tid),
                           "unexpected size " + std::to_string(n)));
  return fp;
}

Status set_fpregs(pid_t tid, const FpRegs& fp) {
  return setregset(tid, NT_PRFPREG, static_cast<const user_fpregs_struct*>(&fp), sizeof(user_fpregs_struct),
                   "NT_PRFPREG");
}

Result<XState> get_xstate(pid_t tid) {
  // The kernel clamps the iovec to the real regset size, so an oversized buffer tells us the
  // length (AMX tile data makes it up to ~11 KiB; 64 KiB leaves room).
  XState xs;
  xs.bytes.resize(64 * 1024);
  size_t n = CR_TRY(getregset(tid, NT_X86_XSTATE, xs.bytes.data(), xs.bytes.size(), "NT_X86_XSTATE"));
  if (n < 512 + 64)
    return fail(make_error(Errc::unsupported, "ptrace(PTRACE_GETREGSET, NT_X86_XSTATE)", tid_object(tid),
                           "short xstate of " + std::to_string(n) + " bytes"));
  xs.bytes.resize(n);
  return xs;
}

Status set_xstate(pid_t tid, const XState& xs) {
  return setregset(tid, NT_X86_XSTATE, xs.bytes.data(), xs.bytes.size(), "NT_X86_XSTATE");
}

bool fixup_syscall_restart(Regs& regs, RestartMode mode) {
  bool changed = false;
  if (regs.in_syscall()) {
    const long ret = static_cast<long>(regs.rax);
    if (ret == -kERESTARTSYS || ret == -kERESTARTNOINTR || ret == -kERESTARTNOHAND) {
      // Back up over the 2-byte `syscall` instruction and reload the syscall number.
      regs.rax = regs.orig_rax;
      regs.rip -= 2;
      changed = true;
    } else if (ret == -kERESTART_RESTARTBLOCK) {
      if (mode == RestartMode::in_place) {
        regs.rax = SYS_restart_syscall;
        regs.rip -= 2;
      } else {
        regs.rax = static_cast<unsigned long long>(-static_cast<long>(EINTR));
      }
      changed = true;
    }
  }
  regs.orig_rax = static_cast<unsigned long long>(-1L);
  return changed;
}

}  // namespace crshim::kernel
