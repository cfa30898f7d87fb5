#include "checkpoint/dump/incremental.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>

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
  if (!r && r.error().err == ENOENT) return covered_by_record(vpid);
  if (!r) return fail(r.error());
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

// Lines "vpid start-end start-end ..." (hex addresses).
Result<std::vector<mem::Range>> ParentImages::covered_by_record(uint32_t vpid) const {
  std::vector<mem::Range> out;
  auto text = sys::read_file_at(dir_.get(), kCoverageRecord);
  if (!text) return out;  // neither pagemap nor record: nothing is taken from the parent
  for (auto line : sys::split(*text, '\n')) {
    auto f = sys::split(line, ' ');
    uint64_t id;
    if (f.empty() || !sys::parse_u64(f[0], id) || id != vpid) continue;
    for (size_t i = 1; i < f.size(); i++) {
      auto ends = sys::split(f[i], '-');
      uint64_t a, b;
      if (ends.size() != 2 || !sys::parse_u64(ends[0], a, 16) || !sys::parse_u64(ends[1], b, 16) || a >= b ||
          a % mem::kPageSize || b % mem::kPageSize)
        return fail(make_error(Errc::corrupt_image, "read", kCoverageRecord, "bad range in line of pid " + std::to_string(vpid)));
      out.push_back({a, b});
    }
  }
  std::sort(out.begin(), out.end(), [](const mem::Range& x, const mem::Range& y) { return x.start < y.start; });
  return mem::intersect(out, out);
}

Status write_coverage_record(int images_dir, const std::map<uint64_t, std::vector<mem::Range>>& coverage) {
  std::string text;
  char buf[48];
  for (const auto& [vpid, ranges] : coverage) {
    text += std::to_string(vpid);
    for (const auto& r : ranges) {
      snprintf(buf, sizeof buf, " %llx-%llx", (unsigned long long)r.start, (unsigned long long)r.end);
      text += buf;
    }
    text += "\n";
  }
  UniqueFd fd = CR_TRY(sys::open_at(images_dir, kCoverageRecord, O_WRONLY | O_CREAT | O_TRUNC, 0644));
  return sys::write_all(fd.get(), text, kCoverageRecord);
}

Status write_tracking_record(int images_dir, const std::map<uint32_t, uint64_t>& tracking) {
  std::string text;
  for (const auto& [vpid, inode] : tracking) text += std::to_string(vpid) + " " + std::to_string(inode) + "\n";
  UniqueFd fd = CR_TRY(sys::open_at(images_dir, kTrackingRecord, O_WRONLY | O_CREAT | O_TRUNC, 0644));
  return sys::write_all(fd.get(), text, kTrackingRecord);
}

}  // namespace crshim::dumper
