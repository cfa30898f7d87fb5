#include "checkpoint/restore/task.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <linux/filter.h>
#include <linux/ptrace.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <map>
#include <thread>

#include "checkpoint/arch/x86.h"
#include "checkpoint/base/fault.h"
#include "checkpoint/base/sys.h"
#include "checkpoint/files/kinds.h"
#include "checkpoint/files/locks.h"
#include "checkpoint/files/reg_ghost.h"
#include "checkpoint/image/catalog.h"
#include "checkpoint/kernel/proc.h"
#include "checkpoint/kernel/remote.h"
#include "checkpoint/kernel/remote_syscall.h"
#include "checkpoint/mem/pages.h"
#include "checkpoint/mem/parent_pages.h"
#include "checkpoint/mem/vmas.h"
#include "checkpoint/ns/namespaces.h"

namespace crshim::restorer {

namespace {

using kernel::PtraceSyscall;
using kernel::RemoteSyscall;

// TRACECLONE/TRACEFORK: threads and children we create by injected clone3 are attached at once.
constexpr unsigned kTraceOptions = PTRACE_O_TRACECLONE | PTRACE_O_TRACEFORK | PTRACE_O_EXITKILL;
constexpr uint64_t kTrampolineSize = 64 * 1024;  // `syscall; int3` at the start, scratch space after
constexpr uint64_t kScratchOffset = 4096;

std::string task_name(pid_t pid) { return "pid " + std::to_string(pid); }

// The kernel's struct prctl_mm_map with the auxv pointer as a plain integer (it points into the target).
struct MmMap {
  uint64_t start_code, end_code, start_data, end_data, start_brk, brk, start_stack;
  uint64_t arg_start, arg_end, env_start, env_end, auxv;
  uint32_t auxv_size, exe_fd;
};
static_assert(sizeof(MmMap) == 104);

struct KernelSigaction {
  uint64_t handler, flags, restorer, mask;
};

using kernel::Remote;

bool overlaps(uint64_t a0, uint64_t a1, uint64_t b0, uint64_t b1) { return a0 < b1 && b0 < a1; }

// An address range free both now (crshim's inherited layout) and in the image's layout.
Result<uint64_t> find_free_range(const std::vector<proc::Vma>& now, const mm_entry& mm, uint64_t size,
                                 uint64_t avoid = 0) {
  for (uint64_t cand = 0x100000000000ull; cand < 0x7f0000000000ull; cand += 0x8000000000ull) {
    if (avoid && overlaps(cand, cand + size, avoid, avoid + kTrampolineSize)) continue;
    bool busy = false;
    for (const auto& v : now) busy |= overlaps(cand, cand + size, v.start, v.end);
    for (const auto& v : mm.vmas()) busy |= overlaps(cand, cand + size, v.start(), v.end());
    if (!busy) return cand;
  }
  return fail(make_error(Errc::internal, "restore", "address space", "no free range for the restore trampoline"));
}

// Moves the inherited [vvar], [vvar_vclock] and [vdso] to where the image had them.
Status move_vdso(Remote& r, const std::vector<proc::Vma>& now, const mm_entry& mm, uint64_t temp) {
  const proc::Vma* vdso = nullptr;
  std::vector<const proc::Vma*> trio;
  for (const auto& v : now) {
    if (v.is_vdso()) vdso = &v;
    if (v.is_vdso() || v.is_vvar() || v.is_vvar_vclock()) trio.push_back(&v);
  }
  const vma_entry* img_vdso = nullptr;
  uint64_t img_vvar_start = UINT64_MAX, img_vvar_end = 0, now_vvar_start = UINT64_MAX, now_vvar_end = 0;
  for (const auto& v : mm.vmas()) {
    if (v.status() & mem::kVmaVdso) img_vdso = &v;
    if (v.status() & mem::kVmaVvar) {
      img_vvar_start = std::min(img_vvar_start, v.start());
      img_vvar_end = std::max(img_vvar_end, v.end());
    }
  }
  for (const auto* v : trio)
    if (!v->is_vdso()) {
      now_vvar_start = std::min(now_vvar_start, v->start);
      now_vvar_end = std::max(now_vvar_end, v->end);
    }
  if (!img_vdso) return {};  // a task without a vDSO (rare, e.g. vdso=0): just drop ours
  if (!vdso || vdso->size() != img_vdso->end() - img_vdso->start())
    return fail(make_error(Errc::incompatible, "restore", "vDSO", "the vDSO size differs from the image's")
                    .with_hint("restore on the kernel the dump was made on"));
  int64_t delta = int64_t(img_vdso->start()) - int64_t(vdso->start);
  if (img_vvar_end && (now_vvar_end - now_vvar_start != img_vvar_end - img_vvar_start ||
                       int64_t(img_vvar_start) - int64_t(now_vvar_start) != delta))
    return fail(make_error(Errc::incompatible, "restore", "vDSO", "the [vvar]/[vdso] layout differs from the image's")
                    .with_hint("restore on the kernel the dump was made on"));
  if (delta == 0) return {};
  uint64_t base = now_vvar_start == UINT64_MAX ? vdso->start : std::min(now_vvar_start, vdso->start);
  uint64_t top = std::max(vdso->end, now_vvar_end);
  if (!overlaps(base, top, uint64_t(int64_t(base) + delta), uint64_t(int64_t(top) + delta))) {
    // Old and new places apart (the usual case): straight there, everything else is unmapped.
    for (const auto* v : trio)
      CR_OK(r.call(SYS_mremap, long(v->start), long(v->size()), long(v->size()), MREMAP_MAYMOVE | MREMAP_FIXED,
                   long(uint64_t(int64_t(v->start) + delta))));
    return {};
  }
  // Through a temporary spot: mremap refuses overlapping old and new ranges.
  for (const auto* v : trio)
    CR_OK(r.call(SYS_mremap, long(v->start), long(v->size()), long(v->size()), MREMAP_MAYMOVE | MREMAP_FIXED,
                 long(temp + (v->start - base))));
  for (const auto* v : trio)
    CR_OK(r.call(SYS_mremap, long(temp + (v->start - base)), long(v->size()), long(v->size()),
                 MREMAP_MAYMOVE | MREMAP_FIXED, long(uint64_t(int64_t(v->start) + delta))));
  return {};
}

struct FdPusher {
  Remote& r;
  int lender_in_target;  // TaskOptions::lender_fd, moved
  int peer;              // TaskOptions::lender_peer
  // Copies crshim's fd `local` into the target; returns the target's fd number (close-on-exec).
  Result<int> push(int local) {
    if (peer < 0) return int(CR_TRY(r.call(SYS_pidfd_getfd, lender_in_target, local, 0)));
    CR_OK(sys::send_with_fd(peer, "f", local, "fd lender socket"));
    struct {
      msghdr msg;
      iovec iov;
      char byte;
      alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
    } m{};
    // Pointers inside are the target's: the scratch area's address is known once it is reserved.
    uint64_t at = CR_TRY(r.put(&m, sizeof m));
    m.iov.iov_base = reinterpret_cast<void*>(at + offsetof(decltype(m), byte));
    m.iov.iov_len = 1;
    m.msg.msg_iov = reinterpret_cast<iovec*>(at + offsetof(decltype(m), iov));
    m.msg.msg_iovlen = 1;
    m.msg.msg_control = reinterpret_cast<void*>(at + offsetof(decltype(m), control));
    m.msg.msg_controllen = sizeof m.control;
    CR_TRY(r.put(&m, sizeof m));
    CR_OK(r.call(SYS_recvmsg, lender_in_target, long(at), MSG_CMSG_CLOEXEC));
    CR_OK(r.get(at, &m, sizeof m));
    auto* c = reinterpret_cast<cmsghdr*>(m.control);
    if (m.msg.msg_controllen < CMSG_LEN(sizeof(int)) || c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
      return fail(make_error(Errc::internal, "recvmsg", "fd lender socket", "no fd arrived"));
    int fd;
    std::memcpy(&fd, CMSG_DATA(c), sizeof fd);
    return fd;
  }
};

// chdir(path), in the task's root. A task whose uid may not search some directory above its cwd (root
// of a user namespace mapped to an unprivileged uid, in a tree below a 0700 directory) gets there by
// fchdir to the directory opened here: that needs search permission on the directory itself only.
Status restore_cwd(Remote& r, FdPusher& push, const std::string& path) {
  uint64_t addr = CR_TRY(r.put_string(path));
  auto changed = r.call(SYS_chdir, long(addr));
  if (changed) return {};
  if (changed.error().err != EACCES) return fail(changed.error());
  auto dir = CR_TRY(sys::open(proc::proc_dir(r.pid()) + "/root" + path, O_PATH | O_DIRECTORY));
  int fd = CR_TRY(push.push(dir.get()));
  CR_OK(r.call(SYS_fchdir, fd));
  CR_OK(r.call(SYS_close, fd));
  return {};
}

Status map_vmas(Remote& r, FdPusher& push, const ProcessImage& img, const ImageSet& set, files::RestoreFiles& files,
                std::map<uint32_t, UniqueFd>& opened, std::vector<bool>& add_write, mem::SharedMemory& shmem) {
  const auto& vmas = img.mm.vmas();
  // Each mapped file is pushed into the task once for all its areas; closed at the end.
  std::map<uint32_t, int> pushed;
  auto close_pushed = [&]() -> Status {
    for (auto [id, tfd] : pushed) CR_OK(r.call(SYS_close, tfd));
    pushed.clear();
    return {};
  };
  // Private anonymous areas that follow each other with the same flags are mapped by one mmap, read
  // and write, and those meant otherwise mprotect()ed: one call per area instead of one or two.
  // Areas not meant writable and larger than this keep their own mmap (no commit charge for them).
  constexpr uint64_t kBatchUnwritableMax = 1 << 20;
  constexpr long kRunProt = PROT_READ | PROT_WRITE;
  auto map_prot = [&](int i) { return vmas[i].prot() | (add_write[size_t(i)] ? PROT_WRITE : 0); };
  auto map_flags = [&](int i) {
    return long(vmas[i].flags() & (MAP_SHARED | MAP_PRIVATE | MAP_ANONYMOUS | MAP_GROWSDOWN | MAP_NORESERVE)) |
           MAP_FIXED_NOREPLACE;
  };
  auto batchable = [&](int i) {
    const vma_entry& v = vmas[i];
    return (v.status() & mem::kVmaRegular) && (v.status() & mem::kVmaAnonPrivate) &&
           !(v.status() & (mem::kVmaVdso | mem::kVmaVvar | mem::kVmaFilePrivate | mem::kVmaFileShared |
                           mem::kVmaAnonShared | mem::kVmaSysvipc | mem::kVmaMemfd)) &&
           !(map_flags(i) & MAP_GROWSDOWN) &&
           ((map_prot(i) & PROT_WRITE) || v.end() - v.start() <= kBatchUnwritableMax);
  };
  for (int i = 0; i < vmas.size(); i++) {
    if (batchable(i)) {
      int last = i;
      while (last + 1 < vmas.size() && batchable(last + 1) && vmas[last + 1].start() == vmas[last].end() &&
             map_flags(last + 1) == map_flags(i))
        last++;
      if (last > i) {
        CR_OK(r.call(SYS_mmap, long(vmas[i].start()), long(vmas[last].end() - vmas[i].start()), kRunProt,
                     map_flags(i) | MAP_ANONYMOUS, -1, 0));
        for (int j = i; j <= last; j++) {
          long len = long(vmas[j].end() - vmas[j].start());
          if (long(map_prot(j)) != kRunProt) CR_OK(r.call(SYS_mprotect, long(vmas[j].start()), len, long(map_prot(j))));
          for (int advice : mem::madvices(vmas[j])) CR_OK(r.call(SYS_madvise, long(vmas[j].start()), len, advice));
        }
        i = last;
        continue;
      }
    }
    const vma_entry& v = vmas[i];
    if (!(v.status() & mem::kVmaRegular) || (v.status() & (mem::kVmaVdso | mem::kVmaVvar))) continue;
    uint32_t prot = v.prot() | (add_write[size_t(i)] ? PROT_WRITE : 0);
    long flags = long(v.flags() & (MAP_SHARED | MAP_PRIVATE | MAP_ANONYMOUS | MAP_GROWSDOWN | MAP_NORESERVE)) |
                 MAP_FIXED_NOREPLACE;
    long len = long(v.end() - v.start());
    if ((v.status() & mem::kVmaMemfd) && (v.status() & (mem::kVmaFilePrivate | mem::kVmaFileShared))) {
      // The restored memfd's own open file (fd_for): the inode any task's fd of it shares.
      int local = CR_TRY(files.fd_for(uint32_t(v.shmid())));
      int tfd = CR_TRY(push.push(local));
      CR_OK(r.call(SYS_mmap, long(v.start()), len, long(prot), flags & ~long(MAP_ANONYMOUS), tfd, long(v.pgoff())));
      CR_OK(r.call(SYS_close, tfd));
    } else if (v.status() & (mem::kVmaFilePrivate | mem::kVmaFileShared)) {
      uint32_t id = uint32_t(v.shmid());
      // Deleted files come back from their ghost (the same inode the fds get), others by path.
      if (!opened.count(id)) opened[id] = CR_TRY(files::open_mapped_file(set.files.at(id), v.fdflags(), files));
      if (!pushed.count(id)) pushed[id] = CR_TRY(push.push(opened[id].get()));
      CR_OK(r.call(SYS_mmap, long(v.start()), len, long(prot), flags & ~long(MAP_ANONYMOUS), pushed[id], long(v.pgoff())));
    } else if (v.status() & mem::kVmaAnonShared) {
      int local = CR_TRY(shmem.object_fd(v.shmid(), v.pgoff() + uint64_t(len)));
      int tfd = CR_TRY(push.push(local));
      CR_OK(r.call(SYS_mmap, long(v.start()), len, long(v.prot()), flags & ~long(MAP_ANONYMOUS), tfd, long(v.pgoff())));
      CR_OK(r.call(SYS_close, tfd));
    } else if (v.status() & mem::kVmaAnonPrivate) {
      CR_OK(r.call(SYS_mmap, long(v.start()), len, long(prot), flags | MAP_ANONYMOUS, -1, 0));
    } else if (v.status() & mem::kVmaSysvipc) {
      // The segment came back with the IPC namespace; attach it whole at its old address again.
      long shmflg = ((v.prot() & PROT_WRITE) ? 0 : SHM_RDONLY) | ((v.prot() & PROT_EXEC) ? SHM_EXEC : 0);
      long at = CR_TRY(r.call(SYS_shmat, long(v.shmid()), long(v.start()), shmflg));
      if (uint64_t(at) != v.start())
        return fail(make_error(Errc::conflict, "restore", "SysV segment " + std::to_string(v.shmid()),
                               "attached at another address"));
      uint32_t got = PROT_READ | ((shmflg & SHM_RDONLY) ? 0 : PROT_WRITE) | ((shmflg & SHM_EXEC) ? PROT_EXEC : 0);
      if (got != v.prot()) CR_OK(r.call(SYS_mprotect, long(v.start()), len, long(v.prot())));
    } else {
      return fail(make_error(Errc::unsupported, "restore", image::mm_file(img.pid()),
                             "VMA kind " + std::to_string(v.status()) + " is not supported yet"));
    }
    for (int advice : mem::madvices(v)) CR_OK(r.call(SYS_madvise, long(v.start()), len, advice));
  }
  return close_pushed();
}

// Hands every fd over: the file objects come from `files` (one per id, shared as they were).
Status push_fds(Remote& r, FdPusher& push, const ProcessImage& img, files::RestoreFiles& files) {
  for (const auto& fe : img.fds) {
    int local = CR_TRY(files.fd_for(fe.id()));
    int tfd = CR_TRY(push.push(local));
    bool cloexec = fe.flags() & FD_CLOEXEC;
    if (tfd != int(fe.fd())) {
      CR_OK(r.call(SYS_dup3, tfd, long(fe.fd()), cloexec ? O_CLOEXEC : 0));
      CR_OK(r.call(SYS_close, tfd));
    } else if (!cloexec) {
      CR_OK(r.call(SYS_fcntl, tfd, F_SETFD, 0));
    }
  }
  // Work that needs the whole table in place (epoll targets refer to other fds).
  for (const auto& fe : img.fds) {
    const file_entry& entry = files.entry(fe.id());
    const files::FileKind* kind = files::kind_for_type(entry.type());
    if (kind && kind->finish) CR_OK_IN(kind->finish(entry, int(fe.fd()), r, files), "fd " + std::to_string(fe.fd()));
  }
  auto locks = CR_TRY(files.locks_of(img.pid()));
  return files::restore_locks(r, locks);
}

// The task still has crshim's signal handlers (it is a copy of crshim, or of a task that still was
// one): entries equal to crshim's own need no call. Should its caught and ignored sets differ from
// crshim's (something changed them since), every entry is set.
Status restore_sigactions(Remote& r, pid_t pid, const task_core_entry& tc) {
  constexpr int kSigMax = 64;
  std::array<KernelSigaction, kSigMax + 1> mine{};
  std::array<bool, kSigMax + 1> known{};
  uint64_t caught = 0, ignored = 0;
  for (int sig = 1; sig <= kSigMax; sig++) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    known[size_t(sig)] = ::syscall(SYS_rt_sigaction, sig, nullptr, &mine[size_t(sig)], 8) == 0;
    uint64_t handler = mine[size_t(sig)].handler;
    if (handler == uint64_t(uintptr_t(SIG_IGN))) ignored |= uint64_t(1) << (sig - 1);
    else if (handler != uint64_t(uintptr_t(SIG_DFL))) caught |= uint64_t(1) << (sig - 1);
  }
  auto now = proc::read_status(pid);
  bool inherited = now && now->sigcgt == caught && now->sigign == ignored;
  int sig = 0;
  for (const auto& sa : tc.sigactions()) {
    do sig++;
    while (sig == SIGKILL || sig == SIGSTOP);
    KernelSigaction k{sa.sigaction(), sa.flags(), sa.restorer(), sa.mask()};
    if (inherited && sig <= kSigMax && known[size_t(sig)] && memcmp(&k, &mine[size_t(sig)], sizeof k) == 0) continue;
    uint64_t addr = CR_TRY(r.put(&k, sizeof k));
    CR_OK(r.call(SYS_rt_sigaction, sig, long(addr), 0, 8));
  }
  return {};
}

Status restore_mm(Remote& r, FdPusher& push, const ProcessImage& img, const ImageSet& set,
                  const files::RestoreFiles& files) {
  const mm_entry& mm = img.mm;
  auto exe = CR_TRY(files.open_path(set.files.at(mm.exe_file_id()).reg().name(), O_RDONLY));
  int exe_fd = CR_TRY(push.push(exe.get()));
  // Up to and including the AT_NULL pair.
  std::vector<uint64_t> auxv(mm.mm_saved_auxv().begin(), mm.mm_saved_auxv().end());
  size_t used = auxv.size();
  for (size_t i = 0; i + 1 < auxv.size(); i += 2)
    if (auxv[i] == 0) {
      used = i + 2;
      break;
    }
  uint64_t auxv_addr = CR_TRY(r.put(auxv.data(), used * 8));
  MmMap map{mm.mm_start_code(), mm.mm_end_code(), mm.mm_start_data(), mm.mm_end_data(), mm.mm_start_brk(),
            mm.mm_brk(),        mm.mm_start_stack(), mm.mm_arg_start(), mm.mm_arg_end(), mm.mm_env_start(),
            mm.mm_env_end(),   auxv_addr,            uint32_t(used * 8), uint32_t(exe_fd)};
  uint64_t map_addr = CR_TRY(r.put(&map, sizeof map, true));
  CR_OK(r.call(SYS_prctl, PR_SET_MM, PR_SET_MM_MAP, long(map_addr), sizeof map, 0));
  CR_OK(r.call(SYS_close, exe_fd));
  if (mm.has_dumpable()) CR_OK(r.call(SYS_prctl, PR_SET_DUMPABLE, mm.dumpable()));
  if (mm.thp_disabled()) CR_OK(r.call(SYS_prctl, PR_SET_THP_DISABLE, 1, 0, 0, 0));
  return {};
}

// Maps every area of the image (writable while pages go in), writes the pages, sets final protections.
Status restore_memory(Remote& r, FdPusher& push, pid_t pid, const ProcessImage& img, const ImageSet& set,
                      files::RestoreFiles& files, int images_dir, mem::SharedMemory& shmem, ProgressSink* progress,
                      Logger& log, mem::LazyClient* lazy) {
  const auto& vmas = img.mm.vmas();
  std::vector<bool> add_write(size_t(vmas.size()), false);
  {
    // An entry may span adjacent VMAs (CRIU merges them): every VMA it touches takes pages.
    size_t v = 0;
    for (const auto& pe : img.pagemap) {
      uint64_t end = pe.vaddr() + pe.nr_pages() * mem::kPageSize;
      while (v < size_t(vmas.size()) && vmas[int(v)].end() <= pe.vaddr()) v++;
      for (size_t w = v; w < size_t(vmas.size()) && vmas[int(w)].start() < end; w++)
        if (!(vmas[int(w)].prot() & PROT_WRITE)) add_write[w] = true;
    }
  }
  std::map<uint32_t, UniqueFd> opened;
  CR_OK_IN(map_vmas(r, push, img, set, files, opened, add_write, shmem), "memory");
  opened.clear();
  if (lazy) {
    // Private anonymous pages come from the lazy-pages daemon once the task touches them.
    auto mem_fd = CR_TRY(sys::open(proc::proc_dir(pid) + "/mem", O_RDWR));
    auto counts = CR_TRY(mem::restore_pages_lazily(r, *lazy, img.mm, img.pagemap, img.pages_id, img.pid(), images_dir,
                                                   mem_fd.get(), progress));
    LOG_INFO(log, "Restored %llu pages of %d, %llu left to the lazy-pages daemon", (unsigned long long)counts.written,
             pid, (unsigned long long)counts.lazy);
  } else {
    bool any = false;
    for (const auto& pe : img.pagemap) any |= (pe.flags() & mem::kPePresent) != 0;
    auto mem_fd = CR_TRY(sys::open(proc::proc_dir(pid) + "/mem", O_RDWR));
    auto pages = any ? CR_TRY(mem::PageSource::open(images_dir, image::pages_file(img.pages_id))) : mem::PageSource::empty();
    uint64_t restored = 0;
    std::vector<std::pair<uint64_t, uint64_t>> batch;
    uint64_t batch_pages = 0;
    auto flush = [&]() -> Status {
      if (batch.empty()) return {};
      CR_OK_IN(pages.restore_batch(pid, mem_fd.get(), batch), "memory");
      progress_advance(progress, batch_pages);
      batch.clear();
      batch_pages = 0;
      return {};
    };
    for (const auto& pe : img.pagemap) {
      if (!(pe.flags() & mem::kPePresent)) continue;
      batch.push_back({pe.vaddr(), pe.nr_pages()});
      batch_pages += pe.nr_pages();
      restored += pe.nr_pages();
      if (batch.size() == 1024 || batch_pages >= 16384) CR_OK(flush());
    }
    CR_OK(flush());
    std::vector<std::pair<uint64_t, uint64_t>> from_parents;
    for (const auto& pe : img.pagemap)
      if ((pe.flags() & mem::kPeParent) && !(pe.flags() & mem::kPePresent)) from_parents.push_back({pe.vaddr(), pe.nr_pages()});
    restored += CR_TRY(mem::restore_from_parents(pid, mem_fd.get(), images_dir, img.pid(), from_parents, progress));
    LOG_INFO(log, "Restored %llu pages of %d", (unsigned long long)restored, pid);
  }
  CR_OK(fault_point("restore:memory"));
  for (int i = 0; i < vmas.size(); i++)
    if (add_write[size_t(i)]) CR_OK(r.call(SYS_mprotect, long(vmas[i].start()), long(vmas[i].end() - vmas[i].start()), long(vmas[i].prot())));

  return {};
}

// State each thread sets for itself.
Status restore_thread_self(Remote& r, pid_t pid, pid_t tid, const core_entry& core) {
  const auto& tcore = core.thread_core();
  CR_OK(r.call(SYS_set_robust_list, long(tcore.futex_rla()), long(tcore.futex_rla_len())));
  CR_OK(r.call(SYS_set_tid_address, long(core.thread_info().clear_tid_addr())));
  // Always set: a task created by crshim starts with crshim's alternate signal stack (a sanitizer's,
  // say), and an SA_ONSTACK handler would then get a frame in memory the task does not have.
  stack_t ss{nullptr, SS_DISABLE, 0};
  if (tcore.has_sas() && tcore.sas().ss_size())
    ss = {reinterpret_cast<void*>(tcore.sas().ss_sp()), int(tcore.sas().ss_flags() & ~SS_ONSTACK),
          size_t(tcore.sas().ss_size())};
  uint64_t ss_addr = CR_TRY(r.put(&ss, sizeof ss));
  CR_OK(r.call(SYS_sigaltstack, long(ss_addr), 0));
  if (tcore.has_comm()) {
    uint64_t addr = CR_TRY(r.put_string(tcore.comm().substr(0, 15)));
    CR_OK(r.call(SYS_prctl, PR_SET_NAME, long(addr)));
  }
  if (tcore.pdeath_sig()) CR_OK(r.call(SYS_prctl, PR_SET_PDEATHSIG, tcore.pdeath_sig()));
  if (tcore.has_rseq_entry()) {
    const auto& rs = tcore.rseq_entry();
    CR_OK(r.call(SYS_rseq, long(rs.rseq_abi_pointer()), rs.rseq_abi_size(), 0, rs.signature()));
  }
  for (const auto& s : tcore.signals_p().signals()) {
    siginfo_t si;
    if (s.siginfo().size() != sizeof si)
      return fail(make_error(Errc::corrupt_image, "restore", image::core_file(uint32_t(tid)), "bad siginfo size"));
    memcpy(&si, s.siginfo().data(), sizeof si);
    uint64_t addr = CR_TRY(r.put(&si, sizeof si));
    CR_OK(r.call(SYS_rt_tgsigqueueinfo, pid, tid, si.si_signo, long(addr)));
  }
  return {};
}

Status restore_sched(pid_t tid, const thread_core_entry& tcore) {
  if (tcore.sched_policy() != SCHED_OTHER) {
    sched_param sp{int(tcore.sched_prio())};
    if (::sched_setscheduler(tid, int(tcore.sched_policy()), &sp) < 0)
      return fail(sys_error("sched_setscheduler", "thread " + std::to_string(tid)));
  }
  if (::setpriority(PRIO_PROCESS, id_t(tid), tcore.sched_nice()) < 0)
    return fail(sys_error("setpriority", "thread " + std::to_string(tid)));
  return {};
}

// `real_pid`: the task as crshim sees it, whose current personality and limits (inherited from
// crshim) need no call where they already are the image's.
Status restore_process_wide(Remote& r, pid_t pid, pid_t real_pid, const task_core_entry& tc, Logger& log) {
  uint64_t persona = 0;
  auto persona_text = sys::read_file(proc::proc_dir(real_pid) + "/personality");
  if (!persona_text || !sys::parse_u64(sys::trim(*persona_text), persona, 16) || persona != tc.personality())
    CR_OK(r.call(SYS_personality, long(tc.personality())));
  auto limits_now = proc::read_limits(real_pid);
  for (int i = 0; i < tc.rlimits().rlimits_size(); i++) {
    const auto& l = tc.rlimits().rlimits(i);
    if (limits_now && size_t(i) < limits_now->size() && (*limits_now)[size_t(i)].cur == l.cur() &&
        (*limits_now)[size_t(i)].max == l.max())
      continue;
    struct rlimit64 {
      uint64_t cur, max;
    } lim{l.cur(), l.max()};
    uint64_t addr = CR_TRY(r.put(&lim, sizeof lim));
    auto res = r.call(SYS_prlimit64, 0, i, long(addr), 0);
    // Raising a hard limit needs CAP_SYS_RESOURCE; the task keeps the restorer's limit then.
    if (!res) LOG_WARN(log, "Can't restore rlimit %d of %d: %s", i, pid, res.error().render().c_str());
  }
  for (const auto& s : tc.signals_s().signals()) {
    siginfo_t si;
    if (s.siginfo().size() != sizeof si)
      return fail(make_error(Errc::corrupt_image, "restore", image::core_file(uint32_t(pid)), "bad siginfo size"));
    memcpy(&si, s.siginfo().data(), sizeof si);
    uint64_t addr = CR_TRY(r.put(&si, sizeof si));
    CR_OK(r.call(SYS_rt_sigqueueinfo, pid, si.si_signo, long(addr)));
  }
  if (tc.child_subreaper()) CR_OK(r.call(SYS_prctl, PR_SET_CHILD_SUBREAPER, 1));
  return {};
}

Status restore_itimers(Remote& r, const task_timers_entry& t) {
  const itimer_entry* slots[] = {&t.real(), &t.virt(), &t.prof()};
  for (int which = 0; which < 3; which++) {
    const itimer_entry& e = *slots[which];
    if (!e.vsec() && !e.vusec() && !e.isec() && !e.iusec()) continue;  // disarmed
    itimerval it{{long(e.isec()), long(e.iusec())}, {long(e.vsec()), long(e.vusec())}};
    // A zero value with an interval is a timer that expired while frozen, its signal still pending
    // (re-queued above) and its re-arm due at that signal's delivery. setitimer() would take a zero
    // value as "disarm", so the next expiry is set one interval away, as the re-arm would have.
    if (!e.vsec() && !e.vusec()) it.it_value = it.it_interval;
    uint64_t addr = CR_TRY(r.put(&it, sizeof it));
    CR_OK(r.call(SYS_setitimer, which, long(addr), 0));
  }
  return {};
}

// POSIX timers come back with their ids (PR_TIMER_CREATE_RESTORE_IDS makes timer_create take the id
// it is given), their signal and target thread, and their remaining time and interval.
Status restore_posix_timers(Remote& r, const task_timers_entry& t) {
  if (t.posix_size() == 0) return {};
  constexpr long kRestoreIds = 77, kOn = 1, kOff = 0;  // PR_TIMER_CREATE_RESTORE_IDS (Linux 6.16)
  auto on = r.call(SYS_prctl, kRestoreIds, kOn, 0, 0, 0);
  if (!on)
    return fail(on.error().with_hint("restoring POSIX timers with their ids needs Linux 6.16 or newer"));
  for (const auto& e : t.posix()) {
    sigevent sev{};
    sev.sigev_value.sival_ptr = reinterpret_cast<void*>(e.sival_ptr());
    sev.sigev_signo = int(e.si_signo());
    sev.sigev_notify = int(e.it_sigev_notify());
    if (e.has_notify_thread_id()) sev._sigev_un._tid = e.notify_thread_id();
    uint64_t sev_addr = CR_TRY(r.put(&sev, sizeof sev));
    int id = int(e.it_id());
    uint64_t id_addr = CR_TRY(r.put(&id, sizeof id, true));
    CR_OK(r.call(SYS_timer_create, long(e.clock_id()), long(sev_addr), long(id_addr)));
  }
  CR_OK(r.call(SYS_prctl, kRestoreIds, kOff, 0, 0, 0));
  for (const auto& e : t.posix()) {
    itimerspec its{{long(e.isec()), long(e.insec())}, {long(e.vsec()), long(e.vnsec())}};
    if (!e.vsec() && !e.vnsec()) {
      if (!e.isec() && !e.insec()) continue;  // disarmed
      // Expired with its signal still queued (re-queued above): the next expiry is one interval away.
      its.it_value = its.it_interval;
    }
    uint64_t addr = CR_TRY(r.put(&its, sizeof its));
    CR_OK(r.call(SYS_timer_settime, long(e.it_id()), 0, long(addr), 0));
  }
  return {};
}

bool same_creds(const creds_entry& c, const proc::TaskStatus& self) {
  auto cap = [](const google::protobuf::RepeatedField<uint32_t>& f) {
    return f.size() >= 2 ? (uint64_t(f.Get(1)) << 32 | f.Get(0)) : 0;
  };
  std::vector<uint32_t> groups(c.groups().begin(), c.groups().end());
  return c.uid() == self.uid[0] && c.euid() == self.uid[1] && c.suid() == self.uid[2] && c.fsuid() == self.uid[3] &&
         c.gid() == self.gid[0] && c.egid() == self.gid[1] && c.sgid() == self.gid[2] && c.fsgid() == self.gid[3] &&
         groups == self.groups && cap(c.cap_eff()) == self.cap_eff && cap(c.cap_prm()) == self.cap_prm &&
         cap(c.cap_inh()) == self.cap_inh && cap(c.cap_bnd()) == self.cap_bnd && cap(c.cap_amb()) == self.cap_amb;
}

// Credentials are per thread; each thread sets its own. Everything needing privilege (groups, gids,
// securebits, the bounding set) goes before the uid change; KEEP_CAPS carries the permitted set over it.
Status restore_creds(Remote& r, const creds_entry& c) {
  auto cap = [](const google::protobuf::RepeatedField<uint32_t>& f, int w) { return f.size() > w ? f.Get(w) : 0u; };
  constexpr long kKeepCaps = 1 << 4;  // SECBIT_KEEP_CAPS
  // EPERM here means the task had ids or capabilities beyond crshim's own (a smaller bounding set).
  auto privileged = [](Result<long> res) -> Status {
    if (!res && res.error().err == EPERM)
      return fail(res.error().with_hint(
          "the dumped task holds capabilities crshim lacks: run crshim with at least the task's capabilities"));
    if (!res) return fail(res.error());
    return {};
  };
  std::vector<uint32_t> groups(c.groups().begin(), c.groups().end());
  uint64_t gaddr = groups.empty() ? 0 : CR_TRY(r.put(groups.data(), groups.size() * 4));
  CR_OK(privileged(r.call(SYS_setgroups, long(groups.size()), long(gaddr))));
  CR_OK(privileged(r.call(SYS_setresgid, c.gid(), c.egid(), c.sgid())));
  if (c.fsgid() != c.egid()) CR_OK(r.call(SYS_setfsgid, c.fsgid()));
  CR_OK(r.call(SYS_prctl, PR_SET_SECUREBITS, long(c.secbits()) | kKeepCaps));
  for (int capn = 0; capn < 64; capn++) {
    bool keep = cap(c.cap_bnd(), capn / 32) >> (capn % 32) & 1;
    if (!keep) {
      auto res = r.call(SYS_prctl, PR_CAPBSET_DROP, capn);
      if (!res && res.error().err != EINVAL) return fail(res.error());  // EINVAL: beyond the last capability
    }
  }
  CR_OK(privileged(r.call(SYS_setresuid, c.uid(), c.euid(), c.suid())));
  if (c.fsuid() != c.euid()) CR_OK(r.call(SYS_setfsuid, c.fsuid()));
  struct {
    __user_cap_header_struct head;
    __user_cap_data_struct data[2];
  } caps{{_LINUX_CAPABILITY_VERSION_3, 0}, {}};
  for (int w = 0; w < 2; w++) caps.data[w] = {cap(c.cap_eff(), w), cap(c.cap_prm(), w), cap(c.cap_inh(), w)};
  uint64_t addr = CR_TRY(r.put(&caps, sizeof caps));
  CR_OK(privileged(r.call(SYS_capset, long(addr), long(addr + sizeof caps.head))));
  for (int capn = 0; capn < 64; capn++)
    if (cap(c.cap_amb(), capn / 32) >> (capn % 32) & 1)
      CR_OK(privileged(r.call(SYS_prctl, PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, capn, 0, 0)));
  // Clearing KEEP_CAPS needs no privilege, unlike PR_SET_SECUREBITS.
  if (!(c.secbits() & kKeepCaps)) CR_OK(r.call(SYS_prctl, PR_SET_KEEPCAPS, 0));
  if (c.no_new_privs()) CR_OK(r.call(SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0));
  return {};
}

// Installs the thread's seccomp filter chain, oldest first.
Status restore_seccomp(Remote& r, const thread_core_entry& tcore, const seccomp_entry& all) {
  if (tcore.seccomp_mode() == strict) return fail(make_error(Errc::unsupported, "restore", "seccomp", "strict mode"));
  if (tcore.seccomp_mode() != filter) return {};
  std::vector<uint32_t> chain;
  for (uint32_t i = tcore.seccomp_filter();;) {
    if (int(i) >= all.seccomp_filters_size() || chain.size() > size_t(all.seccomp_filters_size()))
      return fail(make_error(Errc::corrupt_image, "restore", image::kSeccompFile, "bad filter chain"));
    chain.insert(chain.begin(), i);
    if (!all.seccomp_filters(int(i)).has_prev()) break;
    i = all.seccomp_filters(int(i)).prev();
  }
  for (uint32_t i : chain) {
    const std::string& prog = all.seccomp_filters(int(i)).filter();
    if (prog.empty() || prog.size() % 8 || prog.size() / 8 > 4096)
      return fail(make_error(Errc::corrupt_image, "restore", image::kSeccompFile, "bad filter program"));
    uint64_t insns = CR_TRY(r.put(prog.data(), prog.size()));
    struct {
      uint16_t len;
      uint16_t pad[3];
      uint64_t filter;
    } fprog{uint16_t(prog.size() / 8), {}, insns};
    uint64_t addr = CR_TRY(r.put(&fprog, sizeof fprog, true));
    CR_OK(r.call(SYS_seccomp, SECCOMP_SET_MODE_FILTER, long(all.seccomp_filters(int(i)).flags()), long(addr)));
  }
  return {};
}

}  // namespace

// ---- RestoredTask ----

RestoredTask::RestoredTask(RestoredTask&& o) noexcept
    : pid_(std::exchange(o.pid_, 0)),
      resumed_(o.resumed_),
      image_(o.image_),
      threads_(std::move(o.threads_)),
      xsave_(o.xsave_) {}

RestoredTask::~RestoredTask() {
  if (pid_ > 0 && !resumed_) kill();
}

void RestoredTask::kill() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  std::vector<pid_t> tids;
  for (const auto& t : threads_) tids.push_back(t.tid());
  threads_.clear();  // detaching a killed task fails harmlessly
  // Traced threads must be reaped one by one before the leader's exit is reported.
  int status;
  for (pid_t tid : tids) {
    if (tid == pid_) continue;
    while (::waitpid(tid, &status, __WALL) < 0 && errno == EINTR) {
    }
  }
  while (::waitpid(pid_, &status, __WALL) < 0 && errno == EINTR) {
  }
  pid_ = 0;
}

Status RestoredTask::resume() {
  const ProcessImage& img = *image_;
  for (size_t i = 0; i < threads_.size(); i++) {
    pid_t tid = threads_[i].tid();
    const core_entry& core = img.cores[i];
    kernel::Regs regs = arch::regs_from_image(core.thread_info().gpregs());
    kernel::fixup_syscall_restart(regs, kernel::RestartMode::in_place);
    CR_OK(kernel::set_regs(tid, regs));
    auto xs = CR_TRY(kernel::get_xstate(tid));
    CR_OK(arch::fpu_from_image(core.thread_info().fpregs(), xsave_, xs));
    CR_OK(kernel::set_xstate(tid, xs));
    CR_OK(arch::tls_from_image(tid, core.thread_info()));
    uint64_t mask = i == 0 ? img.cores[0].tc().blk_sigset() : core.thread_core().blk_sigset();
    CR_OK(kernel::set_sigmask(tid, mask & ~(uint64_t(1) << (SIGKILL - 1) | uint64_t(1) << (SIGSTOP - 1))));
  }
  for (auto& t : threads_) CR_OK(t.detach(0));
  resumed_ = true;
  return {};
}

namespace {

// While clone3 says the pid is taken: waits for a zombie to be reaped, but not for a live task.
class PidWaiter {
 public:
  explicit PidWaiter(pid_t pid) : pid_(pid), deadline_(Clock::now() + std::chrono::seconds(10)) {}
  // Ok to retry after a short sleep; an error when waiting makes no sense.
  Status wait(int err, const std::string& op) {
    if (err != EEXIST || Clock::now() > deadline_) {
      Error e = errno_error(err, op, task_name(pid_), "creating the task with its original pid");
      if (err == EPERM) e.with_hint("restoring pids needs CAP_CHECKPOINT_RESTORE or CAP_SYS_ADMIN");
      if (err == EEXIST) e.with_hint("the pid is still in use; stop the process that holds it");
      return fail(std::move(e));
    }
    auto st = proc::read_stat(pid_);
    if (st && st->state != 'Z' && st->state != 'X') {
      auto now = Clock::now();
      if (live_since_ == Clock::time_point{}) live_since_ = now;
      if (now - live_since_ > std::chrono::milliseconds(500))
        return fail(make_error(Errc::conflict, "restore", task_name(pid_), "the pid is used by a live process (" + st->comm + ")")
                        .with_hint("stop that process, or restore in a new pid namespace"));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    return {};
  }

 private:
  using Clock = std::chrono::steady_clock;
  pid_t pid_;
  Clock::time_point deadline_;
  Clock::time_point live_since_{};
};

// Runs `fn(remote)` in the task's leader through the inherited vDSO, with one scratch page.
template <class Fn>
Status with_early_window(kernel::Tracee& leader, Fn&& fn) {
  pid_t pid = leader.tid();
  uint64_t insn = CR_TRY(kernel::find_syscall_insn(pid));
  auto rs = CR_TRY(PtraceSyscall::begin(leader, insn));
  uint64_t scratch = CR_TRY(kernel::remote_mmap(rs, 4096));
  Remote r(rs, pid, scratch, 4096);
  Status st = fn(r, rs);
  Status unmapped = kernel::remote_munmap(rs, scratch, 4096);
  Status restored = rs.restore();
  CR_OK(st);
  CR_OK(unmapped);
  return restored;
}

// clone3() in a helper that first setns()es into `join` (in order): namespaces whose owner a plain
// clone would get wrong (those it makes belong to the user namespace joined last). With CLONE_PARENT
// the task is the helper's sibling: crshim's child, or with `sibling` (the helper being our parent's
// child too, reaped by it) our parent's. Returns the task's pid, or -errno. Raw syscalls only in the helper.
long clone_after_joining(clone_args args, const std::vector<int>& join, bool sibling) {
  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) < 0) return -errno;
  UniqueFd rd(pipefd[0]), wr(pipefd[1]);
  clone_args h{};
  h.flags = sibling ? CLONE_PARENT : 0;
  h.exit_signal = sibling ? 0 : SIGCHLD;
  pid_t helper = pid_t(::syscall(SYS_clone3, &h, sizeof h));
  if (helper < 0) return -errno;
  if (helper == 0) {
    long result = 0;
    for (int fd : join)
      if (::syscall(SYS_setns, fd, 0) < 0) result = -errno;
    if (result == 0) {
      args.flags |= CLONE_PARENT;
      args.exit_signal = 0;  // with CLONE_PARENT the task gets the helper's
      result = ::syscall(SYS_clone3, &args, sizeof args);
      if (result == 0)
        for (;;) ::syscall(SYS_pause);
      if (result < 0) result = -errno;
    }
    ::syscall(SYS_write, wr.get(), &result, sizeof result);
    ::syscall(SYS_exit_group, 0);
  }
  wr.reset();
  long result = -EPIPE;
  if (::read(rd.get(), &result, sizeof result) != ssize_t(sizeof result)) result = -EPIPE;
  while (!sibling && ::waitpid(helper, nullptr, 0) < 0 && errno == EINTR) {
  }
  return result;
}

}  // namespace

Result<RestoredTask> create_task(const ProcessImage& img, bool sibling, bool new_pidns, int ns_flags, Logger& log,
                                 const std::vector<int>& join_first) {
  pid_t want = pid_t(img.pid());
  if (new_pidns && want != 1)
    return fail(make_error(Errc::corrupt_image, "restore", image::kPstreeFile,
                           "the root of a dumped pid namespace has pid " + std::to_string(want) + ", not 1"));
  clone_args args{};
  // CLONE_PARENT (--restore-sibling): the task becomes our caller's child; clone3 then wants no exit signal.
  // CLONE_NEWPID: set_tid then names the pid in the new namespace (1).
  args.flags = (sibling ? CLONE_PARENT : 0) | (new_pidns ? CLONE_NEWPID : 0) | uint64_t(ns_flags);
  args.exit_signal = sibling ? 0 : SIGCHLD;
  args.set_tid = reinterpret_cast<uint64_t>(&want);
  args.set_tid_size = 1;
  PidWaiter waiter(want);
  long child;
  for (;;) {
    if (!join_first.empty()) {
      child = clone_after_joining(args, join_first, sibling);
      if (child > 0) break;
      CR_OK(waiter.wait(int(-child), "clone3 after joining namespaces"));
      continue;
    }
    child = ::syscall(SYS_clone3, &args, sizeof args);
    if (child == 0) {
      // The new task waits to be seized: raw syscalls only (it shares nothing with us but a copy of
      // memory). Whatever it is doing when stopped is overwritten by the rebuild.
      for (;;) ::syscall(SYS_pause);
    }
    if (child > 0) break;
    CR_OK(waiter.wait(errno, "clone3"));
  }
  LOG_INFO(log, "Created task %ld for pid %d%s", child, want, new_pidns ? " in a new pid namespace" : "");
  RestoredTask task;
  task.pid_ = pid_t(child);
  task.image_ = &img;
  auto t = kernel::Tracee::seize(pid_t(child), kTraceOptions);
  if (!t) {
    ::kill(pid_t(child), SIGKILL);
    if (!sibling) ::waitpid(pid_t(child), nullptr, __WALL);
    task.pid_ = 0;
    return fail(t.error());
  }
  task.threads_.push_back(std::move(*t));
  CR_OK(task.threads_[0].interrupt());
  return task;
}

uint64_t shared_clone_flags(const task_kobj_ids_entry& parent, const task_kobj_ids_entry& child) {
  uint64_t flags = 0;
  if (child.vm_id() == parent.vm_id()) flags |= CLONE_VM;
  // The kernel refuses CLONE_SIGHAND without CLONE_VM; check_supported() refuses such images.
  if (child.sighand_id() == parent.sighand_id() && (flags & CLONE_VM)) flags |= CLONE_SIGHAND;
  if (child.files_id() == parent.files_id()) flags |= CLONE_FILES;
  if (child.fs_id() == parent.fs_id()) flags |= CLONE_FS;
  return flags;
}

Result<RestoredTask> fork_child(RestoredTask& parent, const ProcessImage& img, Logger& log) {
  pid_t want = pid_t(img.pid());
  uint64_t share = img.alive() && parent.image_->alive() ? shared_clone_flags(parent.image_->ids, img.ids) : 0;
  // A task deeper in the pid namespaces than its parent started a new one (as its pid 1).
  bool new_pidns = img.ns_depth() > parent.image_->ns_depth();
  std::vector<pid_t> set_tid = img.set_tid(0);
  if (new_pidns && set_tid.front() != 1)
    return fail(make_error(Errc::corrupt_image, "restore", image::kPstreeFile,
                           "task " + std::to_string(want) + " starts a pid namespace but is not its pid 1"));
  PidWaiter waiter(want);
  pid_t child = 0;
  for (;;) {
    int clone_err = 0;
    CR_OK(with_early_window(parent.threads_[0], [&](Remote& r, PtraceSyscall& rs) -> Status {
      clone_args ca{};
      // Without CLONE_SETTLS or a stack the child runs on the parent's: it is stopped before it
      // returns to user space and never runs crshim's code there, so sharing the mm is safe.
      ca.flags = (new_pidns ? CLONE_NEWPID : 0) | share;
      ca.exit_signal = SIGCHLD;
      uint64_t tid_addr = CR_TRY(r.put(set_tid.data(), set_tid.size() * sizeof(pid_t)));
      ca.set_tid = tid_addr;
      ca.set_tid_size = set_tid.size();
      uint64_t ca_addr = CR_TRY(r.put(&ca, sizeof ca, true));
      auto got = r.call(SYS_clone3, long(ca_addr), sizeof ca);
      if (!got) {
        clone_err = got.error().err;
        if (clone_err) return {};
        return fail(got.error());
      }
      for (pid_t t : rs.take_new_tids()) child = t;
      return {};
    }));
    if (child > 0) break;
    CR_OK(waiter.wait(clone_err, "remote clone3 in pid " + std::to_string(parent.pid())));
  }
  LOG_INFO(log, "Created task %d (child of %d, sharing flags %#llx)", child, parent.pid(), (unsigned long long)share);
  RestoredTask task;
  task.pid_ = child;
  task.image_ = &img;
  auto t = kernel::Tracee::adopt(child, kTraceOptions, true);
  if (!t) {
    task.kill();
    return fail(t.error());
  }
  task.threads_.push_back(std::move(*t));
  return task;
}

Status run_early(RestoredTask& task, const std::function<Status(kernel::Remote&)>& fn) {
  return with_early_window(task.threads_[0], [&](Remote& r, PtraceSyscall&) -> Status { return fn(r); });
}

Status set_session(RestoredTask& task) {
  return with_early_window(task.threads_[0], [](Remote& r, PtraceSyscall&) -> Status {
    CR_OK(r.call(SYS_setsid));
    return {};
  });
}

Status set_process_group(RestoredTask& task, pid_t pgid) {
  // Already there (inherited from its parent): NSpgid's last entry is the group as the task sees it.
  if (auto st = proc::read_status(task.pid_); st && !st->nspgid.empty() && st->nspgid.back() == pgid) return {};
  return with_early_window(task.threads_[0], [&](Remote& r, PtraceSyscall&) -> Status {
    CR_OK(r.call(SYS_setpgid, 0, pgid));
    return {};
  });
}

Status setup_namespaces(RestoredTask& task, int ns_flags, const task_kobj_ids_entry& ids, int images_dir,
                        const ns::UserNs* userns, bool unshare_first) {
  if (!ns_flags) return {};
  return with_early_window(task.threads_[0], [&](Remote& r, PtraceSyscall&) -> Status {
    if (unshare_first) CR_OK_IN(r.call(SYS_unshare, ns_flags), "unshare its UTS/IPC namespaces");
    return ns::restore_namespaces(r, ns_flags, ids, images_dir, userns);
  });
}

Status join_namespaces(RestoredTask& task, const std::vector<std::pair<int, std::string>>& ns_fds) {
  if (ns_fds.empty()) return {};
  return with_early_window(task.threads_[0], [&](Remote& r, PtraceSyscall&) -> Status {
    for (const auto& [fd, what] : ns_fds) CR_OK_IN(r.call(SYS_setns, fd, 0), "join " + what);
    return {};
  });
}

Status make_zombie(RestoredTask& task, int status) {
  kernel::Tracee& leader = task.threads_[0];
  if (WIFSIGNALED(status)) {
    int sig = WTERMSIG(status);
    CR_OK(with_early_window(leader, [&](Remote& r, PtraceSyscall&) -> Status {
      KernelSigaction dfl{0, 0, 0, 0};
      uint64_t addr = CR_TRY(r.put(&dfl, sizeof dfl));
      CR_OK(r.call(SYS_rt_sigaction, sig, long(addr), 0, 8));
      struct {
        uint64_t cur, max;
      } no_core{0, 0};
      addr = CR_TRY(r.put(&no_core, sizeof no_core));
      CR_OK(r.call(SYS_prlimit64, 0, RLIMIT_CORE, long(addr), 0));
      return {};
    }));
    CR_OK(leader.detach(sig));  // the default action ends it; its parent sees the same status
  } else {
    uint64_t insn = CR_TRY(kernel::find_syscall_insn(task.pid_));
    auto rs = CR_TRY(PtraceSyscall::begin(leader, insn));
    CR_OK(rs.syscall(SYS_exit_group, WEXITSTATUS(status)));
  }
  task.threads_.clear();
  task.resumed_ = true;  // nothing left to resume or kill: a zombie for its parent to reap
  return {};
}

Status rebuild_task(RestoredTask& task, const ImageSet& set, const ProcessImage& img, int images_dir,
                    files::RestoreFiles& files, const TaskOptions& opts, const TaskSharing& share, Logger& log) {
  pid_t pid = task.pid();
  task.xsave_ = opts.xsave;
  const task_core_entry& tc = img.cores[0].tc();
  kernel::Tracee& leader = task.threads_[0];

  // 1. A trampoline page free in both layouts; every later call executes its `syscall`.
  auto now = CR_TRY(proc::read_maps(pid));
  uint64_t insn = CR_TRY(kernel::find_syscall_insn(pid));
  auto rs = CR_TRY(PtraceSyscall::begin(leader, insn));
  uint64_t tramp = CR_TRY(find_free_range(now, img.mm, kTrampolineSize));
  CR_OK(rs.syscall(SYS_mmap, long(tramp), long(kTrampolineSize), PROT_READ | PROT_WRITE | PROT_EXEC,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0));
  const uint8_t code[] = {0x0f, 0x05, 0xcc};  // syscall; int3
  CR_OK(kernel::write_mem(pid, tramp, code));
  rs.set_insn(tramp);
  Remote r(rs, pid, tramp + kScratchOffset, kTrampolineSize - kScratchOffset);
  LOG_DEBUG(log, "Restoring %d: %s", pid, "crshim's state");

  // 2. Forget crshim: signals queued to the copy (SIGCHLD of zombies made from it), its rseq area,
  // its memory (but the vDSO), its files.
  {
    uint64_t all = ~uint64_t(0);
    timespec zero{0, 0};
    uint64_t set_addr = CR_TRY(r.put(&all, sizeof all));
    uint64_t ts_addr = CR_TRY(r.put(&zero, sizeof zero, true));
    for (int i = 0; i < 1024; i++) {
      auto got = r.call(SYS_rt_sigtimedwait, long(set_addr), 0, long(ts_addr), 8);
      if (!got) {
        if (got.error().err == EAGAIN) break;
        return fail(got.error());
      }
    }
  }
  ptrace_rseq_configuration rc{};
  if (::ptrace(__ptrace_request(PTRACE_GET_RSEQ_CONFIGURATION), pid, sizeof rc, &rc) < 0)
    return fail(sys_error("ptrace(PTRACE_GET_RSEQ_CONFIGURATION)", task_name(pid)));
  if (rc.rseq_abi_pointer)
    CR_OK(r.call(SYS_rseq, long(rc.rseq_abi_pointer), rc.rseq_abi_size, 1 /* RSEQ_FLAG_UNREGISTER */, rc.signature));
  // A shared mm was rebuilt by the task that owns it (this task's trampoline lives in it meanwhile).
  if (share.own_vm) {
    // One munmap per run of areas between the kept ones (the vDSO trio, vsyscall, the trampoline):
    // the gaps inside a run are unmapped already.
    struct Area {
      uint64_t start, end;
      bool kept;
    };
    std::vector<Area> areas{{tramp, tramp + kTrampolineSize, true}};  // mapped after `now` was read
    for (const auto& v : now)
      areas.push_back({v.start, v.end, v.is_vdso() || v.is_vvar() || v.is_vvar_vclock() || v.is_vsyscall()});
    std::sort(areas.begin(), areas.end(), [](const Area& a, const Area& b) { return a.start < b.start; });
    uint64_t run_start = 0, run_end = 0;
    for (size_t i = 0; i <= areas.size(); i++) {
      if (i == areas.size() || areas[i].kept) {
        if (run_end > run_start) CR_OK(r.call(SYS_munmap, long(run_start), long(run_end - run_start)));
        run_start = run_end = 0;
        continue;
      }
      if (run_end == run_start) run_start = areas[i].start;
      run_end = areas[i].end;
    }
    uint64_t temp = CR_TRY(find_free_range(now, img.mm, 1ull << 30, tramp));
    CR_OK_IN(move_vdso(r, now, img.mm, temp), "vDSO");
  }
  // The lender fd, inherited at creation (crshim may be invisible from the task's pid namespace), lends
  // the task our open files. Moved above every fd the image uses; everything else is closed.
  // In a shared fd table the owner left it at that number for the tasks sharing the table.
  int max_fd = 0;
  for (const auto& fe : img.fds) max_fd = std::max(max_fd, int(fe.fd()));
  long holder = max_fd + 1;
  if (share.own_files) {
    if (opts.lender_fd != holder) CR_OK(r.call(SYS_dup3, opts.lender_fd, holder, O_CLOEXEC));
    CR_OK(r.call(SYS_close_range, 0, holder - 1, 0));
    CR_OK(r.call(SYS_close_range, holder + 1, ~0u, 0));
  }
  FdPusher push{r, int(holder), opts.lender_peer};

  // 3. Memory: map every area (writable while pages go in), write the pages, set final protections.
  LOG_DEBUG(log, "Restoring %d: %s", pid, "memory");
  if (share.own_vm) CR_OK(restore_memory(r, push, pid, img, set, files, images_dir, *opts.shmem, opts.progress, log, opts.lazy));

  // 4. Files, mm fields, signal handlers, fs: each shared object by its owner only.
  LOG_DEBUG(log, "Restoring %d: %s", pid, "files");
  if (share.own_files) {
    CR_OK_IN(push_fds(r, push, img, files), "files");
  } else {
    auto locks = CR_TRY(files.locks_of(img.pid()));
    CR_OK_IN(files::restore_locks(r, locks), "files");
  }
  if (share.own_vm) CR_OK_IN(restore_mm(r, push, img, set, files), "mm");
  if (share.own_sighand) CR_OK_IN(restore_sigactions(r, pid, tc), "signal handlers");
  if (share.own_fs) {
    if (img.fs.has_umask()) CR_OK(r.call(SYS_umask, long(img.fs.umask())));
    const std::string& root = set.files.at(img.fs.root_id()).reg().name();
    if (root != "/") {
      uint64_t addr = CR_TRY(r.put_string(root));
      CR_OK(r.call(SYS_chroot, long(addr)));
    }
    CR_OK_IN(restore_cwd(r, push, set.files.at(img.fs.cwd_id()).reg().name()), "cwd");
  }
  if (!share.keep_holder) CR_OK(r.call(SYS_close, holder));

  // 5. Threads, created by the leader with their original tids.
  LOG_DEBUG(log, "Restoring %d: %s", pid, "threads");
  for (int i = 1; i < img.pstree.threads_size(); i++) {
    std::vector<pid_t> set_tid = img.set_tid(i);
    pid_t tid = set_tid.front();  // clone3 answers with the tid in the task's own namespace
    clone_args ca{};
    ca.flags = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM;
    uint64_t tid_addr = CR_TRY(r.put(set_tid.data(), set_tid.size() * sizeof(pid_t)));
    ca.set_tid = tid_addr;
    ca.set_tid_size = set_tid.size();
    uint64_t ca_addr = CR_TRY(r.put(&ca, sizeof ca, true));
    long got = CR_TRY(r.call(SYS_clone3, long(ca_addr), sizeof ca));
    if (got != tid)
      return fail(make_error(Errc::internal, "restore", "thread " + std::to_string(tid), "clone3 gave tid " + std::to_string(got)));
    for (pid_t t : rs.take_new_tids()) {
      auto tr = CR_TRY(kernel::Tracee::adopt(t, kTraceOptions, true));
      task.threads_.push_back(std::move(tr));
    }
  }
  CR_OK(fault_point("restore:threads"));
  if (task.threads_.size() != size_t(img.pstree.threads_size()))
    return fail(make_error(Errc::internal, "restore", task_name(pid), "thread count differs after clone3"));

  // 6. Per-thread state, then process-wide state that may interrupt (signals, timers).
  LOG_DEBUG(log, "Restoring %d: %s", pid, "per-thread state");
  auto self_status = CR_TRY(proc::read_status(getpid()));
  bool leader_seccomp = false;
  // Pids passed to syscalls the task makes are the image's (the task's own pid namespace).
  pid_t vpid = img.own_tid(0);
  for (size_t i = 0; i < task.threads_.size(); i++) {
    pid_t tid = task.threads_[i].tid();
    pid_t vtid = img.own_tid(int(i));
    const core_entry& core = img.cores[i];
    CR_OK(restore_sched(tid, core.thread_core()));
    if (i == 0) {
      CR_OK_IN(restore_thread_self(r, vpid, vtid, core), "thread " + std::to_string(tid));
      continue;
    }
    auto trs = CR_TRY(PtraceSyscall::begin(task.threads_[i], tramp));
    Remote tr(trs, pid, tramp + kScratchOffset, kTrampolineSize - kScratchOffset);
    CR_OK_IN(restore_thread_self(tr, vpid, vtid, core), "thread " + std::to_string(tid));
    bool thread_seccomp = core.thread_core().seccomp_mode() == filter;
    if (thread_seccomp) CR_OK(task.threads_[i].set_options(kTraceOptions | PTRACE_O_SUSPEND_SECCOMP));
    CR_OK_IN(restore_seccomp(tr, core.thread_core(), set.seccomp), "seccomp");
    if (opts.own_userns || !same_creds(core.thread_core().creds(), self_status)) CR_OK_IN(restore_creds(tr, core.thread_core().creds()), "credentials");
    CR_OK(trs.restore());
    if (thread_seccomp) CR_OK(task.threads_[i].set_options(kTraceOptions));
  }
  CR_OK_IN(restore_process_wide(r, vpid, pid, tc, log), "process");
  CR_OK_IN(restore_itimers(r, tc.timers()), "itimers");
  CR_OK_IN(restore_posix_timers(r, tc.timers()), "POSIX timers");
  const auto& lcore = img.cores[0].thread_core();
  // The filter goes in while the task still has crshim's capabilities (a filter needs CAP_SYS_ADMIN
  // or no_new_privs); suspended for the calls still to come (credentials, unmapping the trampoline).
  if (lcore.seccomp_mode() == filter) {
    CR_OK(leader.set_options(kTraceOptions | PTRACE_O_SUSPEND_SECCOMP));
    leader_seccomp = true;
  }
  CR_OK_IN(restore_seccomp(r, lcore, set.seccomp), "seccomp");
  if (opts.own_userns || !same_creds(lcore.creds(), self_status)) CR_OK_IN(restore_creds(r, lcore.creds()), "credentials");

  // 7. The trampoline unmaps itself: the thread stops at the step trap and never fetches more.
  LOG_DEBUG(log, "Restoring %d: %s", pid, "trampoline removal");
  CR_OK(r.call(SYS_munmap, long(tramp), long(kTrampolineSize)));
  CR_OK(rs.restore());
  if (leader_seccomp) CR_OK(leader.set_options(kTraceOptions));
  return {};
}

}  // namespace crshim::restorer
