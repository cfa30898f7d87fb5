// linux.seccomp against the checkpointed filters: the bundle's profile is built with libseccomp and
// both are run, as classic BPF, over every x86_64 syscall (i386 too when the profile lists it), with
// argument values around each rule's conditions. Programs are compared by behaviour, not bytes:
// runc, crun and libseccomp versions emit different code for the same profile.
#pragma once

#include <linux/filter.h>

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "checkpoint/base/result.h"
#include "seccomp.pb.h"

namespace crshim::oci {

// One entry of linux.seccomp.syscalls[].args.
struct SeccompArg {
  uint32_t index = 0;  // 0..5
  uint64_t value = 0, value_two = 0;
  std::string op;  // SCMP_CMP_EQ, ...
};

// One entry of linux.seccomp.syscalls.
struct SeccompRule {
  std::vector<std::string> names;
  std::string action;               // SCMP_ACT_*
  std::optional<uint32_t> errno_ret;  // errnoRet
  std::vector<SeccompArg> args;
};

// linux.seccomp, the parts that decide what a syscall gets.
struct SeccompProfile {
  std::string default_action;
  std::optional<uint32_t> default_errno_ret;  // defaultErrnoRet
  std::vector<std::string> architectures;     // SCMP_ARCH_*
  std::vector<SeccompRule> syscalls;
};

// linux.seccomp of config.json text; nullopt when the config has none.
Result<std::optional<SeccompProfile>> parse_seccomp_profile(std::string_view config_text,
                                                            const std::string& origin = "config.json");

// The filter the profile asks for, built and exported by libseccomp (as runc builds it).
Result<std::vector<sock_filter>> build_seccomp_filter(const SeccompProfile& profile);

// The input a seccomp program sees (struct seccomp_data).
struct SeccompData {
  int32_t nr = 0;
  uint32_t arch = 0;
  uint64_t instruction_pointer = 0;
  uint64_t args[6] = {};
};

// Checks a program as the kernel does before running it: size, jump targets inside, known opcodes,
// scratch memory indices, a return at the end. `what` names it in errors.
Status validate_seccomp_program(std::span<const sock_filter> prog, const std::string& what);
// Runs a program (validated first) on `data`; its return value.
Result<uint32_t> run_seccomp_program(std::span<const sock_filter> prog, const SeccompData& data,
                                     const std::string& what = "seccomp filter");

// A thread's filters, newest first (the order the kernel walks them).
using SeccompChain = std::vector<std::vector<sock_filter>>;

// The chain that starts at filter `head` of seccomp.img (a thread core's seccomp_filter).
Result<SeccompChain> image_seccomp_chain(const seccomp_entry& image, uint32_t head);

// What a chain returns for `data`: the most restrictive action of its filters, ties going to the
// newest filter (its data, e.g. the errno, wins).
Result<uint32_t> run_seccomp_chain(const SeccompChain& chain, const SeccompData& data);

// "ERRNO(77)", "ALLOW", "KILL_PROCESS", ...
std::string seccomp_action_text(uint32_t ret);

// Refuses when `chain` (the image) and `bundle` (built from `profile`) give some syscall (x86_64
// numbers 0..511, and i386 ones when the profile lists SCMP_ARCH_X86) a different action or errno;
// the error names the first such syscall and both actions. x32 is not compared.
Status compare_seccomp(const SeccompProfile& profile, std::span<const sock_filter> bundle, const SeccompChain& chain);

// The restore check: linux.seccomp of BUNDLE/config.json must behave like the checkpointed init's
// filter chain, filter `head` of `image`. No profile in the config: nothing to compare (the presence
// check is oci::check_security's).
Status check_seccomp_matches(const std::string& bundle_dir, const seccomp_entry& image, uint32_t head);

}  // namespace crshim::oci
