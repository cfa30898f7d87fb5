#include "checkpoint/dump/incremental.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint/base/sys.h"
#include "checkpoint/image/catalog.h"
#include "checkpoint/image/image.h"
#include "pagemap.pb.h"

namespace crshim::dumper {

Result<ParentImages> ParentImages::link(int images_dir, const std::string& parent_img) {
  // A "parent" link left by an earlier dump into the same directory is replaced.
  struct stat st;
  if (::fstatat(images_dir, "parent", &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode))
    ::unlinkat(images_dir, "parent", 0);
  if (::symlinkat(parent_img.c_str(), images_dir, "parent") < 0)
    return fail(sys_error("symlink", "parent -> " + parent_img, "--prev-images-dir"));
  ParentImages p;
  auto dir = sys::open_at(images_dir, "parent", O_RDONLY | O_DIRECTORY);
  if (!dir) return fail(dir.error().within("--prev-images-dir " + parent_img).with_hint("give the previous dump's images directory, relative to this one"));
  p.dir_ = std::move(*dir);
  auto text = sys::read_file_at(p.dir_.get(), kTrackingRecord);
  if (!text) return p;  // no tracking then: every page is written in full
  for (auto line : sys::split(*text, '\n')) {
    auto f = sys::split(line, ' ');
    uint64_t vpid, inode;
    if (f.size() == 2 && sys::parse_u64(f[0], vpid) && sys::parse_u64(f[1], inode)) p.tracking_[uint32_t(vpid)] = inode;
  }
  return p;
}

uint64_t ParentImages::tracking(uint32_t vpid) const {
  auto it = tracking_.find(vpid);
  return it == tracking_.end() ? 0 : it->second;
}

Result<std::vector<mem::Range>> ParentImages::covered(uint32_t vpid) const {
  std::vector<mem::Range> out;
  auto r = image::Reader::open(dir_.get(), image::pagemap_file(vpid), image::kind(image::Type::pagemap));
  if (!r) return r.error().err == ENOENT ? Result<std::vector<mem::Range>>(out) : fail(r.error());
  pagemap_head head;
  if (!CR_TRY(r->read(head))) return out;
  for (;;) {
    pagemap_entry pe;
    if (!CR_TRY(r->read(pe))) break;
    uint64_t n = pe.has_nr_pages() ? pe.nr_pages() : pe.compat_nr_pages();
    out.push_back({pe.vaddr(), pe.vaddr() + n * mem::kPageSize});
  }
  return mem::intersect(out, out);  // merged into maximal runs
}

Status write_tracking_record(int images_dir, const std::map<uint32_t, uint64_t>& tracking) {
  std::string text;
  for (const auto& [vpid, inode] : tracking) text += std::to_string(vpid) + " " + std::to_string(inode) + "\n";
  UniqueFd fd = CR_TRY(sys::open_at(images_dir, kTrackingRecord, O_WRONLY | O_CREAT | O_TRUNC, 0644));
  return sys::write_all(fd.get(), text, kTrackingRecord);
}

}  // namespace crshim::dumper
