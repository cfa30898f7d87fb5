#include "checkpoint/tty/pty.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <thread>

namespace crshim::tty {

namespace {

// The kernel's struct termios (TIOCGLCKTRMIOS): termios2 without the speeds.
struct KTermios {
  uint32_t c_iflag, c_oflag, c_cflag, c_lflag;
  uint8_t c_line;
  uint8_t c_cc[19];
};
static_assert(sizeof(KTermios2) == 44 && sizeof(KTermios) == 36, "kernel termios layouts");

constexpr unsigned long kTcgets2 = _IOR('T', 0x2A, KTermios2);
constexpr unsigned long kTcsets2 = _IOW('T', 0x2B, KTermios2);
// termios.h would clash with the kernel layouts above; these bits are kernel ABI.
constexpr uint32_t kIcanon = 0000002;

Result<int> queued(int fd, const std::string& what) {
  int n = 0;
  if (::ioctl(fd, FIONREAD, &n) < 0) return fail(sys_error("ioctl(FIONREAD)", what));
  return n;
}

Status write_all(int fd, const std::string& data, const std::string& what) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      pollfd p{fd, POLLOUT, 0};
      if (::poll(&p, 1, 2000) <= 0) return fail(make_error(Errc::timeout, "write", what, "the pty does not take the queued bytes back"));
      continue;
    }
    if (n <= 0) return fail(sys_error("write", what));
    done += size_t(n);
  }
  return {};
}

}  // namespace

bool is_ptmx(dev_t rdev) { return major(rdev) == kPtmxMajor && minor(rdev) == kPtmxMinor; }
bool is_pts(dev_t rdev) { return major(rdev) >= kPtsMajorFirst && major(rdev) <= kPtsMajorLast; }
uint32_t pts_index(dev_t rdev) { return (major(rdev) - kPtsMajorFirst) * 256 + minor(rdev); }
dev_t pts_rdev(uint32_t index) { return makedev(kPtsMajorFirst + index / 256, index % 256); }

std::string external_key(uint64_t rdev, uint64_t dev) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "tty[%" PRIx64 ":%" PRIx64 "]", rdev, dev);
  return buf;
}

dev_t decode_tty_nr(int tty_nr) {
  unsigned v = unsigned(tty_nr);
  return makedev((v >> 8) & 0xfff, (v & 0xff) | ((v >> 12) & 0xfff00));
}

Result<KTermios2> get_termios(int fd, const std::string& what) {
  KTermios2 t{};
  if (::ioctl(fd, kTcgets2, &t) < 0) return fail(sys_error("ioctl(TCGETS2)", what));
  return t;
}

Status set_termios(int fd, const KTermios2& t, const std::string& what) {
  KTermios2 copy = t;
  if (::ioctl(fd, kTcsets2, &copy) < 0) return fail(sys_error("ioctl(TCSETS2)", what));
  return {};
}

termios_entry to_entry(const KTermios2& t) {
  termios_entry e;
  e.set_c_iflag(t.c_iflag);
  e.set_c_oflag(t.c_oflag);
  e.set_c_cflag(t.c_cflag);
  e.set_c_lflag(t.c_lflag);
  e.set_c_line(t.c_line);
  e.set_c_ispeed(t.c_ispeed);
  e.set_c_ospeed(t.c_ospeed);
  for (uint8_t c : t.c_cc) e.add_c_cc(c);
  return e;
}

KTermios2 from_entry(const termios_entry& e) {
  KTermios2 t{};
  t.c_iflag = e.c_iflag();
  t.c_oflag = e.c_oflag();
  t.c_cflag = e.c_cflag();
  t.c_lflag = e.c_lflag();
  t.c_line = uint8_t(e.c_line());
  t.c_ispeed = e.c_ispeed();
  t.c_ospeed = e.c_ospeed();
  for (int i = 0; i < e.c_cc_size() && i < int(sizeof t.c_cc); i++) t.c_cc[i] = uint8_t(e.c_cc(i));
  return t;
}

Result<termios_entry> get_locked_termios(int fd, const std::string& what) {
  KTermios k{};
  if (::ioctl(fd, TIOCGLCKTRMIOS, &k) < 0) return fail(sys_error("ioctl(TIOCGLCKTRMIOS)", what));
  KTermios2 t{};
  memcpy(&t, &k, sizeof k);
  return to_entry(t);
}

Status set_locked_termios(int fd, const termios_entry& e, const std::string& what) {
  KTermios2 t = from_entry(e);
  KTermios k{};
  memcpy(&k, &t, sizeof k);
  if (::ioctl(fd, TIOCSLCKTRMIOS, &k) < 0) return fail(sys_error("ioctl(TIOCSLCKTRMIOS)", what));
  return {};
}

Result<int> open_peer(int master, int flags, const std::string& what) {
  int fd = ::ioctl(master, TIOCGPTPEER, flags);
  if (fd < 0) return fail(sys_error("ioctl(TIOCGPTPEER)", what));
  return fd;
}

Result<Queued> take_queued(int master, int slave, const std::string& what) {
  Queued q;
  KTermios2 orig = CR_TRY(get_termios(master, what));
  int pkt = 0, off = 0;
  if (::ioctl(master, TIOCGPKT, &pkt) < 0) return fail(sys_error("ioctl(TIOCGPKT)", what));
  // Packet mode would prefix each read with a status byte.
  if (pkt && ::ioctl(master, TIOCPKT, &off) < 0) return fail(sys_error("ioctl(TIOCPKT)", what));
  Status st;
  // The slave's output: exactly what FIONREAD counts, so the master's (shared) file never blocks.
  int n = 0;
  if (auto c = queued(master, what)) n = *c;
  else st = fail(c.error());
  while (st && int(q.to_master.size()) < n) {
    char buf[4096];
    ssize_t got = ::read(master, buf, std::min(sizeof buf, size_t(n) - q.to_master.size()));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) {
      st = fail(sys_error("read", what + " (output queued for the master)"));
      break;
    }
    q.to_master.append(buf, size_t(got));
  }
  // The slave's input: a partial canonical line is readable only with ICANON off.
  if (st) {
    KTermios2 raw = orig;
    raw.c_lflag &= ~kIcanon;
    st = set_termios(master, raw, what);
  }
  while (st) {
    char buf[4096];
    ssize_t got = ::read(slave, buf, sizeof buf);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0 && errno == EAGAIN) break;
    if (got < 0) st = fail(sys_error("read", what + " (input queued for the slave)"));
    if (got <= 0) break;
    q.to_slave.append(buf, size_t(got));
  }
  Status back = set_termios(master, orig, what);
  if (pkt && ::ioctl(master, TIOCPKT, &pkt) < 0 && back) back = fail(sys_error("ioctl(TIOCPKT)", what));
  CR_OK(st);
  CR_OK(back);
  return q;
}

Status put_queued(int master, int slave, const Queued& q, const KTermios2& final_termios, const std::string& what) {
  if (!q.to_master.empty() || !q.to_slave.empty()) {
    KTermios2 raw = final_termios;
    raw.c_iflag = 0;
    raw.c_oflag = 0;
    raw.c_lflag = 0;
    CR_OK(set_termios(master, raw, what));
    int before_m = CR_TRY(queued(master, what)), before_s = CR_TRY(queued(slave, what));
    CR_OK(write_all(slave, q.to_master, what + " (output queued for the master)"));
    CR_OK(write_all(master, q.to_slave, what + " (input queued for the slave)"));
    // The line discipline takes written bytes in a worker; the raw termios must hold until it has.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    for (;;) {
      int m = CR_TRY(queued(master, what)), s = CR_TRY(queued(slave, what));
      if (m >= before_m + int(q.to_master.size()) && s >= before_s + int(q.to_slave.size())) break;
      if (std::chrono::steady_clock::now() > deadline)
        return fail(make_error(Errc::timeout, "restore", what, "queued bytes did not reach the other side"));
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  return set_termios(master, final_termios, what);
}

}  // namespace crshim::tty
