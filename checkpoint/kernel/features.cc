#include "checkpoint/kernel/features.h"

#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(__x86_64__)
#include <cpuid.h>
#endif

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "checkpoint/base/sys.h"
#include "checkpoint/base/unique_fd.h"
#include "checkpoint/kernel/pagemap_scan.h"
#include "checkpoint/kernel/proc.h"

namespace crshim::kernel {
namespace {

namespace scan = pagemap_scan;

// include/uapi/linux/userfaultfd.h, 6.7+.
constexpr uint64_t kUffdFeatureWpAsync = 1ull << 15;
constexpr int kUffdUserModeOnly = 1;

// include/uapi/linux/sched.h: struct clone_args up to set_tid_size (CLONE_ARGS_SIZE_VER1).
struct CloneArgs {
  uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid, set_tid_size;
};
static_assert(sizeof(CloneArgs) == 80);

// include/uapi/linux/ptrace.h.
struct RseqConfig {
  uint64_t rseq_abi_pointer;
  uint32_t rseq_abi_size;
  uint32_t signature;
  uint32_t flags;
  uint32_t pad;
};

constexpr int kCapSysAdmin = 21;
constexpr int kCapSysResource = 24;
constexpr int kCapCheckpointRestore = 40;

// The helper child's copy of this is read with process_vm_readv and overwritten through
// /proc/PID/mem: it sits in read-only memory, like the COW pages restore writes that way.
alignas(64) const char kMemProbe[64] = "crshim feature probe: original";
constexpr char kMemProbeNew[] = "written";

std::string errno_text(int err) { return std::string(std::strerror(err)) + " (" + errno_name(err) + ")"; }

void note(Features& f, Need need, std::string name, std::string text) {
  f.notes.push_back({need, std::move(name), std::move(text)});
}

// Everything that needs a live process: a forked child blocked in read() on a pipe.
void probe_with_child(Features& f) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) < 0) {
    note(f, Need::required, "helper", "cannot create a pipe for the probe child: " + errno_text(errno));
    return;
  }
  UniqueFd rd(p[0]), wr(p[1]);
  pid_t child = ::fork();
  if (child < 0) {
    note(f, Need::required, "helper", "cannot fork a probe child: " + errno_text(errno));
    return;
  }
  if (child == 0) {
    // Async-signal-safe only; ends when the parent closes the pipe or kills us.
    ::close(p[1]);
    char c;
    while (::read(p[0], &c, 1) < 0 && errno == EINTR) {
    }
    ::_exit(0);
  }

  if (::ptrace(PTRACE_SEIZE, child, nullptr, nullptr) == 0) {
    f.ptrace_seize = true;
    int st = 0;
    if (::ptrace(PTRACE_INTERRUPT, child, nullptr, nullptr) == 0 &&
        ::waitpid(child, &st, __WALL) == child && WIFSTOPPED(st)) {
      RseqConfig conf{};
      long r = ::ptrace(PTRACE_GET_RSEQ_CONFIGURATION, child, sizeof conf, &conf);
      if (r > 0) {
        f.ptrace_rseq_config = true;
        f.rseq_size = conf.rseq_abi_size;
        f.rseq_signature = conf.signature;
      } else {
        note(f, Need::required, "ptrace_rseq_config",
             "PTRACE_GET_RSEQ_CONFIGURATION failed (" + errno_text(errno) + "): rseq cannot be dumped");
      }
    } else {
      note(f, Need::required, "ptrace_interrupt", "PTRACE_INTERRUPT did not stop the child: " + errno_text(errno));
    }
  } else {
    note(f, Need::required, "ptrace_seize", "PTRACE_SEIZE failed: " + errno_text(errno));
  }

  UniqueFd pidfd(sys::pidfd_open(child));
  if (pidfd) {
    f.pidfd_open = true;
    UniqueFd stolen(sys::pidfd_getfd(pidfd.get(), p[0]));
    if (stolen) {
      f.pidfd_getfd = true;
    } else {
      note(f, Need::required, "pidfd_getfd", "pidfd_getfd failed: " + errno_text(errno) + ": fds cannot be dumped");
    }
  } else {
    note(f, Need::required, "pidfd_open", "pidfd_open failed: " + errno_text(errno));
    note(f, Need::required, "pidfd_getfd", "not probed: needs pidfd_open");
  }

  char buf[sizeof kMemProbe] = {};
  auto read_child = [&]() {
    struct iovec local = {buf, sizeof buf};
    struct iovec remote = {const_cast<char*>(kMemProbe), sizeof kMemProbe};
    return ::process_vm_readv(child, &local, 1, &remote, 1, 0) == ssize_t(sizeof buf);
  };
  if (read_child() && std::memcmp(buf, kMemProbe, sizeof buf) == 0) {
    f.process_vm_readv = true;
  } else {
    note(f, Need::required, "process_vm_readv", "process_vm_readv failed: " + errno_text(errno));
  }

  auto mem_path = proc::proc_dir(child) + "/mem";
  int memfd = ::open(mem_path.c_str(), O_RDWR | O_CLOEXEC);
  if (memfd >= 0) {
    UniqueFd mem(memfd);
    ssize_t n = ::pwrite(mem.get(), kMemProbeNew, sizeof kMemProbeNew, off_t(uintptr_t(kMemProbe)));
    int err = errno;
    if (n == ssize_t(sizeof kMemProbeNew) && (!f.process_vm_readv || (read_child() &&
                                                                      std::strcmp(buf, kMemProbeNew) == 0))) {
      f.proc_mem_write = true;
    } else {
      note(f, Need::required, "proc_mem_write",
           "writing read-only memory through " + mem_path + " failed: " + (n < 0 ? errno_text(err) : "short write"));
    }
  } else {
    note(f, Need::required, "proc_mem_write", "cannot open " + mem_path + " read-write: " + errno_text(errno));
  }

  ::kill(child, SIGKILL);
  while (::waitpid(child, nullptr, __WALL) < 0 && errno == EINTR) {
  }
}

void probe_clone3(Features& f) {
  // set_tid_size = 1 with set_tid = NULL is always EINVAL where set_tid exists, E2BIG where clone3
  // predates it (unknown trailing bytes), ENOSYS without clone3: no process is ever created.
  CloneArgs args{};
  args.set_tid_size = 1;
  long r = ::syscall(SYS_clone3, &args, sizeof args);
  int err = errno;
  if (r >= 0) {
    // Cannot happen with these arguments; if it does, we are in the child or own it.
    if (r == 0) ::_exit(0);
    ::waitpid(pid_t(r), nullptr, __WALL);
  }
  if (err == EINVAL) {
    f.clone3 = f.clone3_set_tid = true;
  } else if (err == E2BIG) {
    f.clone3 = true;
    note(f, Need::required, "clone3_set_tid", "clone3 has no set_tid (kernel older than 5.5): PIDs cannot be restored");
  } else {
    note(f, Need::required, "clone3", "clone3 is not available (" + errno_text(err) + "): PIDs cannot be restored");
  }
  f.ns_last_pid = ::access("/proc/sys/kernel/ns_last_pid", F_OK) == 0;
  if (!f.ns_last_pid) note(f, Need::optional, "ns_last_pid", "/proc/sys/kernel/ns_last_pid is missing");
}

void probe_pagemap(Features& f) {
  const size_t page = size_t(::sysconf(_SC_PAGESIZE));
  void* mem = ::mmap(nullptr, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) {
    note(f, Need::optional, "pagemap_scan", "not probed: mmap failed: " + errno_text(errno));
    return;
  }
  static_cast<volatile char*>(mem)[0] = 1;
  int fd = ::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    note(f, Need::optional, "pagemap_scan", "cannot open /proc/self/pagemap: " + errno_text(errno));
  } else {
    UniqueFd pm(fd);
    scan::PageRegion region{};
    scan::Arg arg{};
    arg.size = sizeof arg;
    arg.start = uintptr_t(mem);
    arg.end = uintptr_t(mem) + page;
    arg.vec = uintptr_t(&region);
    arg.vec_len = 1;
    arg.category_mask = scan::kPresent;
    arg.return_mask = scan::kPresent;
    long r = ::ioctl(pm.get(), scan::kIoctl, &arg);
    if (r == 1 && region.start == uintptr_t(mem) && (region.categories & scan::kPresent)) {
      f.pagemap_scan = true;
    } else {
      note(f, Need::optional, "pagemap_scan",
           "PAGEMAP_SCAN ioctl " + (r < 0 ? "failed: " + errno_text(errno) : "gave an unexpected answer") +
               ": memory is scanned by reading pagemap entries instead");
    }
    // Bit 55 of a freshly written page: soft-dirty, which only exists with CONFIG_MEM_SOFT_DIRTY.
    uint64_t entry = 0;
    if (::pread(pm.get(), &entry, sizeof entry, off_t(uintptr_t(mem) / page * sizeof entry)) ==
        ssize_t(sizeof entry))
      f.mem_soft_dirty = (entry >> 55) & 1;
    if (!f.mem_soft_dirty)
      note(f, Need::info, "mem_soft_dirty", "no CONFIG_MEM_SOFT_DIRTY (not needed: writes are tracked with PAGEMAP_SCAN)");
  }
  ::munmap(mem, page);
}

void probe_userfaultfd(Features& f) {
  long fd = ::syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
  if (fd < 0 && errno == EPERM) fd = ::syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | kUffdUserModeOnly);
  if (fd < 0) {
    note(f, Need::optional, "userfaultfd", "userfaultfd failed (" + errno_text(errno) + "): no lazy restore");
    note(f, Need::optional, "uffd_wp_async", "not probed: needs userfaultfd");
    return;
  }
  UniqueFd uffd{static_cast<int>(fd)};
  f.userfaultfd = true;
  struct uffdio_api api{};
  api.api = UFFD_API;
  // With no features requested the kernel still answers with every feature it supports.
  if (::ioctl(uffd.get(), UFFDIO_API, &api) == 0) {
    f.uffd_features = api.features;
    f.uffd_wp_async = (api.features & kUffdFeatureWpAsync) != 0;
  }
  if (!f.uffd_wp_async)
    note(f, Need::optional, "uffd_wp_async", "no UFFD_FEATURE_WP_ASYNC: no incremental (pre-)dumps");
}

void probe_vdso(Features& f, const std::vector<proc::Vma>& maps) {
  for (const auto& v : maps) {
    if (v.is_vdso()) {
      f.vdso.vdso = true;
      f.vdso.vdso_size = v.size();
    } else if (v.is_vvar()) {
      f.vdso.vvar = true;
      f.vdso.vvar_size = v.size();
    } else if (v.is_vvar_vclock()) {
      f.vdso.vvar_vclock = true;
      f.vdso.vvar_vclock_size = v.size();
    }
  }
  if (!f.vdso.vdso)
    note(f, Need::required, "vdso", "no [vdso] mapping: remote syscalls need its syscall instruction");
  if (!f.vdso.vvar) note(f, Need::info, "vvar", "no [vvar] mapping");
  if (!f.vdso.vvar_vclock) note(f, Need::info, "vvar_vclock", "no [vvar_vclock] mapping (kernel older than 6.13?)");
}

void probe_caps(Features& f, uint64_t cap_eff) {
  f.cap_eff = cap_eff;
  auto has = [&](int cap) { return ((cap_eff >> cap) & 1) != 0; };
  f.cap_checkpoint_restore = has(kCapCheckpointRestore);
  f.cap_sys_admin = has(kCapSysAdmin);
  f.cap_sys_resource = has(kCapSysResource);
  if (!f.cap_checkpoint_restore && !f.cap_sys_admin)
    note(f, Need::required, "cap_checkpoint_restore",
         "neither CAP_CHECKPOINT_RESTORE nor CAP_SYS_ADMIN: PIDs and exe links cannot be restored");
  else if (!f.cap_sys_admin)
    note(f, Need::optional, "cap_sys_admin", "no CAP_SYS_ADMIN: seccomp filters and namespaces cannot be handled");
  if (!f.cap_sys_resource)
    note(f, Need::info, "cap_sys_resource",
         "no CAP_SYS_RESOURCE: limits are read from /proc and restored only below the hard limits");
}

void probe_prctl(Features& f) {
  unsigned int size = 0;
  if (::prctl(PR_SET_MM, PR_SET_MM_MAP_SIZE, &size, 0, 0) == 0 && size > 0) {
    f.pr_set_mm_map = true;
    f.pr_set_mm_map_size = size;
  } else {
    note(f, Need::required, "pr_set_mm_map",
         "prctl(PR_SET_MM_MAP) unavailable (" + errno_text(errno) + "; needs CONFIG_CHECKPOINT_RESTORE)");
  }
}

void parse_release(Features& f) {
  int n = std::sscanf(f.kernel_release.c_str(), "%d.%d.%d", &f.kernel_major, &f.kernel_minor, &f.kernel_patch);
  if (n < 2) f.kernel_major = f.kernel_minor = f.kernel_patch = 0;
}

const char* need_name(Need n) {
  switch (n) {
    case Need::required: return "required";
    case Need::optional: return "optional";
    case Need::info: return "info";
  }
  return "?";
}

std::string json_string(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char esc[8];
          std::snprintf(esc, sizeof esc, "\\u%04x", c);
          out += esc;
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

// Writes `"key": value` pairs with commas in between.
class JsonObject {
 public:
  explicit JsonObject(std::string& out, int indent) : out_(out), indent_(indent) { out_ += "{"; }
  void raw(std::string_view key, const std::string& value) {
    out_ += first_ ? "\n" : ",\n";
    first_ = false;
    out_.append(size_t(indent_ + 2), ' ');
    out_ += json_string(key) + ": " + value;
  }
  void add(std::string_view key, bool v) { raw(key, v ? "true" : "false"); }
  void add(std::string_view key, uint64_t v) { raw(key, std::to_string(v)); }
  void add(std::string_view key, int v) { raw(key, std::to_string(v)); }
  void add(std::string_view key, uint32_t v) { raw(key, std::to_string(v)); }
  void add(std::string_view key, std::string_view v) { raw(key, json_string(v)); }
  void close() {
    out_ += "\n";
    out_.append(size_t(indent_), ' ');
    out_ += "}";
  }

 private:
  std::string& out_;
  int indent_;
  bool first_ = true;
};

std::string hex(uint64_t v) {
  char b[24];
  std::snprintf(b, sizeof b, "0x%llx", static_cast<unsigned long long>(v));
  return b;
}

}  // namespace

XsaveLayout xsave_layout() {
  XsaveLayout x;
#if defined(__x86_64__)
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return x;
  constexpr unsigned kOsXsave = 1u << 27;
  if (!(c & kOsXsave) || __get_cpuid_max(0, nullptr) < 0xD) return x;
  uint32_t lo, hi;
  asm volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  x.supported = true;
  x.xcr0 = (uint64_t(hi) << 32) | lo;
  __cpuid_count(0xD, 0, a, b, c, d);
  x.size = b;
  x.max_size = c;
  __cpuid_count(0xD, 1, a, b, c, d);
  x.xsaveopt = a & 1;
  x.xsavec = (a >> 1) & 1;
  x.xsaves = (a >> 3) & 1;
  for (uint32_t i = 2; i < 64; ++i) {
    if (!((x.xcr0 >> i) & 1)) continue;
    __cpuid_count(0xD, i, a, b, c, d);
    x.components.push_back({i, b, a});
  }
#endif
  return x;
}

bool Features::usable() const {
  for (const auto& n : notes)
    if (n.need == Need::required) return false;
  return true;
}

std::string Features::missing_text() const {
  std::string out;
  for (const auto& n : notes) out += std::string(need_name(n.need)) + ": " + n.name + ": " + n.text + "\n";
  return out;
}

Result<Features> probe_features() {
  Features f;
  struct utsname u;
  if (::uname(&u) < 0) return fail(sys_error("uname"));
  f.kernel_release = u.release;
  parse_release(f);

  auto status = CR_TRY(proc::read_status(::getpid()));
  auto maps = CR_TRY(proc::read_maps(::getpid()));

  probe_with_child(f);
  probe_clone3(f);
  probe_prctl(f);
  probe_caps(f, status.cap_eff);
  probe_vdso(f, maps);
  probe_pagemap(f);
  probe_userfaultfd(f);
  f.time_ns = ::access("/proc/self/ns/time", F_OK) == 0;
  if (!f.time_ns) note(f, Need::optional, "time_ns", "no time namespaces: monotonic clocks jump on restore");
  f.xsave = xsave_layout();
  if (!f.xsave.supported) note(f, Need::info, "xsave", "no XSAVE: only the legacy FPU state is saved");

  std::stable_sort(f.notes.begin(), f.notes.end(),
                   [](const FeatureNote& a, const FeatureNote& b) { return int(a.need) < int(b.need); });
  return f;
}

std::string render_check(const Features& f) {
  std::string out;
  for (const auto& n : f.notes) {
    const char* tag = n.need == Need::required ? "Error" : n.need == Need::optional ? "Warn" : "Info";
    out += std::string(tag) + ": " + n.name + ": " + n.text + "\n";
  }
  if (f.usable()) {
    out += "Looks good.\n";
  } else {
    size_t n = 0;
    for (const auto& note : f.notes) n += note.need == Need::required;
    out += "Error: " + std::to_string(n) + " required kernel feature" + (n == 1 ? " is" : "s are") +
           " missing: dump and restore cannot work here.\n";
  }
  return out;
}

std::string features_json(const Features& f) {
  std::string out;
  JsonObject o(out, 0);
  o.add("version", std::string_view(CRSHIM_VERSION));
  // runc's name for "this engine can checkpoint"; `usable` says whether this kernel lets it.
  o.add("org.opencontainers.runc.checkpoint.enabled", true);
  o.add("kernel_release", std::string_view(f.kernel_release));
  o.raw("kernel_version", "[" + std::to_string(f.kernel_major) + ", " + std::to_string(f.kernel_minor) + ", " +
                              std::to_string(f.kernel_patch) + "]");
  o.add("usable", f.usable());
  o.add("ptrace_seize", f.ptrace_seize);
  o.add("ptrace_rseq_config", f.ptrace_rseq_config);
  o.add("rseq_size", f.rseq_size);
  o.add("rseq_signature", std::string_view(hex(f.rseq_signature)));
  o.add("pidfd_open", f.pidfd_open);
  o.add("pidfd_getfd", f.pidfd_getfd);
  o.add("process_vm_readv", f.process_vm_readv);
  o.add("proc_mem_write", f.proc_mem_write);
  o.add("clone3", f.clone3);
  o.add("clone3_set_tid", f.clone3_set_tid);
  o.add("ns_last_pid", f.ns_last_pid);
  o.add("pagemap_scan", f.pagemap_scan);
  o.add("userfaultfd", f.userfaultfd);
  o.add("uffd_features", std::string_view(hex(f.uffd_features)));
  o.add("uffd_wp_async", f.uffd_wp_async);
  o.add("pr_set_mm_map", f.pr_set_mm_map);
  o.add("pr_set_mm_map_size", f.pr_set_mm_map_size);
  o.add("time_ns", f.time_ns);
  o.add("mem_soft_dirty", f.mem_soft_dirty);
  o.add("cap_eff", std::string_view(hex(f.cap_eff)));
  o.add("cap_checkpoint_restore", f.cap_checkpoint_restore);
  o.add("cap_sys_admin", f.cap_sys_admin);
  o.add("cap_sys_resource", f.cap_sys_resource);
  {
    std::string v;
    JsonObject vo(v, 2);
    vo.add("vdso", f.vdso.vdso);
    vo.add("vdso_size", f.vdso.vdso_size);
    vo.add("vvar", f.vdso.vvar);
    vo.add("vvar_size", f.vdso.vvar_size);
    vo.add("vvar_vclock", f.vdso.vvar_vclock);
    vo.add("vvar_vclock_size", f.vdso.vvar_vclock_size);
    vo.close();
    o.raw("vdso", v);
  }
  {
    std::string v;
    JsonObject xo(v, 2);
    xo.add("supported", f.xsave.supported);
    xo.add("xcr0", std::string_view(hex(f.xsave.xcr0)));
    xo.add("size", f.xsave.size);
    xo.add("max_size", f.xsave.max_size);
    xo.add("xsaveopt", f.xsave.xsaveopt);
    xo.add("xsavec", f.xsave.xsavec);
    xo.add("xsaves", f.xsave.xsaves);
    std::string comps = "[";
    for (size_t i = 0; i < f.xsave.components.size(); ++i) {
      const auto& c = f.xsave.components[i];
      comps += (i ? ", " : "") + std::string("{\"index\": ") + std::to_string(c.index) +
               ", \"offset\": " + std::to_string(c.offset) + ", \"size\": " + std::to_string(c.size) + "}";
    }
    xo.raw("components", comps + "]");
    xo.close();
    o.raw("xsave", v);
  }
  std::string notes = "[";
  for (size_t i = 0; i < f.notes.size(); ++i) {
    const auto& n = f.notes[i];
    notes += std::string(i ? ",\n    " : "\n    ") + "{\"need\": " + json_string(need_name(n.need)) +
             ", \"name\": " + json_string(n.name) + ", \"text\": " + json_string(n.text) + "}";
  }
  notes += f.notes.empty() ? "]" : "\n  ]";
  o.raw("missing", notes);
  o.close();
  return out + "\n";
}

}  // namespace crshim::kernel
