// Unix98 pseudo-terminal helpers shared by dump and restore: device numbers, termios as the kernel
// keeps it, and moving the bytes queued in a pty pair out and back in.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "checkpoint/base/result.h"
#include "tty.pb.h"

namespace crshim::tty {

inline constexpr const char* kInfoFile = "tty-info.img";
inline constexpr const char* kDataFile = "tty-data.img";
// RestoreFiles::objects() key of the restored pairs, by tty_info id: crshim's master and slave files.
inline constexpr const char* kPairsKey = "tty:pairs";
// RestoreFiles::objects() key of the ttys taken from --inherit-fd, by tty_info id: crshim's dup of it.
inline constexpr const char* kInheritedKey = "tty:inherited";

inline constexpr unsigned kPtmxMajor = 5, kPtmxMinor = 2;
inline constexpr unsigned kPtsMajorFirst = 136, kPtsMajorLast = 143;  // Unix98 slaves, 256 per major

// tty_info ids as CRIU forms them: index << 1, | 1 for the master side.
inline uint32_t info_id(uint32_t index, bool master) { return (index << 1) | (master ? 1u : 0u); }

bool is_ptmx(dev_t rdev);
bool is_pts(dev_t rdev);
uint32_t pts_index(dev_t rdev);
dev_t pts_rdev(uint32_t index);
// The --external / --inherit-fd key of a terminal, as CRIU spells it: tty[RDEV:DEV], st_rdev and
// st_dev in lower-case hex without 0x (glibc's dev_t encoding).
std::string external_key(uint64_t rdev, uint64_t dev);
// /proc/PID/stat tty_nr -> dev_t.
dev_t decode_tty_nr(int tty_nr);

// struct termios2 as TCGETS2/TCSETS2 move it (the kernel's layout, not glibc's).
struct KTermios2 {
  uint32_t c_iflag, c_oflag, c_cflag, c_lflag;
  uint8_t c_line;
  uint8_t c_cc[19];
  uint32_t c_ispeed, c_ospeed;
};

Result<KTermios2> get_termios(int fd, const std::string& what);
Status set_termios(int fd, const KTermios2& t, const std::string& what);
termios_entry to_entry(const KTermios2& t);
KTermios2 from_entry(const termios_entry& e);
// The locked termios bits (TIOCGLCKTRMIOS / TIOCSLCKTRMIOS, without speeds).
Result<termios_entry> get_locked_termios(int fd, const std::string& what);
Status set_locked_termios(int fd, const termios_entry& e, const std::string& what);

// The slave of `master` as a new open file (TIOCGPTPEER): no path needed, works on any devpts.
Result<int> open_peer(int master, int flags, const std::string& what);

// Bytes queued in both directions of a pty pair: what the master has not read yet (the slave's
// output) and what the slave has not read yet (its input, also a partial canonical line).
struct Queued {
  std::string to_master;
  std::string to_slave;
};

// Takes the queued bytes out of the pair (reading a tty consumes, there is no peek); `slave` must
// be crshim's own open file with O_NONBLOCK. Packet mode and canonical mode are suspended meanwhile.
Result<Queued> take_queued(int master, int slave, const std::string& what);
// Queues `q` again as it was: the slave's termios is made raw while the bytes pass the line discipline
// (no echo, no translation, no signals), then set to `final_termios`.
Status put_queued(int master, int slave, const Queued& q, const KTermios2& final_termios, const std::string& what);

}  // namespace crshim::tty
