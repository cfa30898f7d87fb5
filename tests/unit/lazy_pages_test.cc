#include <gtest/gtest.h>
#include <sys/mman.h>

#include "checkpoint/mem/lazy.h"
#include "checkpoint/mem/vmas.h"

namespace crshim::mem {
namespace {

constexpr uint64_t P = kPageSize;

pagemap_entry entry(uint64_t vaddr, uint64_t n, std::optional<uint32_t> flags, bool in_parent = false) {
  pagemap_entry pe;
  pe.set_vaddr(vaddr);
  pe.set_compat_nr_pages(0);
  pe.set_nr_pages(n);
  if (flags) pe.set_flags(*flags);
  if (in_parent) pe.set_in_parent(true);
  return pe;
}

TEST(LazyPages, IndexCountsOnlyPresentPagesForOffsets) {
  std::vector<pagemap_entry> pm = {entry(0x1000, 3, kPePresent), entry(0x10000, 2, kPeParent),
                                   entry(0x20000, 4, kPePresent | kPeLazy), entry(0x30000, 1, std::nullopt),
                                   entry(0x40000, 1, std::nullopt, true)};
  auto runs = index_pagemap(pm);
  ASSERT_EQ(runs.size(), 5u);
  EXPECT_EQ(runs[0].page_offset, 0u);
  EXPECT_EQ(runs[1].flags, kPeParent);
  EXPECT_EQ(runs[2].page_offset, 3u);  // the PARENT entry holds no bytes
  EXPECT_EQ(runs[3].page_offset, 7u);
  EXPECT_EQ(runs[3].flags, kPePresent);  // old images: no flags means PRESENT
  EXPECT_EQ(runs[4].flags, kPeParent);   // ... and in_parent means PARENT
  EXPECT_EQ(runs[2].end(), 0x20000 + 4 * P);
}

TEST(LazyPages, SplitCutsRunsAtAreaEdgesAndMovesOffsets) {
  // One PRESENT run of 10 pages at 0x100000 (image offset 5) across the lazy area [0x102000, 0x105000),
  // and a PARENT run wholly inside the second area.
  std::vector<PageRun> runs = {{0x100000, 10, kPePresent, 5}, {0x200000, 2, kPeParent, 0}};
  std::vector<Range> areas = {{0x102000, 0x105000}, {0x1ff000, 0x300000}};
  auto s = split_runs(runs, areas);
  ASSERT_EQ(s.eager.size(), 2u);
  ASSERT_EQ(s.lazy.size(), 2u);
  EXPECT_EQ(s.eager[0].vaddr, 0x100000u);
  EXPECT_EQ(s.eager[0].nr_pages, 2u);
  EXPECT_EQ(s.eager[0].page_offset, 5u);
  EXPECT_EQ(s.lazy[0].vaddr, 0x102000u);
  EXPECT_EQ(s.lazy[0].nr_pages, 3u);
  EXPECT_EQ(s.lazy[0].page_offset, 7u);
  EXPECT_EQ(s.eager[1].vaddr, 0x105000u);
  EXPECT_EQ(s.eager[1].nr_pages, 5u);
  EXPECT_EQ(s.eager[1].page_offset, 10u);
  EXPECT_EQ(s.lazy[1].vaddr, 0x200000u);
  EXPECT_EQ(s.lazy[1].flags, kPeParent);
}

TEST(LazyPages, SplitWithoutAreasKeepsEverythingEager) {
  std::vector<PageRun> runs = {{0x1000, 1, kPePresent, 0}, {0x5000, 2, kPePresent, 1}};
  auto s = split_runs(runs, {});
  EXPECT_TRUE(s.lazy.empty());
  ASSERT_EQ(s.eager.size(), 2u);
  EXPECT_EQ(s.eager[1].page_offset, 1u);
}

TEST(LazyPages, OnlyAccessiblePrivateAnonymousAreasAreLazy) {
  mm_entry mm;
  auto add = [&](uint64_t s, uint64_t e, uint32_t status, uint32_t prot, uint32_t flags) {
    auto* v = mm.add_vmas();
    v->set_start(s);
    v->set_end(e);
    v->set_status(status);
    v->set_prot(prot);
    v->set_flags(flags);
  };
  add(0x1000, 0x3000, kVmaRegular | kVmaAnonPrivate, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
  add(0x3000, 0x5000, kVmaRegular | kVmaAnonPrivate, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS);  // merged with the one before
  add(0x6000, 0x7000, kVmaRegular | kVmaAnonPrivate, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS);
  add(0x8000, 0x9000, kVmaRegular | kVmaAnonPrivate, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_LOCKED);
  add(0xa000, 0xb000, kVmaRegular | kVmaFilePrivate, PROT_READ | PROT_WRITE, MAP_PRIVATE);
  add(0xc000, 0xd000, kVmaRegular | kVmaAnonShared, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS);
  add(0xe000, 0xf000, kVmaRegular | kVmaAnonPrivate | kVmaVdso, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS);
  add(0x10000, 0x12000, kVmaRegular | kVmaAnonPrivate | kVmaHeap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
  auto areas = lazy_areas(mm);
  ASSERT_EQ(areas.size(), 2u);
  EXPECT_EQ(areas[0].start, 0x1000u);
  EXPECT_EQ(areas[0].end, 0x5000u);
  EXPECT_EQ(areas[1].start, 0x10000u);
  EXPECT_EQ(areas[1].end, 0x12000u);
}

TEST(LazyPages, ArgvAndEnvironPagesAreWrittenBeforeTheTaskRuns) {
  mm_entry mm;
  mm.set_mm_arg_start(0x1e010);  // argv in one page, environ from its end over the next page
  mm.set_mm_arg_end(0x1e800);
  mm.set_mm_env_start(0x1e800);
  mm.set_mm_env_end(0x1f010);
  auto pages = remote_read_pages(mm);
  ASSERT_EQ(pages.size(), 1u);
  EXPECT_EQ(pages[0].start, 0x1e000u);
  EXPECT_EQ(pages[0].end, 0x20000u);

  mm.set_mm_env_start(0x30000);  // apart: two ranges, in address order
  mm.set_mm_env_end(0x30001);
  pages = remote_read_pages(mm);
  ASSERT_EQ(pages.size(), 2u);
  EXPECT_EQ(pages[1].start, 0x30000u);
  EXPECT_EQ(pages[1].end, 0x31000u);

  EXPECT_TRUE(remote_read_pages(mm_entry{}).empty());
}

TEST(LazyPages, PendingLookupGivesImagePositionOfAnyPage) {
  PendingPages p;
  p.add(0x10000, 0x20000, 1000 * P);  // 16 pages whose data starts at 1000 pages into the mapping
  p.add(0x40000, 0x41000, 7 * P);
  EXPECT_EQ(p.pages(), 17u);
  auto c = p.at(0x13000, 4);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->start, 0x13000u);
  EXPECT_EQ(c->len, 4 * P);
  EXPECT_EQ(c->src, 1003 * P);
  c = p.at(0x1e000, 16);  // clipped at the run's end
  ASSERT_TRUE(c);
  EXPECT_EQ(c->len, 2 * P);
  EXPECT_FALSE(p.at(0x20000, 1));
  EXPECT_FALSE(p.at(0x0f000, 1));
  c = p.first(4);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->start, 0x10000u);
  EXPECT_EQ(c->len, 4 * P);
}

TEST(LazyPages, PendingRemoveSplitsAndKeepsSources) {
  PendingPages p;
  p.add(0x10000, 0x20000, 0);
  p.remove(0x12000, 0x14000);  // a hole in the middle (munmap, MADV_DONTNEED, delivered)
  EXPECT_EQ(p.pages(), 14u);
  EXPECT_FALSE(p.at(0x12000, 1));
  EXPECT_FALSE(p.at(0x13000, 1));
  auto c = p.at(0x14000, 1);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->src, 4 * P);
  c = p.at(0x11000, 8);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->len, P);  // the left piece ends at the hole
  p.remove(0x0, 0x100000);
  EXPECT_TRUE(p.empty());
  EXPECT_EQ(p.pages(), 0u);
}

TEST(LazyPages, PendingMoveFollowsMremap) {
  PendingPages p;
  p.add(0x10000, 0x14000, 100 * P);
  p.add(0x50000, 0x52000, 0);  // pending at the destination: replaced by the move
  p.move(0x11000, 0x50000, 2 * P);
  EXPECT_EQ(p.pages(), 4u);  // 1 + 1 left behind, 2 moved; the 2 at the destination are gone
  EXPECT_FALSE(p.at(0x11000, 1));
  auto c = p.at(0x50000, 8);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->len, 2 * P);
  EXPECT_EQ(c->src, 101 * P);
  c = p.at(0x13000, 1);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->src, 103 * P);
}

}  // namespace
}  // namespace crshim::mem
