#include "checkpoint/mem/parent_pages.h"

#include <fcntl.h>

#include "checkpoint/base/sys.h"
#include "checkpoint/image/catalog.h"
#include "checkpoint/image/image.h"
#include "checkpoint/mem/pages.h"
#include "pagemap.pb.h"

namespace crshim::mem {

namespace {

constexpr size_t kMaxDepth = 64;  // a longer chain is a loop or a damaged image set
constexpr uint32_t kParent = 1, kPresent = 4;

}  // namespace

Result<ParentChain::Level*> ParentChain::level(size_t depth) {
  while (levels_.size() <= depth) {
    if (levels_.size() == kMaxDepth)
      return fail(make_error(Errc::corrupt_image, "restore", "parent", "more than 64 parent images: a loop?"));
    int below = levels_.empty() ? images_dir_ : levels_.back()->dir.get();
    auto dir = sys::open_at(below, "parent", O_RDONLY | O_DIRECTORY);
    if (!dir)
      return fail(dir.error().with_hint("pages of this dump are in the previous dump's images: keep them, linked as \"parent\""));
    auto l = std::make_unique<Level>();
    l->dir = std::move(*dir);
    levels_.push_back(std::move(l));
  }
  return levels_[depth].get();
}

Result<const std::pair<std::string, std::vector<ParentChain::Entry>>*> ParentChain::pagemap(size_t depth, uint32_t vpid) {
  Level* l = CR_TRY(level(depth));
  if (auto it = l->pagemaps.find(vpid); it != l->pagemaps.end()) return &it->second;
  std::string name = image::pagemap_file(vpid);
  auto r = CR_TRY(image::Reader::open(l->dir.get(), name, image::kind(image::Type::pagemap)));
  pagemap_head head;
  if (!CR_TRY(r.read(head))) return fail(make_error(Errc::corrupt_image, "restore", "parent/" + name, "no pagemap head"));
  std::vector<Entry> entries;
  uint64_t offset = 0, prev_end = 0;
  for (;;) {
    pagemap_entry pe;
    if (!CR_TRY(r.read(pe))) break;
    uint64_t n = pe.has_nr_pages() ? pe.nr_pages() : pe.compat_nr_pages();
    uint32_t flags = pe.has_flags() ? pe.flags() : (pe.in_parent() ? kParent : kPresent);
    uint64_t start = pe.vaddr(), end = start + n * kPageSize;
    if (start % kPageSize || n == 0 || n > (1ull << 36) || end < start || start < prev_end)
      return fail(make_error(Errc::corrupt_image, "restore", "parent/" + name, "bad or unsorted pagemap entry"));
    prev_end = end;
    entries.push_back({start, end, (flags & kPresent) != 0, offset});
    if (flags & kPresent) offset += n;
  }
  auto& slot = l->pagemaps[vpid];
  slot = {image::pages_file(head.pages_id()), std::move(entries)};
  return &slot;
}

Status ParentChain::resolve_at(size_t depth, uint32_t vpid, uint64_t start, uint64_t end, std::vector<Run>& out) {
  const auto* pm = CR_TRY(pagemap(depth, vpid));
  uint64_t at = start;
  for (const auto& e : pm->second) {
    if (e.end <= at) continue;
    if (e.start > at || at >= end) break;
    uint64_t to = std::min(end, e.end);
    if (e.present)
      out.push_back({levels_[depth]->dir.get(), pm->first, at, (to - at) / kPageSize,
                     e.page_offset + (at - e.start) / kPageSize});
    else
      CR_OK(resolve_at(depth + 1, vpid, at, to, out));
    at = to;
  }
  if (at < end)
    return fail(make_error(Errc::corrupt_image, "restore", "parent/" + image::pagemap_file(vpid),
                           "no parent image holds the page at " + std::to_string(at)));
  return {};
}

Result<std::vector<ParentChain::Run>> ParentChain::resolve(uint32_t vpid, uint64_t vaddr, uint64_t nr_pages) {
  std::vector<Run> out;
  CR_OK(resolve_at(0, vpid, vaddr, vaddr + nr_pages * kPageSize, out));
  return out;
}

}  // namespace crshim::mem
