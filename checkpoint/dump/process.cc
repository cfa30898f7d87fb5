#include "checkpoint/dump/process.h"

#include <fcntl.h>
#include <linux/kcmp.h>
#include <linux/ptrace.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>

#include "checkpoint/arch/x86.h"
#include "checkpoint/base/sys.h"
#include "checkpoint/files/fds.h"
#include "checkpoint/image/catalog.h"
#include "checkpoint/image/image.h"
#include "checkpoint/kernel/proc.h"
#include "checkpoint/kernel/remote_syscall.h"
#include "checkpoint/mem/lazy.h"
#include "checkpoint/mem/lazy_remote.h"
#include "checkpoint/mem/pages.h"
#include "checkpoint/mem/shmem.h"
#include "checkpoint/mem/vmas.h"
#include "checkpoint/mem/write_tracking.h"
#include "core.pb.h"
#include "fs.pb.h"
#include "mm.pb.h"
#include "pagemap.pb.h"

namespace crshim::dumper {

namespace {

using kernel::RemoteSyscall;
using Clock = std::chrono::steady_clock;

uint64_t micros_since(Clock::time_point t) {
  return uint64_t(std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t).count());
}

constexpr int kSigMax = 64;
constexpr size_t kScratchSize = 4096;
constexpr int kAtVectorSize = 44;  // CRIU writes exactly this many auxv words on x86-64

std::string task_name(pid_t pid) { return "pid " + std::to_string(pid); }

template <class T>
Result<T> read_scratch(pid_t pid, uint64_t addr) {
  T value{};
  CR_OK(kernel::read_mem(pid, addr, std::span<uint8_t>(reinterpret_cast<uint8_t*>(&value), sizeof value)));
  return value;
}

// The kernel's struct sigaction as rt_sigaction(2) reads and writes it.
struct KernelSigaction {
  uint64_t handler;
  uint64_t flags;
  uint64_t restorer;
  uint64_t mask;
};

// `touched`: signals caught or ignored (SigCgt | SigIgn of /proc/PID/status). Only those, and SIGCHLD
// (whose SA_NOCLDWAIT/SA_NOCLDSTOP act under SIG_DFL too), are read with a remote call each; the rest
// are at SIG_DFL, where flags, mask and restorer have no effect, and are written as all zero.
Status dump_sigactions(RemoteSyscall& rs, pid_t pid, uint64_t scratch, uint64_t touched, task_core_entry& tc) {
  for (int sig = 1; sig <= kSigMax; sig++) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    if (sig != SIGCHLD && !(touched >> (sig - 1) & 1)) {
      sa_entry* sa = tc.add_sigactions();
      sa->set_sigaction(0);
      sa->set_flags(0);
      sa->set_restorer(0);
      sa->set_mask(0);
      sa->set_compat_sigaction(false);
      continue;
    }
    CR_OK(rs.syscall(SYS_rt_sigaction, sig, 0, long(scratch), 8));
    auto ksa = CR_TRY(read_scratch<KernelSigaction>(pid, scratch));
    sa_entry* sa = tc.add_sigactions();
    sa->set_sigaction(ksa.handler);
    sa->set_flags(ksa.flags);
    sa->set_restorer(ksa.restorer);
    sa->set_mask(ksa.mask);
    sa->set_compat_sigaction(false);
  }
  return {};
}

Status dump_itimers(RemoteSyscall& rs, pid_t pid, uint64_t scratch, task_timers_entry& timers) {
  itimer_entry* slots[] = {timers.mutable_real(), timers.mutable_virt(), timers.mutable_prof()};
  for (int which = 0; which < 3; which++) {
    CR_OK(rs.syscall(SYS_getitimer, which, long(scratch)));
    auto it = CR_TRY(read_scratch<itimerval>(pid, scratch));
    slots[which]->set_isec(uint64_t(it.it_interval.tv_sec));
    slots[which]->set_iusec(uint64_t(it.it_interval.tv_usec));
    slots[which]->set_vsec(uint64_t(it.it_value.tv_sec));
    slots[which]->set_vusec(uint64_t(it.it_value.tv_usec));
  }
  return {};
}

void set_creds(const proc::TaskStatus& st, creds_entry& c) {
  c.set_uid(st.uid[0]);
  c.set_euid(st.uid[1]);
  c.set_suid(st.uid[2]);
  c.set_fsuid(st.uid[3]);
  c.set_gid(st.gid[0]);
  c.set_egid(st.gid[1]);
  c.set_sgid(st.gid[2]);
  c.set_fsgid(st.gid[3]);
  auto caps = [](google::protobuf::RepeatedField<uint32_t>* f, uint64_t v) {
    f->Add(uint32_t(v));
    f->Add(uint32_t(v >> 32));
  };
  caps(c.mutable_cap_inh(), st.cap_inh);
  caps(c.mutable_cap_prm(), st.cap_prm);
  caps(c.mutable_cap_eff(), st.cap_eff);
  caps(c.mutable_cap_bnd(), st.cap_bnd);
  caps(c.mutable_cap_amb(), st.cap_amb);
  for (uint32_t g : st.groups) c.add_groups(g);
  c.set_no_new_privs(uint32_t(st.no_new_privs));
  c.set_secbits(0);
}

// Pending signals of one queue (PTRACE_PEEKSIGINFO; `shared` = the process-wide queue).
Status dump_pending(pid_t tid, bool shared, signal_queue_entry& out) {
  for (uint64_t off = 0;; off++) {
    ptrace_peeksiginfo_args args{off, shared ? uint32_t(PTRACE_PEEKSIGINFO_SHARED) : 0u, 1};
    siginfo_t si;
    long n = ::ptrace(__ptrace_request(PTRACE_PEEKSIGINFO), tid, &args, &si);
    if (n < 0) return fail(sys_error("ptrace(PTRACE_PEEKSIGINFO)", "thread " + std::to_string(tid)));
    if (n == 0) break;
    out.add_signals()->set_siginfo(std::string(reinterpret_cast<const char*>(&si), sizeof si));
    if (off > 100000) break;
  }
  return {};
}

// The seccomp filter chain of a thread, appended to the dump-wide list (identical chains shared).
Result<uint32_t> dump_seccomp_chain(pid_t tid, seccomp_entry& all) {
  std::vector<std::string> chain;  // newest first
  for (unsigned long i = 0;; i++) {
    long n = ::ptrace(__ptrace_request(PTRACE_SECCOMP_GET_FILTER), tid, i, nullptr);
    if (n < 0) {
      if (errno == ENOENT) break;
      return fail(sys_error("ptrace(PTRACE_SECCOMP_GET_FILTER)", "thread " + std::to_string(tid))
                      .with_hint("dumping seccomp filters needs CAP_SYS_ADMIN and an unconfined dumper"));
    }
    std::string prog(size_t(n) * 8, '\0');
    if (::ptrace(__ptrace_request(PTRACE_SECCOMP_GET_FILTER), tid, i, prog.data()) < 0)
      return fail(sys_error("ptrace(PTRACE_SECCOMP_GET_FILTER)", "thread " + std::to_string(tid)));
    chain.push_back(std::move(prog));
    if (i > 4096) break;
  }
  if (chain.empty()) return fail(make_error(Errc::internal, "dump", "thread " + std::to_string(tid), "seccomp mode without filters"));
  // Oldest first into the list, each pointing at the one attached before it.
  int prev = -1;
  for (auto it = chain.rbegin(); it != chain.rend(); ++it) {
    int found = -1;
    for (int j = 0; j < all.seccomp_filters_size(); j++) {
      const auto& f = all.seccomp_filters(j);
      if (f.filter() == *it && (f.has_prev() ? int(f.prev()) : -1) == prev) found = j;
    }
    if (found < 0) {
      auto* f = all.add_seccomp_filters();
      f->set_filter(*it);
      if (prev >= 0) f->set_prev(uint32_t(prev));
      found = all.seccomp_filters_size() - 1;
    }
    prev = found;
  }
  return uint32_t(prev);
}

struct ThreadExtras {
  uint64_t clear_tid_addr = 0;
  stack_t sas{};
  int pdeath_sig = 0;
  uint32_t secbits = 0;
};

// State only the thread itself can report, by remote syscalls.
Result<ThreadExtras> thread_extras(RemoteSyscall& rs, pid_t pid, uint64_t scratch) {
  ThreadExtras x;
  CR_OK(rs.syscall(SYS_prctl, PR_GET_TID_ADDRESS, long(scratch)));
  x.clear_tid_addr = CR_TRY(read_scratch<uint64_t>(pid, scratch));
  CR_OK(rs.syscall(SYS_sigaltstack, 0, long(scratch)));
  x.sas = CR_TRY(read_scratch<stack_t>(pid, scratch));
  CR_OK(rs.syscall(SYS_prctl, PR_GET_PDEATHSIG, long(scratch)));
  x.pdeath_sig = CR_TRY(read_scratch<int>(pid, scratch));
  x.secbits = uint32_t(CR_TRY(rs.syscall(SYS_prctl, PR_GET_SECUREBITS)));
  return x;
}

Status dump_thread(kernel::Tracee& t, pid_t pid, bool leader, const ThreadExtras& x, DumpContext& ctx,
                   core_entry& core) {
  pid_t tid = t.tid();
  std::string who = "thread " + std::to_string(tid);
  core.set_mtype(core_entry::X86_64);
  thread_info_x86* ti = core.mutable_thread_info();
  kernel::Regs regs = t.saved_regs();
  kernel::fixup_syscall_restart(regs, kernel::RestartMode::image);
  arch::regs_to_image(regs, *ti->mutable_gpregs());
  ti->set_clear_tid_addr(x.clear_tid_addr);
  auto xs = CR_TRY(kernel::get_xstate(tid));
  CR_OK(arch::fpu_to_image(xs, ctx.xsave, *ti->mutable_fpregs()));
  CR_OK(arch::tls_to_image(tid, *ti));

  thread_core_entry* tcore = core.mutable_thread_core();
  long head = 0;
  size_t len = 0;
  if (::syscall(SYS_get_robust_list, tid, &head, &len) < 0) return fail(sys_error("get_robust_list", who));
  tcore->set_futex_rla(uint64_t(head));
  tcore->set_futex_rla_len(uint32_t(len));
  errno = 0;
  int nice = ::getpriority(PRIO_PROCESS, id_t(tid));
  if (errno) return fail(sys_error("getpriority", who));
  tcore->set_sched_nice(nice);
  int policy = ::sched_getscheduler(tid);
  if (policy < 0) return fail(sys_error("sched_getscheduler", who));
  tcore->set_sched_policy(uint32_t(policy));
  sched_param sp{};
  if (::sched_getparam(tid, &sp) < 0) return fail(sys_error("sched_getparam", who));
  tcore->set_sched_prio(uint32_t(sp.sched_priority));
  if (!leader) tcore->set_blk_sigset(t.saved_sigmask());
  thread_sas_entry* sas = tcore->mutable_sas();
  sas->set_ss_sp(reinterpret_cast<uint64_t>(x.sas.ss_sp));
  sas->set_ss_size(x.sas.ss_size);
  sas->set_ss_flags(uint32_t(x.sas.ss_flags));
  if (x.pdeath_sig) tcore->set_pdeath_sig(uint32_t(x.pdeath_sig));
  CR_OK(dump_pending(tid, false, *tcore->mutable_signals_p()));

  auto status = CR_TRY(proc::read_status(pid, tid));
  set_creds(status, *tcore->mutable_creds());
  if (ctx.userns) ctx.userns->creds_inside(*tcore->mutable_creds());
  tcore->mutable_creds()->set_secbits(x.secbits);
  if (status.seccomp == 2) {
    tcore->set_seccomp_mode(filter);
    tcore->set_seccomp_filter(CR_TRY(dump_seccomp_chain(tid, ctx.seccomp)));
  } else if (status.seccomp == 1) {
    tcore->set_seccomp_mode(strict);
  }
  auto comm = CR_TRY(sys::read_file(proc::proc_dir(pid, tid) + "/comm"));
  tcore->set_comm(std::string(sys::trim(comm)));

  ptrace_rseq_configuration rc{};
  if (::ptrace(__ptrace_request(PTRACE_GET_RSEQ_CONFIGURATION), tid, sizeof rc, &rc) < 0)
    return fail(sys_error("ptrace(PTRACE_GET_RSEQ_CONFIGURATION)", who));
  if (rc.rseq_abi_pointer) {
    rseq_entry* r = tcore->mutable_rseq_entry();
    r->set_rseq_abi_pointer(rc.rseq_abi_pointer);
    r->set_rseq_abi_size(rc.rseq_abi_size);
    r->set_signature(rc.signature);
  }
  return {};
}

Status write_one(DumpContext& ctx, const std::string& name, image::Type type, const google::protobuf::Message& msg) {
  return image::write_single(ctx.session.images_dir, name, image::kind(type), msg);
}

Result<uint32_t> read_u32_file(const std::string& path, int base) {
  auto text = CR_TRY(sys::read_file(path));
  int64_t v;
  if (!sys::parse_i64(sys::trim(text), v, base))
    return fail(make_error(Errc::invalid_argument, "parse", path, "not a number"));
  return uint32_t(v);
}

Status dump_posix_timers(RemoteSyscall& rs, pid_t pid, uint64_t scratch, const std::vector<proc::PosixTimer>& timers,
                         task_timers_entry& out) {
  for (const auto& t : timers) {
    CR_OK(rs.syscall(SYS_timer_gettime, t.id, long(scratch)));
    auto its = CR_TRY(read_scratch<itimerspec>(pid, scratch));
    long overrun = CR_TRY(rs.syscall(SYS_timer_getoverrun, t.id));
    posix_timer_entry* e = out.add_posix();
    e->set_it_id(uint32_t(t.id));
    e->set_clock_id(uint32_t(t.clock_id));
    e->set_si_signo(uint32_t(t.signo));
    e->set_it_sigev_notify(uint32_t(t.notify));
    e->set_sival_ptr(t.sival);
    e->set_overrun(uint32_t(overrun));
    e->set_isec(uint64_t(its.it_interval.tv_sec));
    e->set_insec(uint64_t(its.it_interval.tv_nsec));
    e->set_vsec(uint64_t(its.it_value.tv_sec));
    e->set_vnsec(uint64_t(its.it_value.tv_nsec));
    if (t.notify & SIGEV_THREAD_ID) e->set_notify_thread_id(t.notify_pid);
  }
  return {};
}

// Private pages into pagemap-<vpid>/pages-<n>, then the shared anonymous objects not dumped yet.
// With write tracking that was armed before (`tracked`), the written-page bits are read (and reset, so
// the next dump counts from this one); when the parent images were dumped under the same arming,
// pages not written since are left to them. Changed pages in `lazy` (dump --lazy-pages) stay in the
// task: the pagemap marks them LAZY and ctx.lazy_source serves them after the dump.
Status dump_memory(pid_t pid, const mem::AddressSpace& as, DumpContext& ctx, bool tracked, uint64_t tracking_inode,
                   const std::vector<mem::Range>& lazy = {}) {
  auto pagemap_fd = CR_TRY(sys::open(proc::proc_dir(pid) + "/pagemap", O_RDONLY));
  // Pages go to the images dir or to a page server (ctx.page_sink); PARENT entries only where the
  // parent images hold this process's pagemap.
  mem::ImagePageSink local(ctx.session.images_dir, ctx.next_pages_id, ctx.req.compress);
  mem::PageSink& sink = ctx.page_sink ? *ctx.page_sink : local;
  bool parent_has = CR_TRY(sink.open(mem::PageSink::Owner::process, ctx.vpid(pid)));
  bool incremental = tracked && parent_has && ctx.parent && ctx.parent->tracking(ctx.vpid(pid)) == tracking_inode;
  std::vector<mem::Range> covered;
  if (incremental) covered = CR_TRY(ctx.parent->covered(ctx.vpid(pid)));
  std::vector<mem::Range> pages, in_parent;
  for (const auto& r : as.private_ranges) {
    auto found = CR_TRY(mem::private_pages(pagemap_fd.get(), r.start, r.end));
    ctx.result.pages_scanned += r.pages();
    if (tracked) {
      auto written = CR_TRY(mem::written_pages(pagemap_fd.get(), r.start, r.end));
      if (incremental && written) {
        auto unchanged = mem::intersect(mem::subtract(found, *written), covered);
        found = mem::subtract(found, unchanged);
        in_parent.insert(in_parent.end(), unchanged.begin(), unchanged.end());
      }
    }
    pages.insert(pages.end(), found.begin(), found.end());
  }
  std::vector<mem::Range> left_lazy = mem::intersect(pages, lazy);
  if (!left_lazy.empty()) pages = mem::subtract(pages, left_lazy);
  std::vector<mem::PageEntry> elsewhere;
  for (const auto& r : in_parent) elsewhere.push_back({r.start, r.pages(), mem::kPeParent});
  for (const auto& r : left_lazy) elsewhere.push_back({r.start, r.pages(), mem::kPeLazy});
  std::sort(elsewhere.begin(), elsewhere.end(), [](const auto& a, const auto& b) { return a.vaddr < b.vaddr; });
  mem::PageDumpStats ps;
  CR_OK(mem::dump_pages(pid, pages, sink, ps, elsewhere, ctx.session.progress));
  for (const auto& r : in_parent) ctx.result.pages_skipped_parent += r.pages();
  for (const auto& r : left_lazy) ctx.result.pages_lazy += r.pages();
  CR_OK(sink.close());
  ctx.result.pages_written += ps.pages_written;
  if (ctx.lazy_source) ctx.lazy_source->add(ctx.vpid(pid), pid, std::move(left_lazy));
  // Shared anonymous memory: each object once, whichever task maps it first.
  for (const auto& v : as.shared_anon) {
    auto& seen = ctx.files.seen()["shmem"];
    if (!seen.emplace(v.inode, 1).second) continue;
    CR_OK_IN(mem::dump_shmem(pid, v, ctx.session.images_dir, ctx.next_pages_id++, ctx.result.pages_written),
             "shared memory of pid " + std::to_string(pid));
  }
  LOG_INFO(ctx.session.log, "Dumped %llu pages of %d", (unsigned long long)ps.pages_written, pid);
  return {};
}

// pagemap-<to>.img as a copy of pagemap-<from>.img: both processes map one mm, whose pages were
// written once (CRIU-format readers expect a pagemap per live process).
Status copy_pagemap(DumpContext& ctx, uint32_t from, uint32_t to) {
  if (ctx.page_sink)
    return fail(make_error(Errc::unsupported, "dump", "pid " + std::to_string(to),
                           "processes sharing one address space cannot be dumped to a page server yet"));
  int dir = ctx.session.images_dir;
  auto in = CR_TRY(image::Reader::open(dir, image::pagemap_file(from), image::kind(image::Type::pagemap)));
  auto out = CR_TRY(image::Writer::create(dir, image::pagemap_file(to), image::kind(image::Type::pagemap)));
  pagemap_head head;
  if (!CR_TRY(in.read(head)))
    return fail(make_error(Errc::internal, "dump", image::pagemap_file(from), "no pagemap head"));
  CR_OK(out.write(head));
  for (;;) {
    pagemap_entry pe;
    if (!CR_TRY(in.read(pe))) break;
    CR_OK(out.write(pe));
  }
  return out.close();
}

}  // namespace

uint32_t IdMap::by_kcmp(int kcmp_type, pid_t pid) {
  // Kept in kcmp order (the kernel orders the obfuscated object pointers), so a lookup costs log(n)
  // calls. Once kcmp gives no order (an error), a {0, 0} entry in front marks the list as unordered
  // and lookups compare against every entry.
  auto& seen = kcmp_[kcmp_type];
  bool ordered = seen.empty() || seen.front().first != 0;
  size_t lo = ordered ? 0 : 1, hi = seen.size();
  while (ordered && lo < hi) {
    size_t mid = (lo + hi) / 2;
    long r = ::syscall(SYS_kcmp, pid, seen[mid].first, kcmp_type, 0, 0);
    if (r == 0) return seen[mid].second;
    if (r == 1) hi = mid;
    else if (r == 2) lo = mid + 1;
    else ordered = false;
  }
  if (ordered) {
    uint32_t id = next_++;
    seen.insert(seen.begin() + long(lo), {pid, id});
    return id;
  }
  for (const auto& [other, id] : seen)
    if (other != 0 && ::syscall(SYS_kcmp, pid, other, kcmp_type, 0, 0) == 0) return id;
  if (seen.empty() || seen.front().first != 0) seen.insert(seen.begin(), {0, 0});
  uint32_t id = next_++;
  seen.push_back({pid, id});
  return id;
}

Result<task_kobj_ids_entry> task_ids(pid_t pid, IdMap& ids) {
  task_kobj_ids_entry e;
  e.set_vm_id(ids.by_kcmp(KCMP_VM, pid));
  e.set_files_id(ids.by_kcmp(KCMP_FILES, pid));
  e.set_fs_id(ids.by_kcmp(KCMP_FS, pid));
  e.set_sighand_id(ids.by_kcmp(KCMP_SIGHAND, pid));
  struct NsField {
    const char* name;
    void (task_kobj_ids_entry::*set)(uint32_t);
  };
  const NsField fields[] = {
      {"pid", &task_kobj_ids_entry::set_pid_ns_id},       {"net", &task_kobj_ids_entry::set_net_ns_id},
      {"ipc", &task_kobj_ids_entry::set_ipc_ns_id},       {"uts", &task_kobj_ids_entry::set_uts_ns_id},
      {"mnt", &task_kobj_ids_entry::set_mnt_ns_id},       {"user", &task_kobj_ids_entry::set_user_ns_id},
      {"cgroup", &task_kobj_ids_entry::set_cgroup_ns_id}, {"time", &task_kobj_ids_entry::set_time_ns_id},
  };
  for (const auto& f : fields) {
    auto ino = proc::ns_inode(pid, f.name);
    if (!ino) return fail(ino.error());
    (e.*f.set)(ids.get(std::string("ns:") + f.name, *ino));
  }
  return e;
}

// pid, ppid, pgid and sid as the dumped pid namespace sees them (0: outside of it).
Status fill_pstree_ids(pid_t pid, const proc::Stat& stat, DumpContext& ctx, pstree_entry& pstree) {
  auto status = CR_TRY(proc::read_status(pid));
  size_t level = ctx.pid_levels ? ctx.pid_levels - 1 : 0;
  auto at_root = [&](const std::vector<int>& levels, int fallback) {
    return levels.size() > level ? levels[level] : fallback;
  };
  pstree.set_pid(ctx.vpid(pid));
  pstree.set_ppid(ctx.vpid(stat.ppid));
  pstree.set_pgid(uint32_t(at_root(status.nspgid, stat.pgrp)));
  pstree.set_sid(uint32_t(at_root(status.nssid, stat.session)));
  if (auto it = ctx.nested_pids.find(pid); it != ctx.nested_pids.end())
    for (uint32_t p : it->second) pstree.add_crshim_ns_pid(p);
  return {};
}

Status dump_zombie(pid_t pid, int exit_code, DumpContext& ctx, pstree_entry& pstree) {
  auto stat = CR_TRY(proc::read_stat(pid));
  CR_OK(fill_pstree_ids(pid, stat, ctx, pstree));
  pstree.add_threads(ctx.vpid(pid));
  for (uint32_t p : pstree.crshim_ns_pid()) pstree.add_crshim_ns_threads(p);
  core_entry core;
  core.set_mtype(core_entry::X86_64);
  task_core_entry* tc = core.mutable_tc();
  tc->set_task_state(2);  // dead: CRIU writes zombies this way
  tc->set_exit_code(uint32_t(exit_code));
  tc->set_personality(0);
  tc->set_flags(stat.flags);
  tc->set_blk_sigset(0);
  tc->set_comm(stat.comm.substr(0, 15));
  return write_one(ctx, image::core_file(ctx.vpid(pid)), image::Type::core, core);
}

Status disarm_write_tracking(kernel::FrozenProcess& frozen, int target_fd) {
  uint64_t insn = CR_TRY(kernel::find_syscall_insn(frozen.pid()));
  auto rs = CR_TRY(kernel::PtraceSyscall::begin(frozen.leader(), insn));
  CR_OK(rs.syscall(SYS_close, target_fd));
  return rs.restore();
}

Status dump_process(kernel::FrozenProcess& frozen, DumpContext& ctx, pstree_entry& pstree) {
  pid_t pid = frozen.pid();
  Logger& log = ctx.session.log;
  LOG_INFO(log, "Dumping process %d (%zu threads)", pid, frozen.threads().size());

  // Everything that reads the address space comes before the scratch mapping changes it.
  auto stat = CR_TRY(proc::read_stat(pid));
  auto status = CR_TRY(proc::read_status(pid));
  auto limits = CR_TRY(proc::read_limits(pid));
  auto auxv_text = CR_TRY(sys::read_file(proc::proc_dir(pid) + "/auxv"));
  auto smaps = CR_TRY(proc::read_smaps(pid));
  auto posix_timers = CR_TRY(proc::read_timers(pid));

  mm_entry mm;
  auto as = CR_TRY(mem::collect_address_space(pid, smaps, ctx.files));
  // Objects shared with a process dumped before (CLONE_VM, CLONE_FILES): their contents are written once.
  auto ids = CR_TRY(task_ids(pid, ctx.ids));
  auto& vm_owner = ctx.files.seen()["mm owner"];
  auto shared_vm = vm_owner.find(ids.vm_id());
  bool own_vm = shared_vm == vm_owner.end();
  if (own_vm) vm_owner.emplace(ids.vm_id(), ctx.vpid(pid));
  bool own_files = ctx.files.seen()["fd table owner"].emplace(ids.files_id(), ctx.vpid(pid)).second;

  // Remote syscalls: process-wide values from the leader, the rest from each thread.
  uint64_t insn = CR_TRY(kernel::find_syscall_insn(pid));
  auto rs = CR_TRY(kernel::PtraceSyscall::begin(frozen.leader(), insn));
  uint64_t scratch = CR_TRY(kernel::remote_mmap(rs, kScratchSize));
  core_entry leader_core;
  task_core_entry* tc = leader_core.mutable_tc();
  uint64_t brk = uint64_t(CR_TRY(rs.syscall(SYS_brk, 0)));
  CR_OK(dump_sigactions(rs, pid, scratch, status.sigcgt | status.sigign, *tc));
  CR_OK(dump_itimers(rs, pid, scratch, *tc->mutable_timers()));
  CR_OK(dump_posix_timers(rs, pid, scratch, posix_timers, *tc->mutable_timers()));
  int dumpable = int(CR_TRY(rs.syscall(SYS_prctl, PR_GET_DUMPABLE)));
  bool thp_disabled = CR_TRY(rs.syscall(SYS_prctl, PR_GET_THP_DISABLE)) != 0;
  CR_OK(rs.syscall(SYS_prctl, PR_GET_CHILD_SUBREAPER, long(scratch)));
  bool subreaper = CR_TRY(read_scratch<int>(pid, scratch)) != 0;

  std::vector<ThreadExtras> extras;
  for (auto& t : frozen.threads()) {
    if (t.tid() == pid) {
      extras.push_back(CR_TRY(thread_extras(rs, pid, scratch)));
      continue;
    }
    auto trs = CR_TRY(kernel::PtraceSyscall::begin(t, insn));
    extras.push_back(CR_TRY(thread_extras(trs, pid, scratch)));
    CR_OK(trs.restore());
  }
  // Write tracking for incremental dumps: kept on from an earlier dump, armed now, or given up.
  std::optional<mem::WriteTracking> tracking;
  bool tracked = false;  // armed before this dump: its written-page bits mean something
  UniqueFd tracking_hold;
  if (own_vm) {
    tracking = mem::find_write_tracking(pid);
    tracked = tracking.has_value();
    if (tracking && !ctx.req.track_mem) {
      // Held here until the memory is read; the task itself no longer has it.
      UniqueFd pidfd(sys::pidfd_open(pid));
      tracking_hold = UniqueFd(pidfd ? sys::pidfd_getfd(pidfd.get(), tracking->target_fd) : -1);
      if (!tracking_hold) tracked = false;
      CR_OK(rs.syscall(SYS_close, tracking->target_fd));
    } else if (!tracking && ctx.req.track_mem) {
      kernel::Remote remote(rs, pid, scratch, kScratchSize);
      tracking = CR_TRY(mem::arm_write_tracking(remote, as.private_ranges));
      ctx.armed_now[pid] = tracking->target_fd;
    }
    if (tracking && ctx.req.track_mem) ctx.tracking[ctx.vpid(pid)] = tracking->inode;
  }
  CR_OK(kernel::remote_munmap(rs, scratch, kScratchSize));
  CR_OK(rs.restore());
  if (ctx.req.pre_dump) {
    // A pre-dump takes memory only.
    if (!own_vm) return {};
    auto t0 = Clock::now();
    CR_OK(dump_memory(pid, as, ctx, tracked, tracking ? tracking->inode : 0));
    ctx.result.memdump_us += micros_since(t0);
    return {};
  }

  // Threads: leader first, as pstree lists them.
  CR_OK(fill_pstree_ids(pid, stat, ctx, pstree));
  std::vector<size_t> order;
  for (size_t i = 0; i < frozen.threads().size(); i++)
    if (frozen.threads()[i].tid() == pid) order.insert(order.begin(), i);
    else order.push_back(i);
  for (size_t i : order) {
    auto& t = frozen.threads()[i];
    bool leader = t.tid() == pid;
    core_entry core;
    if (leader) core = leader_core;
    CR_OK_IN(dump_thread(t, pid, leader, extras[i], ctx, core), "thread " + std::to_string(t.tid()));
    pstree.add_threads(ctx.vpid(t.tid()));
    if (auto it = ctx.nested_pids.find(t.tid()); it != ctx.nested_pids.end())
      for (uint32_t p : it->second) pstree.add_crshim_ns_threads(p);
    if (leader) {
      tc = core.mutable_tc();
      tc->set_task_state(1);
      tc->set_exit_code(0);
      tc->set_personality(CR_TRY(read_u32_file(proc::proc_dir(pid) + "/personality", 16)));
      tc->set_flags(stat.flags);
      tc->set_blk_sigset(t.saved_sigmask());
      tc->set_comm(stat.comm.substr(0, 15));
      auto* rl = tc->mutable_rlimits();
      for (const auto& l : limits) {
        auto* e = rl->add_rlimits();
        e->set_cur(l.cur);
        e->set_max(l.max);
      }
      CR_OK(dump_pending(pid, true, *tc->mutable_signals_s()));
      if (auto v = read_u32_file(proc::proc_dir(pid) + "/loginuid", 10)) tc->set_loginuid(*v);
      if (auto v = read_u32_file(proc::proc_dir(pid) + "/oom_score_adj", 10)) tc->set_oom_score_adj(int32_t(*v));
      tc->set_child_subreaper(subreaper);
    }
    if (auto cg = ctx.cg_sets.find(pid); cg != ctx.cg_sets.end()) core.mutable_thread_core()->set_cg_set(cg->second);
    CR_OK(write_one(ctx, image::core_file(ctx.vpid(t.tid())), image::Type::core, core));
  }

  // Memory.
  mm.set_mm_start_code(stat.start_code);
  mm.set_mm_end_code(stat.end_code);
  mm.set_mm_start_data(stat.start_data);
  mm.set_mm_end_data(stat.end_data);
  mm.set_mm_start_stack(stat.start_stack);
  mm.set_mm_start_brk(stat.start_brk);
  mm.set_mm_brk(brk);
  mm.set_mm_arg_start(stat.arg_start);
  mm.set_mm_arg_end(stat.arg_end);
  mm.set_mm_env_start(stat.env_start);
  mm.set_mm_env_end(stat.env_end);
  auto exe = CR_TRY(sys::read_link(proc::proc_dir(pid) + "/exe"));
  struct stat exe_st;
  if (::stat((proc::proc_dir(pid) + "/exe").c_str(), &exe_st) < 0) return fail(sys_error("stat", "exe of " + task_name(pid)));
  mm.set_exe_file_id(ctx.files.table().add_reg(exe, O_RDONLY, 0, exe_st, -1, true));
  size_t words = auxv_text.size() / 8;
  for (size_t i = 0; i < size_t(kAtVectorSize); i++) {
    uint64_t w = 0;
    if (i < words) memcpy(&w, auxv_text.data() + i * 8, 8);
    mm.add_mm_saved_auxv(w);
  }
  for (auto& v : as.vmas) *mm.add_vmas() = std::move(v);
  mm.set_dumpable(dumpable);
  mm.set_thp_disabled(thp_disabled);
  CR_OK(write_one(ctx, image::mm_file(ctx.vpid(pid)), image::Type::mm, mm));

  auto t0 = Clock::now();
  if (!own_vm) {
    // The same mm as an earlier process: its pagemap names the same pages image (read once).
    CR_OK_IN(copy_pagemap(ctx, shared_vm->second, ctx.vpid(pid)), "memory of pid " + std::to_string(pid));
    if (ctx.lazy_source) ctx.lazy_source->share(shared_vm->second, ctx.vpid(pid));
    LOG_INFO(log, "Process %d shares the address space of %u", pid, shared_vm->second);
  } else {
    // The argv and environ pages are written even so: a lazy restore puts them in place first.
    std::vector<mem::Range> lazy;
    if (ctx.lazy_source) lazy = mem::subtract(mem::lazy_areas(mm), mem::remote_read_pages(mm));
    CR_OK(dump_memory(pid, as, ctx, tracked, tracking ? tracking->inode : 0, lazy));
  }
  ctx.result.memdump_us += micros_since(t0);

  // Files, cwd, root.
  auto fds = CR_TRY(files::dump_fds(pid, ctx.vpid(pid), ctx.files));
  if (!fds.empty() && own_files) {
    auto w = CR_TRY(image::Writer::create(ctx.session.images_dir, image::fdinfo_file(ids.files_id()),
                                          image::kind(image::Type::fdinfo)));
    for (const auto& fe : fds) CR_OK(w.write(fe));
    CR_OK(w.close());
  }
  fs_entry fs;
  for (auto [name, setter] : {std::pair{"cwd", &fs_entry::set_cwd_id}, std::pair{"root", &fs_entry::set_root_id}}) {
    std::string link = proc::proc_dir(pid) + "/" + name;
    auto path = CR_TRY(sys::read_link(link));
    struct stat st;
    if (::stat(link.c_str(), &st) < 0) return fail(sys_error("stat", link));
    (fs.*setter)(ctx.files.table().add_reg(path, O_RDONLY, 0, st, -1, true));
  }
  if (status.umask) fs.set_umask(*status.umask);
  CR_OK(write_one(ctx, image::fs_file(ctx.vpid(pid)), image::Type::fs, fs));
  CR_OK(write_one(ctx, image::ids_file(ctx.vpid(pid)), image::Type::ids, ids));
  return {};
}

}  // namespace crshim::dumper
