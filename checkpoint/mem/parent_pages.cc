#include "checkpoint/mem/parent_pages.h"

#include <fcntl.h>

#include <algorithm>

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

Result<uint64_t> restore_from_parents(pid_t pid, int mem_fd, int images_dir, uint32_t vpid,
                                      const std::vector<std::pair<uint64_t, uint64_t>>& pieces, ProgressSink* progress) {
  if (pieces.empty()) return uint64_t(0);
  ParentChain chain(images_dir);
  std::map<std::pair<int, std::string>, std::vector<ParentChain::Run>> by_source;
  for (const auto& [vaddr, nr_pages] : pieces)
    for (auto& run : CR_TRY(chain.resolve(vpid, vaddr, nr_pages))) by_source[{run.dir, run.pages}].push_back(run);
  uint64_t written = 0;
  for (auto& [source, runs] : by_source) {
    auto pages = CR_TRY(PageSource::open(source.first, source.second));
    std::sort(runs.begin(), runs.end(), [](const auto& a, const auto& b) { return a.page_offset < b.page_offset; });
    for (const auto& run : runs) {
      uint64_t at = pages.offset() / kPageSize;
      if (run.page_offset < at)
        return fail(make_error(Errc::corrupt_image, "restore", "parent/" + source.second, "pages used twice"));
      CR_OK(pages.skip(run.page_offset - at));
      CR_OK_IN(pages.restore(pid, mem_fd, run.vaddr, run.nr_pages), "memory from the parent images");
      written += run.nr_pages;
      progress_advance(progress, run.nr_pages);
    }
  }
  return written;
}

}  // namespace crshim::mem
