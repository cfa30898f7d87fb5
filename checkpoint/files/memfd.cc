// Memfds, stored as CRIU 4.2 does: a memfd_file_entry per open file in files.img, pointing at a
// memfd_inode_entry in memfd.img (name, size, owner, mode, seals); the contents are a shmem pagemap,
// pagemap-shmem-<shmid>.img (offsets in the file as addresses, holes left out), with its pages-N.img.
// Restore creates the inode once (memfd_create, contents, seals last) and reopens it per open file, so
// open files that shared an inode share one again. Mapped memfds (add_mapped_memfd) get a MEMFD entry of
// their own that the VMA names; the inode is dumped once, whether reached by fd or by mapping.
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
#include <vector>

#include "checkpoint/base/sys.h"
#include "checkpoint/files/anon_common.h"
#include "checkpoint/files/kinds.h"
#include "checkpoint/files/memfd.h"
#include "checkpoint/image/catalog.h"
#include "checkpoint/mem/pages.h"
#include "checkpoint/mem/shmem.h"
#include "checkpoint/ns/userns.h"
#include "memfd.pb.h"
#include "pagemap.pb.h"

#ifndef MFD_EXEC
#define MFD_EXEC 0x0010U
#endif
#ifndef HUGETLBFS_MAGIC
#define HUGETLBFS_MAGIC 0x958458f6
#endif

namespace crshim::files {

namespace {

constexpr const char* kKind = "memfd";
constexpr const char* kInodes = "memfd inode";  // seen(): inode number -> memfd_inode_entry.inode_id
constexpr uint64_t kPage = 4096;
// pages-N.img numbers of memfd contents: a range of their own, far above the per-process ones
// (which count from 1), as the shmem pagemaps are written while the processes are dumped.
constexpr uint32_t kPagesIdBase = 0x40000000;
constexpr size_t kChunk = 1 << 20;
constexpr size_t kMaxName = 249;  // memfd_create's limit, without the "memfd:" prefix
constexpr int kReopenFlags = O_ACCMODE | O_APPEND | O_NONBLOCK | O_NOATIME | O_DIRECT | O_LARGEFILE;

bool matches(const OpenFd& f) { return f.link.rfind("/memfd:", 0) == 0; }

std::string unsupported(const OpenFd& f, bool) {
  struct statfs sfs;
  std::string path = proc::proc_dir(f.pid) + "/fd/" + std::to_string(f.fd);
  if (::statfs(path.c_str(), &sfs) == 0 && sfs.f_type == HUGETLBFS_MAGIC) return "hugetlb memfd";
  return "";
}

std::string memfd_name(const std::string& link) {
  std::string name = link.substr(7);  // after "/memfd:"
  if (name.ends_with(" (deleted)")) name.resize(name.size() - 10);
  return name;
}

// Adds the inode open as `fd` (named `link` in /proc) to memfd.img, once per inode, and returns its inode_id.
Result<uint32_t> dump_inode(int fd, const std::string& link, const std::string& what, DumpFiles& files) {
  struct stat st;
  if (::fstat(fd, &st) < 0) return fail(sys_error("fstat", what));
  auto& inodes = files.seen()[kInodes];
  if (auto it = inodes.find(uint64_t(st.st_ino)); it != inodes.end()) return it->second;
  // A read-only view of the inode, whatever the task's file allows.
  auto rfd = CR_TRY(sys::open("/proc/self/fd/" + std::to_string(fd), O_RDONLY));
  int seals = ::fcntl(fd, F_GET_SEALS);
  if (seals < 0) return fail(sys_error("fcntl(F_GET_SEALS)", what));
  uint32_t inode_id = uint32_t(inodes.size() + 1);
  // As CRIU: the shmem id is the inode number, which names the contents' pagemap.
  uint32_t shmid = uint32_t(st.st_ino);
  memfd_inode_entry mie;
  mie.set_name(memfd_name(link));
  auto owner = ns::owner_in_image(files.userns(), {st.st_uid, st.st_gid});
  mie.set_uid(owner.uid);
  mie.set_gid(owner.gid);
  mie.set_size(uint64_t(st.st_size));
  mie.set_shmid(shmid);
  mie.set_seals(uint32_t(seals));
  mie.set_inode_id(inode_id);
  mie.set_mode(st.st_mode);
  CR_OK(mem::dump_shmem_contents(rfd.get(), uint64_t(st.st_size), shmid, files.images_dir(), kPagesIdBase + inode_id, what));
  auto* w = CR_TRY(files.writer(image::kMemfdFile, image::Type::memfd_inode));
  CR_OK(w->write(mie));
  inodes[uint64_t(st.st_ino)] = inode_id;
  return inode_id;
}

Result<uint32_t> dump(const OpenFd& f, DumpFiles& files) {
  if (uint32_t id = anon::shared_id(f, files, kKind)) {
    anon::remember(f, files, kKind, id);
    return id;
  }
  auto stolen = CR_TRY(f.steal());
  uint32_t inode_id = CR_TRY(dump_inode(stolen.get(), f.link, f.name(), files));
  file_entry fe;
  fe.set_type(MEMFD);
  fe.set_id(0);
  memfd_file_entry* e = fe.mutable_memfd();
  e->set_id(0);
  e->set_flags(f.open_flags());
  e->set_pos(f.info.pos);
  *e->mutable_fown() = CR_TRY(anon::dump_fown(stolen.get(), f.name()));
  e->set_inode_id(inode_id);
  uint32_t id = CR_TRY(anon::add_file(files, std::move(fe), [](file_entry& x, uint32_t i) { x.mutable_memfd()->set_id(i); }));
  anon::remember(f, files, kKind, id);
  return id;
}

}  // namespace

Result<uint32_t> add_mapped_memfd(const std::string& map_file, const std::string& path, uint32_t flags,
                                  const std::string& what, DumpFiles& files) {
  auto fd = sys::open(map_file, O_RDONLY);
  if (!fd) return fail(fd.error().within(what));
  uint32_t inode_id = CR_TRY(dump_inode(fd->get(), path, what, files));
  // One file entry per inode and access mode serves every mapping of it (and every task).
  auto& entries = files.seen()["memfd mapping"];
  uint64_t key = uint64_t(inode_id) << 2 | (flags & O_ACCMODE);
  if (auto it = entries.find(key); it != entries.end()) return it->second;
  file_entry fe;
  fe.set_type(MEMFD);
  fe.set_id(0);
  memfd_file_entry* e = fe.mutable_memfd();
  e->set_id(0);
  e->set_flags(flags);
  e->set_pos(0);
  fown_entry* own = e->mutable_fown();  // a mapping's file has no owner
  own->set_uid(0);
  own->set_euid(0);
  own->set_signum(0);
  own->set_pid_type(0);
  own->set_pid(0);
  e->set_inode_id(inode_id);
  uint32_t id = CR_TRY(anon::add_file(files, std::move(fe), [](file_entry& x, uint32_t i) { x.mutable_memfd()->set_id(i); }));
  entries[key] = id;
  return id;
}

namespace {

// ---- restore -------------------------------------------------------------------------------------

// memfd.img, loaded on first use into files.data()[image::kMemfdFile] by inode_id.
Result<memfd_inode_entry> inode_entry(uint64_t inode_id, RestoreFiles& files) {
  auto& entries = files.data()[image::kMemfdFile];
  auto& loaded = files.data()["memfd.img loaded"];
  if (loaded.empty()) {
    auto r = CR_TRY(image::Reader::open(files.images_dir(), image::kMemfdFile, image::kind(image::Type::memfd_inode)));
    for (;;) {
      memfd_inode_entry mie;
      if (!CR_TRY(r.read(mie))) break;
      if (!entries.emplace(mie.inode_id(), mie.SerializeAsString()).second)
        return fail(make_error(Errc::corrupt_image, "read", image::kMemfdFile, "duplicate inode_id " + std::to_string(mie.inode_id())));
      if (entries.size() > 1000000) return fail(make_error(Errc::corrupt_image, "read", image::kMemfdFile, "too many entries"));
    }
    loaded[0] = "yes";
  }
  auto it = entries.find(inode_id);
  if (it == entries.end())
    return fail(make_error(Errc::corrupt_image, "restore", image::kMemfdFile, "no memfd inode " + std::to_string(inode_id)));
  memfd_inode_entry mie;
  mie.ParseFromString(it->second);
  return mie;
}

// Fills the new memfd `fd` (already `size` bytes long) from its shmem pagemap.
Status restore_contents(int dir, int fd, const memfd_inode_entry& mie, const std::string& what) {
  std::string name = image::pagemap_shmem_file(mie.shmid());
  auto r = image::Reader::open(dir, name, image::kind(image::Type::pagemap));
  if (!r) {
    if (r.error().err == ENOENT) return {};  // nothing but holes, as a missing image is an empty one
    return fail(r.error());
  }
  pagemap_head head;
  if (!CR_TRY(r->read(head))) return {};
  std::string pages_name = image::pages_file(head.pages_id());
  auto pages = CR_TRY(sys::open_at(dir, pages_name, O_RDONLY));
  uint64_t size = mie.size();
  uint64_t limit = (size + kPage - 1) / kPage * kPage;
  uint64_t offset = 0, prev_end = 0;
  std::vector<char> buf(kChunk);
  for (;;) {
    pagemap_entry pe;
    if (!CR_TRY(r->read(pe))) break;
    uint64_t n = pe.has_nr_pages() ? pe.nr_pages() : pe.compat_nr_pages();
    uint32_t flags = pe.has_flags() ? pe.flags() : (pe.in_parent() ? mem::kPeParent : mem::kPePresent);
    uint64_t start = pe.vaddr();
    if (start % kPage || n == 0 || n > limit / kPage || start > limit - n * kPage || start < prev_end)
      return fail(make_error(Errc::corrupt_image, "restore", name, "bad or unsorted pagemap entry at " + std::to_string(start)));
    if (!(flags & mem::kPePresent))
      return fail(make_error(Errc::unsupported, "restore", name, "pages not in this image (parent or lazy)"));
    uint64_t end = start + n * kPage;
    for (uint64_t off = start; off < end;) {
      size_t chunk = size_t(std::min<uint64_t>(kChunk, end - off));
      CR_OK(sys::pread_exact(pages.get(), buf.data(), chunk, off_t(offset), pages_name));
      // The last page may run past the end of the file.
      size_t keep = size_t(std::min<uint64_t>(chunk, size - off));
      CR_OK(sys::pwrite_all(fd, buf.data(), keep, off_t(off), what));
      offset += chunk;
      off += chunk;
    }
    prev_end = end;
  }
  return {};
}

// The memfd for inode `inode_id`, created with its contents and seals on first use.
Result<int> inode_fd(uint64_t inode_id, RestoreFiles& files) {
  auto& objects = files.objects()[kKind];
  if (auto it = objects.find(inode_id); it != objects.end()) return it->second.get();
  auto mie = CR_TRY(inode_entry(inode_id, files));
  std::string what = "memfd inode " + std::to_string(inode_id) + " (" + mie.name() + ")";
  if (mie.has_hugetlb_flag() && mie.hugetlb_flag())
    return fail(make_error(Errc::unsupported, "restore", what, "hugetlb memfds are not supported yet"));
  if (mie.name().size() > kMaxName || mie.name().find('\0') != std::string::npos)
    return fail(make_error(Errc::corrupt_image, "restore", what, "bad memfd name"));
  if (mie.size() > uint64_t(INT64_MAX)) return fail(make_error(Errc::corrupt_image, "restore", what, "bad size"));
  unsigned flags = MFD_CLOEXEC | MFD_ALLOW_SEALING;
  // Executable like a memfd made without flags, unless the system forbids that (vm.memfd_noexec).
  UniqueFd fd(::memfd_create(mie.name().c_str(), flags | MFD_EXEC));
  if (!fd && errno == EINVAL) fd = UniqueFd(::memfd_create(mie.name().c_str(), flags));
  if (!fd) return fail(sys_error("memfd_create", what));
  auto owner = CR_TRY(ns::owner_on_host(files.userns(), {mie.uid(), mie.gid()}, what));
  if (::fchown(fd.get(), owner.uid, owner.gid) < 0) return fail(sys_error("fchown", what));
  if (mie.has_mode() && ::fchmod(fd.get(), mie.mode() & 07777) < 0) return fail(sys_error("fchmod", what));
  if (::ftruncate(fd.get(), off_t(mie.size())) < 0) return fail(sys_error("ftruncate", what));
  CR_OK_IN(restore_contents(files.images_dir(), fd.get(), mie, what), what);
  // Last: the seals would forbid the writes above.
  if (mie.seals() && ::fcntl(fd.get(), F_ADD_SEALS, int(mie.seals())) < 0)
    return fail(sys_error("fcntl(F_ADD_SEALS)", what, "seals " + std::to_string(mie.seals())));
  int raw = fd.get();
  objects[inode_id] = std::move(fd);
  return raw;
}

Result<UniqueFd> open(const file_entry& fe, RestoreFiles& files) {
  std::string what = anon::file_name(kKind, fe.id());
  if (!fe.has_memfd()) return fail(make_error(Errc::corrupt_image, "restore", what, "no memfd payload"));
  const memfd_file_entry& e = fe.memfd();
  int inode = CR_TRY(inode_fd(e.inode_id(), files));
  // A new open file of the same inode, with this file's own flags and position.
  auto fd = CR_TRY(sys::open("/proc/self/fd/" + std::to_string(inode), int(e.flags()) & kReopenFlags));
  if (e.pos() > uint64_t(INT64_MAX) || ::lseek(fd.get(), off_t(e.pos()), SEEK_SET) < 0)
    return fail(sys_error("lseek", what, "position " + std::to_string(e.pos())));
  CR_OK(anon::restore_fown(fd.get(), e.fown(), what));
  return fd;
}

}  // namespace

extern const FileKind kMemfdKind{"memfd", MEMFD, matches, unsupported, dump, open, nullptr};

}  // namespace crshim::files
