#include "checkpoint/tty/pty.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "checkpoint/base/unique_fd.h"

namespace crshim::tty {
namespace {

TEST(Pty, DeviceNumbersAndInfoIds) {
  EXPECT_TRUE(is_ptmx(makedev(5, 2)));
  EXPECT_FALSE(is_ptmx(makedev(5, 0)));
  EXPECT_TRUE(is_pts(makedev(136, 0)));
  EXPECT_TRUE(is_pts(makedev(143, 255)));
  EXPECT_FALSE(is_pts(makedev(4, 1)));
  EXPECT_EQ(pts_index(makedev(137, 3)), 259u);
  EXPECT_EQ(pts_rdev(259), makedev(137, 3));
  EXPECT_EQ(info_id(7, true), 15u);
  EXPECT_EQ(info_id(7, false), 14u);
}

TEST(Pty, DecodesStatTtyNr) {
  // /proc/PID/stat encodes minor bits above 255 from bit 20 up.
  EXPECT_EQ(decode_tty_nr(0x8800), makedev(136, 0));
  EXPECT_EQ(decode_tty_nr((136 << 8) | 5 | (1 << 20)), makedev(136, 261));
}

TEST(Pty, TermiosRoundTripsThroughTheImageEntry) {
  KTermios2 t{};
  t.c_iflag = 1;
  t.c_oflag = 2;
  t.c_cflag = 3;
  t.c_lflag = 4;
  t.c_line = 5;
  for (int i = 0; i < 19; i++) t.c_cc[i] = uint8_t(i + 10);
  t.c_ispeed = 38400;
  t.c_ospeed = 9600;
  termios_entry e = to_entry(t);
  ASSERT_EQ(e.c_cc_size(), 19);  // CRIU writes exactly NCCS (19) control characters
  EXPECT_EQ(e.c_cc(6), 16u);
  KTermios2 back = from_entry(e);
  EXPECT_EQ(memcmp(&t, &back, sizeof t), 0);
}

// The queued bytes survive being taken out and put back, in both directions, in canonical mode.
TEST(Pty, QueuedBytesComeBackUnchanged) {
  UniqueFd m(posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC));
  if (!m) GTEST_SKIP() << "no /dev/ptmx";
  ASSERT_EQ(unlockpt(m.get()), 0);
  auto s = open_peer(m.get(), O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC, "test pty");
  ASSERT_TRUE(s) << s.error().render();
  UniqueFd slave(*s);
  // Canonical mode, echo off (a pending echo would be flushed out by the next write, whoever makes it).
  auto canon = get_termios(m.get(), "test pty");
  ASSERT_TRUE(canon);
  canon->c_lflag &= ~uint32_t(010);  // ECHO
  ASSERT_TRUE(set_termios(m.get(), *canon, "test pty"));
  ASSERT_EQ(write(m.get(), "partial line", 12), 12);
  ASSERT_EQ(write(slave.get(), "out", 3), 3);
  usleep(20000);
  auto t = get_termios(m.get(), "test pty");
  ASSERT_TRUE(t);
  auto q = take_queued(m.get(), slave.get(), "test pty");
  ASSERT_TRUE(q) << q.error().render();
  EXPECT_EQ(q->to_slave, "partial line");
  // Output processing (ONLCR) happened when the slave wrote; nothing more is added.
  EXPECT_EQ(q->to_master, "out");
  int n = -1;
  ASSERT_EQ(ioctl(m.get(), FIONREAD, &n), 0);
  EXPECT_EQ(n, 0);
  ASSERT_TRUE(put_queued(m.get(), slave.get(), *q, *t, "test pty"));
  auto again = take_queued(m.get(), slave.get(), "test pty");
  ASSERT_TRUE(again);
  EXPECT_EQ(again->to_slave, "partial line");
  EXPECT_EQ(again->to_master, "out");
  // The termios is back as it was.
  auto t2 = get_termios(m.get(), "test pty");
  ASSERT_TRUE(t2);
  EXPECT_EQ(t2->c_lflag, t->c_lflag);
}

}  // namespace
}  // namespace crshim::tty
