#include "checkpoint/restore/images.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <set>

#include "checkpoint/files/file_table.h"
#include "checkpoint/image/catalog.h"
#include "checkpoint/image/image.h"
#include "checkpoint/mem/compress.h"
#include "checkpoint/mem/pages.h"

namespace crshim::restorer {

namespace {

using image::kind;
using image::Type;

Error corrupt(const std::string& file, std::string what) {
  return make_error(Errc::corrupt_image, "validate", file, std::move(what))
      .with_hint("the image set is damaged or was not written by a compatible dump");
}

// An image the set cannot do without: its absence is damage to the set, not a system error.
Result<image::Reader> open_required(int dir, const std::string& name, Type type) {
  auto r = image::Reader::open(dir, name, kind(type));
  if (!r && r.error().err == ENOENT) return fail(corrupt(name, "missing image"));
  return r;
}

template <class M>
Status read_one(int dir, const std::string& name, Type type, M& out) {
  auto r = CR_TRY(open_required(dir, name, type));
  return r.read_one(out);
}

bool is_reg(const std::map<uint32_t, file_entry>& files, uint32_t id) {
  auto it = files.find(id);
  return it != files.end() && it->second.type() == REG;
}

// `process_alive`: for threads other than the leader, whether the leader's core says the task is live.
Status load_core(int dir, uint32_t tid, bool leader, bool process_alive, core_entry& core) {
  std::string name = image::core_file(tid);
  CR_OK(read_one(dir, name, Type::core, core));
  if (core.mtype() != core_entry::X86_64) return fail(corrupt(name, "not an x86_64 task"));
  if (leader && !core.has_tc()) return fail(corrupt(name, "thread-group leader without task state"));
  if (core.has_tc()) {
    uint32_t state = core.tc().task_state();
    if (state != 1 && state != 2 && state != 3 && state != 6)
      return fail(corrupt(name, "unknown task state " + std::to_string(state)));
  }
  // Every thread of a live task is restored from its registers, whatever its own core claims.
  bool alive = leader ? core.tc().task_state() == 1 : process_alive;
  if (!alive) return {};
  if (!core.has_thread_info() || !core.has_thread_core()) return fail(corrupt(name, "live task without registers"));
  const auto& fp = core.thread_info().fpregs();
  if (fp.st_space_size() < 32 || fp.xmm_space_size() < 64) return fail(corrupt(name, "incomplete FPU state"));
  if (core.thread_info().gpregs().mode() != NATIVE)
    return fail(make_error(Errc::unsupported, "restore", name, "32-bit (compat) tasks are not supported"));
  // No list at all means an old image with a separate sigacts file, which we do not read.
  if (leader && core.tc().sigactions_size() == 0)
    return fail(make_error(Errc::unsupported, "restore", name, "signal actions in a legacy sigacts image are not supported"));
  if (leader && core.tc().sigactions_size() != 62)
    return fail(corrupt(name, "expected 62 signal actions, found " + std::to_string(core.tc().sigactions_size())));
  return {};
}

Status check_mm(const std::string& name, const mm_entry& mm, const std::map<uint32_t, file_entry>& files) {
  if (size_t(mm.vmas_size()) > kMaxVmas) return fail(corrupt(name, "too many VMAs"));
  if (!is_reg(files, mm.exe_file_id())) return fail(corrupt(name, "exe_file_id refers to no regular file"));
  uint64_t prev_end = 0;
  for (const auto& v : mm.vmas()) {
    if (v.start() % mem::kPageSize || v.end() % mem::kPageSize || v.start() >= v.end())
      return fail(corrupt(name, "VMA with a bad range"));
    if (v.start() < prev_end) return fail(corrupt(name, "VMAs overlap or are not sorted"));
    prev_end = v.end();
    if (v.status() & (1u << 6 | 1u << 7)) {  // file mappings refer to a REG file (a MEMFD one with VMA_AREA_MEMFD)
      auto it = files.find(uint32_t(v.shmid()));
      fd_types want = (v.status() & 1u << 14) ? MEMFD : REG;
      if (v.shmid() > UINT32_MAX || it == files.end() || it->second.type() != want)
        return fail(corrupt(name, "file mapping refers to a missing file"));
    }
  }
  return {};
}

Status load_pagemap(int dir, ProcessImage& p) {
  std::string name = image::pagemap_file(p.pid());
  auto r = CR_TRY(open_required(dir, name, Type::pagemap));
  pagemap_head head;
  bool got = CR_TRY(r.read(head));
  if (!got) return fail(corrupt(name, "no pagemap head"));
  p.pages_id = head.pages_id();
  uint64_t prev_end = 0;
  size_t vma = 0;
  const auto& vmas = p.mm.vmas();
  for (;;) {
    pagemap_entry pe;
    got = CR_TRY(r.read(pe));
    if (!got) break;
    uint64_t n = pe.has_nr_pages() ? pe.nr_pages() : pe.compat_nr_pages();
    pe.set_nr_pages(n);
    if (!pe.has_flags()) pe.set_flags(pe.in_parent() ? 1 : 4);
    uint64_t start = pe.vaddr(), end = start + n * mem::kPageSize;
    if (start % mem::kPageSize || n == 0 || n > (1ull << 36) || end < start || start < prev_end)
      return fail(corrupt(name, "bad or unsorted pagemap entry"));
    while (vma < size_t(vmas.size()) && vmas[int(vma)].end() <= start) vma++;
    if (vma == size_t(vmas.size()) || vmas[int(vma)].start() > start)
      return fail(corrupt(name, "pagemap entry outside of any VMA"));
    // CRIU merges pages of adjacent VMAs into one entry: it may span VMAs, but no hole between them.
    for (size_t k = vma; vmas[int(k)].end() < end; k++)
      if (k + 1 == size_t(vmas.size()) || vmas[int(k + 1)].start() != vmas[int(k)].end())
        return fail(corrupt(name, "pagemap entry outside of any VMA"));
    prev_end = end;
    p.pagemap.push_back(pe);
    if (p.pagemap.size() > kMaxVmas * 4) return fail(corrupt(name, "too many pagemap entries"));
  }
  // The pages image must hold every present page.
  uint64_t pages = 0;
  for (const auto& pe : p.pagemap)
    if (pe.flags() & mem::kPePresent) pages += pe.nr_pages();
  struct stat st;
  std::string pages_name = image::pages_file(p.pages_id);
  if (fstatat(dir, pages_name.c_str(), &st, 0) < 0) {
    if (errno != ENOENT) return fail(sys_error("stat", pages_name));
    if (pages == 0) return {};
    return fail(corrupt(pages_name, "missing image; pagemap needs " + std::to_string(pages) + " pages"));
  }
  // A compressed image is checked against its pagemap as it is decompressed.
  if (uint64_t(st.st_size) / mem::kPageSize < pages && !CR_TRY(mem::is_compressed(dir, pages_name)))
    return fail(corrupt(pages_name, "holds " + std::to_string(st.st_size / mem::kPageSize) + " pages, pagemap needs " +
                                        std::to_string(pages)));
  return {};
}

Status load_fds(int dir, ProcessImage& p, const std::map<uint32_t, file_entry>& files) {
  std::string name = image::fdinfo_file(p.ids.files_id());
  auto r = image::Reader::open(dir, name, kind(Type::fdinfo));
  if (!r) {
    if (r.error().err == ENOENT) return {};  // a task without fds
    return fail(r.error());
  }
  std::set<uint32_t> seen;
  for (;;) {
    fdinfo_entry fe;
    bool got = CR_TRY(r->read(fe));
    if (!got) break;
    auto it = files.find(fe.id());
    if (it == files.end()) return fail(corrupt(name, "fd " + std::to_string(fe.fd()) + " refers to a missing file"));
    if (it->second.type() != fe.type())
      return fail(corrupt(name, "fd " + std::to_string(fe.fd()) + " type differs from its file's"));
    if (fe.fd() > (1u << 30) || !seen.insert(fe.fd()).second)
      return fail(corrupt(name, "bad or duplicate fd number " + std::to_string(fe.fd())));
    p.fds.push_back(fe);
    if (p.fds.size() > kMaxFds) return fail(corrupt(name, "too many fds"));
  }
  return {};
}

// Every thread in filter mode points into seccomp.img, and every chain link stays inside the list.
Status check_seccomp(const ImageSet& set) {
  const auto& filters = set.seccomp.seccomp_filters();
  for (int i = 0; i < filters.size(); i++) {
    if (filters[i].has_prev() && filters[i].prev() >= uint32_t(filters.size()))
      return fail(corrupt(image::kSeccompFile, "filter " + std::to_string(i) + " links to a missing filter"));
    if (filters[i].filter().empty() || filters[i].filter().size() % 8)
      return fail(corrupt(image::kSeccompFile, "filter " + std::to_string(i) + " is not a BPF program"));
  }
  for (const auto& p : set.processes)
    for (size_t i = 0; i < p.cores.size(); i++) {
      const auto& tcore = p.cores[i].thread_core();
      if (tcore.seccomp_mode() == filter && tcore.seccomp_filter() >= uint32_t(filters.size()))
        return fail(corrupt(image::kSeccompFile, "thread " + std::to_string(p.pstree.threads(int(i))) +
                                                     " uses filter " + std::to_string(tcore.seccomp_filter()) +
                                                     " of " + std::to_string(filters.size())));
    }
  return {};
}

}  // namespace

Result<ImageSet> load_images(int dir) {
  ImageSet set;
  CR_OK(read_one(dir, image::kInventoryFile, Type::inventory, set.inventory));
  if (set.inventory.img_version() != 2)
    return fail(make_error(Errc::incompatible, "restore", image::kInventoryFile,
                           "image version " + std::to_string(set.inventory.img_version()) + " is not supported"));
  auto files = files::read_file_table(dir);
  if (!files && files.error().err == ENOENT) return fail(corrupt(image::kFilesFile, "missing image"));
  if (!files) return fail(files.error());
  set.files = std::move(*files);

  auto pr = CR_TRY(open_required(dir, image::kPstreeFile, Type::pstree));
  std::set<uint32_t> pids, tids;
  for (;;) {
    ProcessImage p;
    bool got = CR_TRY(pr.read(p.pstree));
    if (!got) break;
    const auto& ps = p.pstree;
    if (ps.pid() == 0 || !pids.insert(ps.pid()).second) return fail(corrupt(image::kPstreeFile, "bad or duplicate pid"));
    if (set.processes.empty() != (ps.ppid() == 0))
      return fail(corrupt(image::kPstreeFile, "the root task must come first and be the only one without a parent"));
    if (ps.ppid() != 0 && !pids.count(ps.ppid()))
      return fail(corrupt(image::kPstreeFile, "task " + std::to_string(ps.pid()) + " comes before its parent"));
    if (set.processes.size() >= kMaxTasks) return fail(corrupt(image::kPstreeFile, "too many tasks"));
    if (ps.threads_size() == 0 || size_t(ps.threads_size()) > kMaxThreads || ps.threads(0) != ps.pid())
      return fail(corrupt(image::kPstreeFile, "task " + std::to_string(ps.pid()) + " has a bad thread list"));
    if (ps.crshim_ns_pid_size() > 32 || ps.crshim_ns_threads_size() != ps.threads_size() * ps.crshim_ns_pid_size() ||
        (ps.crshim_ns_pid_size() && ps.crshim_ns_threads(ps.crshim_ns_pid_size() - 1) != ps.crshim_ns_pid(ps.crshim_ns_pid_size() - 1)))
      return fail(corrupt(image::kPstreeFile, "task " + std::to_string(ps.pid()) + " has bad nested pid namespace pids"));
    set.processes.push_back(std::move(p));
  }
  if (set.processes.empty()) return fail(corrupt(image::kPstreeFile, "no tasks"));

  for (auto& p : set.processes) {
    for (int i = 0; i < p.pstree.threads_size(); i++) {
      uint32_t tid = p.pstree.threads(i);
      if (!tids.insert(tid).second) return fail(corrupt(image::kPstreeFile, "duplicate thread id " + std::to_string(tid)));
      core_entry core;
      CR_OK(load_core(dir, tid, i == 0, i > 0 && p.alive(), core));
      p.cores.push_back(std::move(core));
    }
    if (!p.alive()) continue;
    CR_OK(read_one(dir, image::ids_file(p.pid()), Type::ids, p.ids));
    CR_OK(read_one(dir, image::mm_file(p.pid()), Type::mm, p.mm));
    CR_OK(check_mm(image::mm_file(p.pid()), p.mm, set.files));
    CR_OK(load_pagemap(dir, p));
    CR_OK(read_one(dir, image::fs_file(p.pid()), Type::fs, p.fs));
    if (!is_reg(set.files, p.fs.cwd_id()) || !is_reg(set.files, p.fs.root_id()))
      return fail(corrupt(image::fs_file(p.pid()), "cwd or root refers to no regular file"));
    CR_OK(load_fds(dir, p, set.files));
  }

  auto sr = image::Reader::open(dir, image::kSeccompFile, kind(Type::seccomp));
  if (sr) {
    bool got = CR_TRY(sr->read(set.seccomp));
    (void)got;
  } else if (sr.error().err != ENOENT) {
    return fail(sr.error());
  }
  CR_OK(check_seccomp(set));
  return set;
}

}  // namespace crshim::restorer
