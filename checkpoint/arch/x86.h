// x86-64 registers between the kernel's ptrace formats and the image's thread_info_x86.
#pragma once

#include <sys/types.h>

#include "checkpoint/base/result.h"
#include "checkpoint/kernel/features.h"
#include "checkpoint/kernel/regs.h"
#include "core-x86.pb.h"

namespace crshim::arch {

void regs_to_image(const kernel::Regs& regs, user_x86_regs_entry& out);
kernel::Regs regs_from_image(const user_x86_regs_entry& in);

// Splits the thread's XSAVE buffer into the legacy fxsave fields and the per-component xsave fields,
// using the CPU's standard-format offsets.
Status fpu_to_image(const kernel::XState& xs, const kernel::XsaveLayout& layout, user_x86_fpregs_entry& out);
// Writes the image's FPU state into `xs`, an XSAVE buffer read from the thread being restored (it
// gives the size and the software-reserved bytes). Components this CPU lacks are an error.
Status fpu_from_image(const user_x86_fpregs_entry& in, const kernel::XsaveLayout& layout, kernel::XState& xs);

// The three GDT TLS slots (PTRACE_GET/SET_THREAD_AREA); 64-bit programs rarely use them.
Status tls_to_image(pid_t tid, thread_info_x86& out);
Status tls_from_image(pid_t tid, const thread_info_x86& in);

}  // namespace crshim::arch
