#include "checkpoint/mem/shmem.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "checkpoint/base/sys.h"
#include "checkpoint/image/catalog.h"
#include "checkpoint/image/image.h"
#include "checkpoint/mem/pages.h"
#include "pagemap.pb.h"

namespace crshim::mem {

namespace {

std::string range_name(uint64_t start, uint64_t end) {
  char buf[64];
  snprintf(buf, sizeof buf, "%llx-%llx", (unsigned long long)start, (unsigned long long)end);
  return buf;
}

constexpr size_t kCopyChunk = 1u << 20;

}  // namespace

bool is_shared_anon(const proc::Vma& v) {
  return v.shared && v.deleted && v.path == "/dev/zero" && v.dev_major == 0;
}

namespace {

// Copies [start, end) of `fd` into `pages` (bytes past EOF of the last page read as zeros).
Status copy_out(int fd, uint64_t start, uint64_t end, image::Writer& pages, const std::string& what) {
  std::vector<char> buf(kCopyChunk);
  for (uint64_t off = start; off < end;) {
    size_t want = size_t(std::min<uint64_t>(kCopyChunk, end - off));
    size_t got = 0;
    while (got < want) {
      ssize_t n = ::pread(fd, buf.data() + got, want - got, off_t(off + got));
      if (n < 0) {
        if (errno == EINTR) continue;
        return fail(sys_error("pread", what));
      }
      if (n == 0) break;
      got += size_t(n);
    }
    std::fill(buf.begin() + long(got), buf.begin() + long(want), '\0');
    CR_OK(pages.write_raw(buf.data(), want));
    off += want;
  }
  return {};
}

}  // namespace

Status dump_shmem_contents(int fd, uint64_t size, uint64_t shmid, int dir, uint32_t pages_id, const std::string& what,
                           uint64_t* pages_written) {
  auto pagemap = CR_TRY(image::Writer::create(dir, image::pagemap_shmem_file(shmid), image::kind(image::Type::pagemap)));
  pagemap_head head;
  head.set_pages_id(pages_id);
  CR_OK(pagemap.write(head));
  auto pages = CR_TRY(image::Writer::create_raw(dir, image::pages_file(pages_id)));
  uint64_t end = (size + kPageSize - 1) / kPageSize * kPageSize;
  for (uint64_t off = 0; off < end;) {
    off_t data = ::lseek(fd, off_t(off), SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) break;  // only holes from here on
      return fail(sys_error("lseek(SEEK_DATA)", what));
    }
    off_t hole = ::lseek(fd, data, SEEK_HOLE);
    if (hole < 0) return fail(sys_error("lseek(SEEK_HOLE)", what));
    uint64_t start = std::max(off, uint64_t(data) / kPageSize * kPageSize);
    uint64_t stop = std::min(end, (uint64_t(hole) + kPageSize - 1) / kPageSize * kPageSize);
    if (stop <= start) break;
    pagemap_entry pe;
    pe.set_vaddr(start);  // an offset in the object for shmem pagemaps
    pe.set_compat_nr_pages(0);
    pe.set_flags(4);  // PE_PRESENT
    pe.set_nr_pages((stop - start) / kPageSize);
    CR_OK(pagemap.write(pe));
    CR_OK(copy_out(fd, start, stop, pages, what));
    if (pages_written) *pages_written += pe.nr_pages();
    off = stop;
  }
  CR_OK(pages.close());
  return pagemap.close();
}

Status dump_shmem(pid_t pid, const proc::Vma& vma, int images_dir, uint32_t pages_id, uint64_t& pages_written) {
  std::string path = proc::proc_dir(pid) + "/map_files/" + range_name(vma.start, vma.end);
  auto fd = CR_TRY(sys::open(path, O_RDONLY));
  struct stat st;
  if (fstat(fd.get(), &st) < 0) return fail(sys_error("fstat", path));
  return dump_shmem_contents(fd.get(), uint64_t(st.st_size), vma.inode, images_dir, pages_id, path, &pages_written);
}

Result<int> SharedMemory::object_fd(uint64_t shmid, uint64_t size) {
  if (auto it = objects_.find(shmid); it != objects_.end()) {
    if (size > sizes_[shmid]) {
      if (::ftruncate(it->second.get(), off_t(size)) < 0) return fail(sys_error("ftruncate", "shared memory " + std::to_string(shmid)));
      sizes_[shmid] = size;
    }
    return it->second.get();
  }
  // An anonymous shared mapping of our own makes the same kind of object as the task's; its
  // map_files entry gives us an fd that keeps it alive after we unmap it.
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return fail(sys_error("mmap", "shared memory " + std::to_string(shmid)));
  uint64_t start = reinterpret_cast<uint64_t>(p);
  auto fd = sys::open("/proc/self/map_files/" + range_name(start, start + size), O_RDWR);
  ::munmap(p, size);
  if (!fd) return fail(fd.error());

  std::string name = image::pagemap_shmem_file(shmid);
  auto reader = image::Reader::open(images_dir_, name, image::kind(image::Type::pagemap));
  if (reader) {
    pagemap_head head;
    bool got = CR_TRY(reader->read(head));
    if (!got) return fail(make_error(Errc::corrupt_image, "read", name, "no pagemap head"));
    auto pages = CR_TRY(PageSource::open(images_dir_, image::pages_file(head.pages_id())));
    for (;;) {
      pagemap_entry pe;
      got = CR_TRY(reader->read(pe));
      if (!got) break;
      uint64_t n = pe.has_nr_pages() ? pe.nr_pages() : pe.compat_nr_pages();
      if (pe.vaddr() % kPageSize || n > (1ull << 36) || pe.vaddr() + n * kPageSize < pe.vaddr())
        return fail(make_error(Errc::corrupt_image, "validate", name, "bad shmem pagemap entry"));
      if (pe.vaddr() + n * kPageSize > size) {
        size = pe.vaddr() + n * kPageSize;
        if (::ftruncate(fd->get(), off_t(size)) < 0) return fail(sys_error("ftruncate", name));
      }
      if (!(pe.flags() & kPePresent)) continue;
      CR_OK(pages.copy_to_file(fd->get(), pe.vaddr(), n));
    }
  } else if (reader.error().err != ENOENT) {
    return fail(reader.error());
  }
  int raw = fd->get();
  objects_[shmid] = std::move(*fd);
  sizes_[shmid] = size;
  return raw;
}

}  // namespace crshim::mem
