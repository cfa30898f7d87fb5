// Write tracking: after arming, exactly the pages a real process writes are reported, and mappings
// made afterwards are reported as untracked.
#include "checkpoint/mem/write_tracking.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "checkpoint/kernel/proc.h"
#include "checkpoint/kernel/remote_syscall.h"
#include "checkpoint/kernel/tracee.h"
#include "tests/kernel/child_process.h"

namespace crshim::mem {
namespace {

using namespace kernel::testing;

constexpr size_t kPages = 16384;  // 64 MiB

// The child touches the region, then on 'w' writes every 7th page (from page 100, 1000 pages) and on
// 'n' maps and writes a new region; it answers each command with a line.
int child_main(char* region, int out, int in) {
  for (size_t i = 0; i < kPages; i++) region[i * kPageSize] = 1;
  say(out, "ready");
  for (char cmd; read(in, &cmd, 1) == 1;) {
    if (cmd == 'w') {
      for (size_t i = 0; i < 1000; i++) region[(100 + i * 7) * kPageSize + 5] = 2;
      say(out, "wrote");
    } else if (cmd == 'n') {
      char* fresh = static_cast<char*>(mmap(nullptr, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
      fresh[0] = 1;
      say(out, "%p", static_cast<void*>(fresh));
    }
  }
  return 0;
}

std::vector<proc::Vma> vmas_of(pid_t pid) {
  auto maps = proc::parse_maps(slurp("/proc/" + std::to_string(pid) + "/maps"));
  EXPECT_TRUE(maps);
  return maps ? *maps : std::vector<proc::Vma>{};
}

const proc::Vma* vma_at(const std::vector<proc::Vma>& vmas, uint64_t addr) {
  for (const auto& v : vmas)
    if (v.start <= addr && addr < v.end) return &v;
  return nullptr;
}

TEST(WriteTracking, ReportsExactlyThePagesWrittenSinceArmingAndRearms) {
  char* region = static_cast<char*>(mmap(nullptr, kPages * kPageSize, PROT_READ | PROT_WRITE,
                                         MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(region, MAP_FAILED);
  Child c;
  spawn(c, [region](int out, int in) { return child_main(region, out, in); });
  munmap(region, kPages * kPageSize);
  ASSERT_EQ(read_line(c.out), "ready");
  uint64_t base = reinterpret_cast<uint64_t>(region);

  WriteTracking t;
  {
    auto fp = kernel::FrozenProcess::freeze(c.pid);
    ASSERT_TRUE(fp) << fp.error().render();
    auto insn = kernel::find_syscall_insn(c.pid);
    ASSERT_TRUE(insn);
    auto ps = kernel::PtraceSyscall::begin(fp->leader(), *insn);
    ASSERT_TRUE(ps);
    kernel::Remote r(*ps, c.pid, 0, 0);
    std::vector<Range> ranges;
    for (const auto& v : vmas_of(c.pid))
      if (!v.shared && !v.is_special()) ranges.push_back({v.start, v.end});
    auto armed = arm_write_tracking(r, ranges);
    ASSERT_TRUE(armed) << armed.error().render();
    t = *armed;
    ASSERT_TRUE(ps->restore());
    ASSERT_TRUE(fp->thaw());
  }
  auto found = find_write_tracking(c.pid);
  ASSERT_TRUE(found) << "the tracking userfaultfd stays in the target";
  EXPECT_EQ(found->target_fd, t.target_fd);
  EXPECT_EQ(found->inode, t.inode);

  ASSERT_EQ(write(c.in, "w", 1), 1);
  ASSERT_EQ(read_line(c.out), "wrote");
  UniqueFd pagemap(::open(("/proc/" + std::to_string(c.pid) + "/pagemap").c_str(), O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(pagemap);
  auto vmas = vmas_of(c.pid);
  const proc::Vma* v = vma_at(vmas, base);
  ASSERT_NE(v, nullptr);
  auto written = written_pages(pagemap.get(), v->start, v->end);
  ASSERT_TRUE(written) << written.error().render();
  ASSERT_TRUE(written->has_value()) << "the region is tracked";
  std::vector<uint64_t> pages;
  for (const auto& rg : **written)
    for (uint64_t a = rg.start; a < rg.end; a += kPageSize) pages.push_back((a - base) / kPageSize);
  ASSERT_EQ(pages.size(), 1000u);
  for (size_t i = 0; i < pages.size(); i++) ASSERT_EQ(pages[i], 100 + i * 7);

  // Read once, protected again: nothing new until the next write.
  auto again = written_pages(pagemap.get(), v->start, v->end);
  ASSERT_TRUE(again && again->has_value());
  EXPECT_TRUE((*again)->empty());

  // A mapping made after arming is not tracked.
  ASSERT_EQ(write(c.in, "n", 1), 1);
  uint64_t fresh = std::stoull(read_line(c.out), nullptr, 16);
  vmas = vmas_of(c.pid);
  const proc::Vma* nv = vma_at(vmas, fresh);
  ASSERT_NE(nv, nullptr);
  auto untracked = written_pages(pagemap.get(), nv->start, nv->end);
  ASSERT_TRUE(untracked);
  EXPECT_FALSE(untracked->has_value());
}

}  // namespace
}  // namespace crshim::mem
