#include "shim/progress_line.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <string>

namespace crshim {
namespace {

TEST(ProgressLine, KnownTotalShowsShareAndRate) {
  // 25600 pages = 100 MiB of 400 MiB in 0.5 s.
  EXPECT_EQ(TerminalProgress::render("restore", 25600, 102400, 0.5), "restore: 100.0 MiB of 400.0 MiB (25%), 200.0 MiB/s");
}

TEST(ProgressLine, UnknownTotalShowsAmountAndRate) {
  EXPECT_EQ(TerminalProgress::render("dump", 262144, 0, 2.0), "dump: 1.0 GiB, 512.0 MiB/s");
  EXPECT_EQ(TerminalProgress::render("dump", 0, 0, 0), "dump: 0 B");
}

TEST(ProgressLine, SummaryOnlyWhenPagesMoved) {
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  TerminalProgress t(p[1]);
  t.begin("dump", 0);
  t.end();  // nothing moved: nothing drawn
  t.begin("restore", 512);
  t.advance(256);
  t.advance(256);
  t.end();
  close(p[1]);
  char buf[512] = {};
  ssize_t n = read(p[0], buf, sizeof buf - 1);
  close(p[0]);
  ASSERT_GT(n, 0);
  std::string out(buf, size_t(n));
  EXPECT_EQ(out.find("dump"), std::string::npos) << out;
  EXPECT_NE(out.find("restore: 2.0 MiB of 2.0 MiB (100%)"), std::string::npos) << out;
  EXPECT_EQ(out.back(), '\n');
}

}  // namespace
}  // namespace crshim
