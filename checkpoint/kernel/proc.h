// Parsers for /proc/<pid>/... files (pure, fed with the file text) and thin readers that feed them.
#pragma once

#include <sys/types.h>

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "checkpoint/base/result.h"

namespace crshim::proc {

// Every parser takes `source`, the name used in errors ("/proc/42/maps"); errors then name the line:
// op "parse", object "/proc/42/maps line 7", message saying what is wrong.

// ---- maps ----------------------------------------------------------------------------------------

struct Vma {
  uint64_t start = 0;
  uint64_t end = 0;
  int prot = 0;          // PROT_READ | PROT_WRITE | PROT_EXEC
  bool shared = false;   // 's' (MAP_SHARED) vs 'p'
  uint64_t pgoff = 0;    // file offset in bytes, as printed
  uint32_t dev_major = 0;
  uint32_t dev_minor = 0;
  uint64_t inode = 0;
  std::string path;      // "" for plain anonymous memory; " (deleted)" stripped, see `deleted`
  bool deleted = false;

  uint64_t size() const { return end - start; }
  // "[heap]", "[stack]", "[vdso]", "[anon:name]"...: kernel-named areas, not files.
  bool is_special() const { return !path.empty() && path.front() == '['; }
  bool is_vdso() const { return path == "[vdso]"; }
  bool is_vvar() const { return path == "[vvar]"; }
  bool is_vvar_vclock() const { return path == "[vvar_vclock]"; }
  bool is_vsyscall() const { return path == "[vsyscall]"; }
  bool is_heap() const { return path == "[heap]"; }
  bool is_stack() const { return path == "[stack]"; }
  // The name given with PR_SET_VMA_ANON_NAME ("[anon:NAME]"), or nullopt.
  std::optional<std::string_view> anon_name() const;
};

Result<std::vector<Vma>> parse_maps(std::string_view text, std::string_view source = "maps");
// One line without its newline; `source` is already the full object name (with the line number).
Result<Vma> parse_maps_line(std::string_view line, std::string_view source = "maps");

// ---- smaps ---------------------------------------------------------------------------------------

// One bit per two-letter VmFlags code, in the kernel's print order.
enum class VmFlag : uint8_t {
  rd, wr, ex, sh, mr, mw, me, ms, gd, pf, lf, dw, lo, io, sr, rr, dc, de, ac, nr, ht, sf, nl, ar, wf,
  dd, sd, mm, hg, nh, mg, um, uw, ui, ss, bt, sl, mt, count_
};

constexpr uint64_t vm_bit(VmFlag f) { return uint64_t(1) << unsigned(f); }
// Two-letter code of a flag ("hg"); "??" out of range.
const char* vm_flag_name(VmFlag f);
// Parses one code; nullopt for codes we do not know (newer kernels add some).
std::optional<VmFlag> vm_flag_from_name(std::string_view code);

struct SmapsEntry {
  Vma vma;
  uint64_t vm_flags = 0;                     // VmFlag bits
  std::vector<std::string> unknown_flags;    // codes not in VmFlag, kept for logs
  uint64_t size_kb = 0;
  uint64_t rss_kb = 0;
  uint64_t anonymous_kb = 0;
  uint64_t swap_kb = 0;

  bool has(VmFlag f) const { return (vm_flags & vm_bit(f)) != 0; }
};

Result<std::vector<SmapsEntry>> parse_smaps(std::string_view text, std::string_view source = "smaps");
// Parses the value of a "VmFlags:" line ("rd wr mr mw me ac hg").
Result<uint64_t> parse_vm_flags(std::string_view value, std::string_view source,
                                std::vector<std::string>* unknown = nullptr);

// A VmFlags bit that restore re-applies with madvise(advice).
struct MadviseFlag {
  VmFlag flag;
  int advice;          // MADV_*
  const char* name;    // "MADV_HUGEPAGE"
};
// hg, nh, dd, dc, wf, mg with their MADV_* values.
std::span<const MadviseFlag> madvise_flags();
// The madvise advices restore must issue for a VMA with these VmFlags bits, in table order.
std::vector<int> madvise_for(uint64_t vm_flags);

// ---- stat ----------------------------------------------------------------------------------------

// /proc/PID/stat fields 1-52 (proc(5) numbering in comments).
struct Stat {
  int pid = 0;                 // 1
  std::string comm;            // 2, without the parentheses
  char state = 0;              // 3
  int ppid = 0;                // 4
  int pgrp = 0;                // 5
  int session = 0;             // 6
  int tty_nr = 0;              // 7
  int tpgid = 0;               // 8
  uint32_t flags = 0;          // 9
  uint64_t minflt = 0;         // 10
  uint64_t cminflt = 0;        // 11
  uint64_t majflt = 0;         // 12
  uint64_t cmajflt = 0;        // 13
  uint64_t utime = 0;          // 14
  uint64_t stime = 0;          // 15
  int64_t cutime = 0;          // 16
  int64_t cstime = 0;          // 17
  int64_t priority = 0;        // 18
  int64_t nice = 0;            // 19
  int64_t num_threads = 0;     // 20
  int64_t itrealvalue = 0;     // 21
  uint64_t starttime = 0;      // 22
  uint64_t vsize = 0;          // 23
  int64_t rss = 0;             // 24
  uint64_t rsslim = 0;         // 25
  uint64_t start_code = 0;     // 26
  uint64_t end_code = 0;       // 27
  uint64_t start_stack = 0;    // 28
  uint64_t kstkesp = 0;        // 29
  uint64_t kstkeip = 0;        // 30
  uint64_t signal = 0;         // 31
  uint64_t blocked = 0;        // 32
  uint64_t sigignore = 0;      // 33
  uint64_t sigcatch = 0;       // 34
  uint64_t wchan = 0;          // 35
  uint64_t nswap = 0;          // 36
  uint64_t cnswap = 0;         // 37
  int exit_signal = 0;         // 38
  int processor = 0;           // 39
  uint32_t rt_priority = 0;    // 40
  uint32_t policy = 0;         // 41
  uint64_t delayacct_blkio_ticks = 0;  // 42
  uint64_t guest_time = 0;     // 43
  int64_t cguest_time = 0;     // 44
  uint64_t start_data = 0;     // 45
  uint64_t end_data = 0;       // 46
  uint64_t start_brk = 0;      // 47
  uint64_t arg_start = 0;      // 48
  uint64_t arg_end = 0;        // 49
  uint64_t env_start = 0;      // 50
  uint64_t env_end = 0;        // 51
  int exit_code = 0;           // 52
};

Result<Stat> parse_stat(std::string_view text, std::string_view source = "stat");

// ---- status --------------------------------------------------------------------------------------

// /proc/PID/status (or /proc/PID/task/TID/status).
struct TaskStatus {
  std::string name;             // escapes (\n, \\) decoded
  std::optional<uint32_t> umask;  // absent on old kernels
  char state = 0;
  int tgid = 0;
  int ngid = 0;
  int pid = 0;
  int ppid = 0;
  int tracer_pid = 0;
  std::array<uint32_t, 4> uid{};  // real, effective, saved, fs
  std::array<uint32_t, 4> gid{};
  int fdsize = 0;
  std::vector<uint32_t> groups;
  std::vector<int> nstgid, nspid, nspgid, nssid;  // outermost namespace first
  int threads = 0;
  uint64_t sigq_queued = 0;
  uint64_t sigq_limit = 0;
  uint64_t sigpnd = 0, shdpnd = 0, sigblk = 0, sigign = 0, sigcgt = 0;
  uint64_t cap_inh = 0, cap_prm = 0, cap_eff = 0, cap_bnd = 0, cap_amb = 0;
  int no_new_privs = 0;
  int seccomp = 0;              // SECCOMP_MODE_*
  int seccomp_filters = 0;
  std::string speculation_store_bypass;
  std::string cpus_allowed_list;
};

Result<TaskStatus> parse_status(std::string_view text, std::string_view source = "status");

// ---- limits --------------------------------------------------------------------------------------

constexpr size_t kRlimitCount = 16;  // RLIMIT_CPU .. RLIMIT_RTTIME

struct Rlimit {
  uint64_t cur = 0;  // RLIM_INFINITY for "unlimited"
  uint64_t max = 0;
};

// Indexed by RLIMIT_* value.
using Limits = std::array<Rlimit, kRlimitCount>;

// The line name for RLIMIT_* index i ("Max cpu time"), or nullptr out of range.
const char* rlimit_line_name(size_t i);
Result<Limits> parse_limits(std::string_view text, std::string_view source = "limits");

// ---- auxv ----------------------------------------------------------------------------------------

struct AuxvEntry {
  uint64_t type = 0;   // AT_*
  uint64_t value = 0;
};

// The entries before AT_NULL (AT_NULL itself is not returned).
Result<std::vector<AuxvEntry>> parse_auxv(std::string_view bytes, std::string_view source = "auxv");

// ---- mountinfo -----------------------------------------------------------------------------------

struct MountInfo {
  int mnt_id = 0;
  int parent_id = 0;
  uint32_t major = 0;
  uint32_t minor = 0;
  std::string root;          // octal escapes (\040) decoded in every string field
  std::string mount_point;
  std::string options;       // per-mount options: "rw,relatime"
  std::vector<std::string> optional_fields;  // raw: "shared:1", "master:2", ...
  int shared = 0;            // peer group id, 0 if not shared
  int master = 0;            // master peer group, 0 if not a slave
  int propagate_from = 0;
  bool unbindable = false;
  std::string fstype;        // "ext4", "fuse.sshfs"
  std::string source;
  std::string super_options;
};

Result<std::vector<MountInfo>> parse_mountinfo(std::string_view text,
                                               std::string_view source = "mountinfo");
// Decodes the kernel's \ooo escapes; a backslash not followed by three octal digits stays as is.
std::string decode_octal_escapes(std::string_view s);

// ---- fdinfo --------------------------------------------------------------------------------------

struct FdInfo {
  uint64_t pos = 0;
  uint32_t flags = 0;          // O_* (printed in octal)
  int mnt_id = 0;
  std::optional<uint64_t> ino;
  std::vector<std::string> extra;  // every other line, verbatim, in order
};

Result<FdInfo> parse_fdinfo(std::string_view text, std::string_view source = "fdinfo");
// Whether `info` is a userfaultfd's in asynchronous write-protect mode (its "API:\t<api>:<features>:<ioctls>"
// line has UFFD_FEATURE_WP_ASYNC): crshim's write tracking (mem/write_tracking.h), never a file of the task.
bool is_write_tracking_uffd(const FdInfo& info);

struct EpollTarget {
  int tfd = 0;
  uint32_t events = 0;
  uint64_t data = 0;
  uint64_t pos = 0;
  uint64_t ino = 0;
  uint32_t sdev = 0;           // kernel dev_t encoding (major << 20 | minor)
};
struct EventfdInfo {
  uint64_t count = 0;
  std::optional<uint64_t> id;
  std::optional<bool> semaphore;
};
struct InotifyWatch {
  int wd = 0;
  uint64_t ino = 0;
  uint32_t sdev = 0;
  uint32_t mask = 0;
  uint32_t ignored_mask = 0;
  int fhandle_bytes = 0;
  int fhandle_type = 0;
  std::string f_handle;        // hex, as printed
};
struct TimerfdInfo {
  int clockid = 0;
  uint64_t ticks = 0;
  uint32_t settime_flags = 0;
  uint64_t value_sec = 0, value_nsec = 0;
  uint64_t interval_sec = 0, interval_nsec = 0;
};

// Typed views of FdInfo::extra. Each fails when the lines for that type are missing or malformed.
Result<std::vector<EpollTarget>> parse_epoll_targets(const FdInfo& info, std::string_view source = "fdinfo");
Result<EventfdInfo> parse_eventfd(const FdInfo& info, std::string_view source = "fdinfo");
Result<uint64_t> parse_signalfd_sigmask(const FdInfo& info, std::string_view source = "fdinfo");
Result<std::vector<InotifyWatch>> parse_inotify(const FdInfo& info, std::string_view source = "fdinfo");
Result<TimerfdInfo> parse_timerfd(const FdInfo& info, std::string_view source = "fdinfo");

// ---- timers --------------------------------------------------------------------------------------

// One POSIX timer as /proc/PID/timers lists it.
struct PosixTimer {
  int id = 0;
  int signo = 0;
  uint64_t sival = 0;     // sigev_value, printed in hex
  int notify = 0;         // SIGEV_SIGNAL / SIGEV_NONE / SIGEV_THREAD, plus SIGEV_THREAD_ID when "tid"
  int notify_pid = 0;     // the pid or tid the signal goes to
  int clock_id = 0;
};

Result<std::vector<PosixTimer>> parse_timers(std::string_view text, std::string_view source = "timers");

// ---- readers -------------------------------------------------------------------------------------

// "/proc/PID" or, when tid > 0, "/proc/PID/task/TID".
std::string proc_dir(pid_t pid, pid_t tid = 0);

Result<std::vector<Vma>> read_maps(pid_t pid);
Result<std::vector<SmapsEntry>> read_smaps(pid_t pid);
Result<Stat> read_stat(pid_t pid, pid_t tid = 0);
Result<TaskStatus> read_status(pid_t pid, pid_t tid = 0);
Result<Limits> read_limits(pid_t pid);
Result<std::vector<AuxvEntry>> read_auxv(pid_t pid);
Result<std::vector<MountInfo>> read_mountinfo(pid_t pid);
Result<FdInfo> read_fdinfo(pid_t pid, int fd);

// Thread ids from /proc/PID/task, sorted.
Result<std::vector<pid_t>> tasks(pid_t pid);
// Children of every thread (/proc/PID/task/*/children), sorted, without duplicates.
Result<std::vector<pid_t>> children(pid_t pid);
// Inode of /proc/PID/ns/NS ("net", "mnt", "pid_for_children", ...).
Result<uint64_t> ns_inode(pid_t pid, std::string_view ns);
Result<std::vector<PosixTimer>> read_timers(pid_t pid);

}  // namespace crshim::proc
