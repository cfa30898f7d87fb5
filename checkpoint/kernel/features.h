// Kernel feature probe: what this kernel, CPU and our privileges offer checkpoint/restore (`crshim check`).
#pragma once

#include <linux/userfaultfd.h>

#include <cstdint>
#include <string>
#include <vector>

#include "checkpoint/base/result.h"

namespace crshim::kernel {

// One XSAVE state component as CPUID leaf 0xD sub-leaf `index` reports it (standard format).
struct XsaveComponent {
  uint32_t index = 0;
  uint32_t offset = 0;  // CPUID(0xD, i).EBX
  uint32_t size = 0;    // CPUID(0xD, i).EAX
  bool operator==(const XsaveComponent&) const = default;
};

// The xstate layout NT_X86_XSTATE uses; an image is only restorable onto the same layout.
struct XsaveLayout {
  bool supported = false;   // CPU has XSAVE and the OS enabled it (OSXSAVE)
  uint64_t xcr0 = 0;        // user state components enabled (xgetbv(0))
  uint32_t size = 0;        // CPUID(0xD, 0).EBX: standard-format size for what XCR0 enables
  uint32_t max_size = 0;    // CPUID(0xD, 0).ECX: size for everything the CPU supports
  bool xsaveopt = false;
  bool xsavec = false;
  bool xsaves = false;
  // Components 2..63 enabled in xcr0; x87 (0) and SSE (1) live at fixed places in the legacy area.
  std::vector<XsaveComponent> components;
  bool operator==(const XsaveLayout&) const = default;
};

// Reads CPUID leaf 0xD and XCR0 of this CPU; supported = false elsewhere than x86-64.
XsaveLayout xsave_layout();

// The vDSO trio as /proc/self/maps shows it.
struct VdsoLayout {
  bool vdso = false;
  bool vvar = false;
  bool vvar_vclock = false;
  uint64_t vdso_size = 0;
  uint64_t vvar_size = 0;
  uint64_t vvar_vclock_size = 0;
};

enum class Need {
  required,  // dump or restore cannot work without it
  optional,  // some feature or speed-up is lost
  info,      // reported, nothing depends on it
};

// One missing item, for `crshim check` and logs.
struct FeatureNote {
  Need need = Need::info;
  std::string name;  // short id: "pidfd_getfd"
  std::string text;  // what is missing and why it matters
};

// UFFD_FEATURE_* a lazy restore's daemon needs to keep its view of each address space right.
inline constexpr uint64_t kLazyUffdFeatures =
    UFFD_FEATURE_EVENT_FORK | UFFD_FEATURE_EVENT_REMAP | UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_EVENT_UNMAP;

struct Features {
  std::string kernel_release;  // uname -r
  int kernel_major = 0, kernel_minor = 0, kernel_patch = 0;

  bool ptrace_seize = false;
  bool ptrace_rseq_config = false;  // PTRACE_GET_RSEQ_CONFIGURATION
  uint32_t rseq_size = 0;           // as seen on a forked child (glibc's registration)
  uint32_t rseq_signature = 0;
  bool pidfd_open = false;
  bool pidfd_getfd = false;
  bool process_vm_readv = false;
  bool proc_mem_write = false;      // /proc/PID/mem writes, also into read-only private pages
  bool clone3 = false;
  bool clone3_set_tid = false;
  bool ns_last_pid = false;
  bool pagemap_scan = false;        // PAGEMAP_SCAN ioctl on /proc/PID/pagemap
  bool userfaultfd = false;
  uint64_t uffd_features = 0;       // UFFDIO_API answer
  bool uffd_wp_async = false;
  bool pr_set_mm_map = false;
  uint32_t pr_set_mm_map_size = 0;  // sizeof(struct prctl_mm_map) the kernel expects
  bool time_ns = false;
  bool mem_soft_dirty = false;      // informational: we track writes with PAGEMAP_SCAN instead

  uint64_t cap_eff = 0;
  bool cap_checkpoint_restore = false;
  bool cap_sys_admin = false;
  bool cap_sys_resource = false;    // missing is not fatal: limits come from /proc, not prlimit

  VdsoLayout vdso;
  XsaveLayout xsave;

  std::vector<FeatureNote> notes;   // one per missing item, required ones first

  // Nothing required is missing.
  bool usable() const;
  // What the optional paths need: written-page tracking for pre-dumps (mem_dirty_track), the
  // userfaultfd events a lazy restore's daemon follows (uffd-noncoop), pidfd_getfd (pidfd_store).
  bool write_tracking() const { return uffd_wp_async && pagemap_scan; }
  bool lazy_restore() const { return userfaultfd && (uffd_features & kLazyUffdFeatures) == kLazyUffdFeatures; }
  bool pidfd_store() const { return pidfd_open && pidfd_getfd; }
  // The notes, one "required|optional|info: name: text" line each; "" when nothing is missing.
  std::string missing_text() const;
};

// Probes everything; leaves nothing behind (the forked helper child is killed and reaped, probe fds
// and mappings are closed). Fails only when the basics (uname, /proc/self) cannot be read.
Result<Features> probe_features();

// CRIU-like `check` output: a line per missing item, then "Looks good." when nothing required is missing,
// or an error summary line otherwise.
std::string render_check(const Features& f);

// Every probed item as a JSON object (hand-written, no dependencies).
std::string features_json(const Features& f);

}  // namespace crshim::kernel
