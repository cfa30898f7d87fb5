#include "checkpoint/mem/vmas.h"

#include "checkpoint/files/memfd.h"
#include "checkpoint/files/reg_ghost.h"
#include "checkpoint/mem/shmem.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <cstdio>

namespace crshim::mem {

namespace {

std::string area_name(pid_t pid, const proc::Vma& v) {
  char buf[96];
  snprintf(buf, sizeof buf, "area %llx-%llx of pid %d", (unsigned long long)v.start, (unsigned long long)v.end, pid);
  return std::string(buf) + (v.path.empty() ? "" : " (" + v.path + ")");
}

std::string map_file_of(pid_t pid, const proc::Vma& v) {
  char range[64];
  snprintf(range, sizeof range, "%llx-%llx", (unsigned long long)v.start, (unsigned long long)v.end);
  return proc::proc_dir(pid) + "/map_files/" + range;
}

uint64_t madv_bits(const proc::SmapsEntry& s) {
  uint64_t bits = 0;
  for (int advice : proc::madvise_for(s.vm_flags)) bits |= uint64_t(1) << advice;
  if (s.has(proc::VmFlag::rr)) bits |= uint64_t(1) << MADV_RANDOM;
  if (s.has(proc::VmFlag::sr)) bits |= uint64_t(1) << MADV_SEQUENTIAL;
  return bits;
}

Status check_sysv_attachment(pid_t pid, const proc::Vma& v) {
  struct stat mine, its, seg;
  if (::stat("/proc/self/ns/ipc", &mine) < 0 || ::stat((proc::proc_dir(pid) + "/ns/ipc").c_str(), &its) < 0)
    return fail(sys_error("stat", "IPC namespace of pid " + std::to_string(pid)));
  if (mine.st_ino == its.st_ino)
    return fail(make_error(Errc::unsupported, "dump", area_name(pid, v),
                           "SysV shared memory of the dumper's own IPC namespace is not dumped")
                    .with_hint("run the tree in an IPC namespace of its own"));
  char range[64];
  snprintf(range, sizeof range, "%llx-%llx", (unsigned long long)v.start, (unsigned long long)v.end);
  std::string map_file = proc::proc_dir(pid) + "/map_files/" + range;
  if (::stat(map_file.c_str(), &seg) < 0) return fail(sys_error("stat", map_file));
  uint64_t whole = (uint64_t(seg.st_size) + 4095) / 4096 * 4096;
  if (v.pgoff != 0 || v.end - v.start != whole)
    return fail(make_error(Errc::unsupported, "dump", area_name(pid, v),
                           "a SysV segment attached in part (split or partly unmapped) is not supported yet"));
  return {};
}

}  // namespace

std::vector<int> madvices(const vma_entry& vma) {
  std::vector<int> out;
  for (int bit = 0; bit < 64; bit++)
    if (vma.madv() >> bit & 1) out.push_back(bit);
  return out;
}

Result<AddressSpace> collect_address_space(pid_t pid, const std::vector<proc::SmapsEntry>& smaps,
                                           files::DumpFiles& files) {
  AddressSpace as;
  for (const auto& s : smaps) {
    const proc::Vma& v = s.vma;
    vma_entry e;
    e.set_start(v.start);
    e.set_end(v.end);
    e.set_pgoff(0);
    e.set_shmid(0);
    e.set_prot(uint32_t(v.prot));
    e.set_fd(-1);
    uint32_t flags = v.shared ? MAP_SHARED : MAP_PRIVATE;
    if (s.has(proc::VmFlag::gd)) flags |= MAP_GROWSDOWN;
    if (s.has(proc::VmFlag::lo)) flags |= MAP_LOCKED;
    if (s.has(proc::VmFlag::nr)) flags |= MAP_NORESERVE;
    uint32_t status = 0;
    bool dump_private = false;

    // Missing pages of such an area are filled by whoever holds the userfaultfd: dumped now, they
    // would read as absent and be lost.
    if (s.has(proc::VmFlag::um))
      return fail(make_error(Errc::unsupported, "dump", area_name(pid, v),
                             "the area is registered with a userfaultfd for missing pages (a lazily restored tree whose "
                             "lazy-pages daemon still fills it, or the program's own userfaultfd)")
                      .with_hint("wait until `crshim lazy-pages` has exited; a program's own userfaultfd is not supported"));
    bool device = s.has(proc::VmFlag::io) || s.has(proc::VmFlag::pf) || s.has(proc::VmFlag::ht);
    if (device && !v.is_vsyscall() && !v.is_vdso() && !v.is_vvar() && !v.is_vvar_vclock())
      return fail(make_error(Errc::unsupported, "dump", area_name(pid, v),
                             "device or hugetlb mappings are not supported"));
    if (v.is_vsyscall()) {
      status = kVmaVsyscall | kVmaAnonPrivate;
      flags |= MAP_ANONYMOUS;
    } else if (v.is_vdso()) {
      status = kVmaRegular | kVmaVdso | kVmaAnonPrivate;
      flags |= MAP_ANONYMOUS;
    } else if (v.is_vvar() || v.is_vvar_vclock()) {
      status = kVmaRegular | kVmaVvar | kVmaAnonPrivate;
      flags |= MAP_ANONYMOUS;
    } else if (v.path.empty() || v.is_heap() || v.is_stack() || v.anon_name()) {
      flags |= MAP_ANONYMOUS;
      if (v.shared)
        return fail(make_error(Errc::unsupported, "dump", area_name(pid, v), "shared anonymous memory is not supported yet"));
      status = kVmaRegular | kVmaAnonPrivate | (v.is_heap() ? uint32_t(kVmaHeap) : 0u);
      dump_private = true;
    } else if (is_shared_anon(v)) {
      flags |= MAP_ANONYMOUS;
      status = kVmaRegular | kVmaAnonShared;
      e.set_shmid(v.inode);
      e.set_pgoff(v.pgoff);
      as.shared_anon.push_back(v);
    } else if (v.is_special()) {
      return fail(make_error(Errc::unsupported, "dump", area_name(pid, v), "unknown special mapping"));
    } else if (v.path.rfind("/SYSV", 0) == 0) {
      // An attached SysV segment (inode = its id): the segment is dumped with the tree's IPC namespace
      // and attached again whole at restore, so only whole attachments of the tree's own segments go.
      CR_OK(check_sysv_attachment(pid, v));
      e.set_shmid(v.inode);
      flags = MAP_SHARED;
      status = kVmaRegular | kVmaSysvipc;
    } else if (v.deleted && files::is_memfd_path(v.path)) {
      // A memfd, open or not: the same inode as any fd of it, its contents dumped once with memfd.img.
      uint32_t fdflags = (v.shared && (v.prot & PROT_WRITE)) ? O_RDWR : O_RDONLY;
      uint32_t id = CR_TRY(files::add_mapped_memfd(map_file_of(pid, v), v.path, fdflags, area_name(pid, v), files));
      e.set_shmid(id);
      e.set_pgoff(v.pgoff);
      e.set_fdflags(fdflags);
      status = kVmaRegular | kVmaMemfd | (v.shared ? kVmaFileShared : kVmaFilePrivate);
      dump_private = !v.shared;
    } else {
      // A file mapping: reopen the same file at restore; a deleted one comes back from a ghost image.
      std::string map_file = map_file_of(pid, v);
      struct stat st;
      if (::stat(map_file.c_str(), &st) < 0 && (v.deleted || ::stat(v.path.c_str(), &st) < 0))
        return fail(sys_error("stat", v.deleted ? map_file : v.path, "file mapped at " + area_name(pid, v)));
      if (st.st_ino != v.inode)
        return fail(make_error(Errc::unsupported, "dump", area_name(pid, v),
                               "the mapped file was replaced on disk (inode differs from the mapping's)"));
      // Unlinked under this name but linked elsewhere: neither the path nor a private copy is that file.
      if (v.deleted && st.st_nlink != 0)
        return fail(make_error(Errc::unsupported, "dump", area_name(pid, v),
                               "the mapped file was unlinked but still has other hard links"));
      uint32_t fdflags = (v.shared && (v.prot & PROT_WRITE)) ? O_RDWR : O_RDONLY;
      uint32_t id = CR_TRY(files::add_mapped_file(v.path, v.deleted, fdflags, st, map_file,
                                                  area_name(pid, v), files));
      e.set_shmid(id);
      e.set_pgoff(v.pgoff);
      e.set_fdflags(fdflags);
      status = kVmaRegular | (v.shared ? kVmaFileShared : kVmaFilePrivate);
      dump_private = !v.shared;
    }
    e.set_flags(flags);
    e.set_status(status);
    if (uint64_t madv = madv_bits(s)) e.set_madv(madv);
    if (dump_private) as.private_ranges.push_back({v.start, v.end});
    as.vmas.push_back(std::move(e));
  }
  return as;
}

}  // namespace crshim::mem
