#include "checkpoint/tty/pty_restore.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "checkpoint/base/sys.h"
#include "checkpoint/image/image.h"
#include "checkpoint/tty/pty.h"

namespace crshim::tty {

namespace {

// Every entry of an image that may be absent (no ptys dumped).
template <class Msg>
Result<std::vector<Msg>> read_all(int dir, const char* name, image::Type type) {
  std::vector<Msg> out;
  auto r = image::Reader::open(dir, name, image::kind(type));
  if (!r) {
    if (r.error().err == ENOENT) return out;
    return fail(r.error());
  }
  for (;;) {
    Msg m;
    bool got = CR_TRY(r->read(m));
    if (!got) break;
    out.push_back(std::move(m));
    if (out.size() > 65536) return fail(make_error(Errc::corrupt_image, "validate", name, "too many entries"));
  }
  return out;
}

struct Pair {
  UniqueFd master, slave;
  uint32_t index = 0;
};

Result<Pair> new_pair(const std::string& what) {
  Pair p;
  p.master = CR_TRY(sys::open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC));
  int unlock = 0;
  if (::ioctl(p.master.get(), TIOCSPTLCK, &unlock) < 0) return fail(sys_error("ioctl(TIOCSPTLCK)", what));
  if (::ioctl(p.master.get(), TIOCGPTN, &p.index) < 0) return fail(sys_error("ioctl(TIOCGPTN)", what));
  p.slave.reset(CR_TRY(open_peer(p.master.get(), O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC, what)));
  return p;
}

// A tty of the image that --inherit-fd names by its key: the inherited terminal gets the dumped
// settings (as CRIU does) and stands in for every file of that tty; it becomes the controlling
// terminal of the session the dumped one was.
Status use_inherited(files::RestoreFiles& files, const tty_info_entry& ti, int fd, const std::string& key,
                     RestoredPtys& out, Logger& log) {
  std::string what = "--inherit-fd fd[" + std::to_string(fd) + "]:" + key;
  struct stat st{};
  if (::fstat(fd, &st) < 0) return fail(sys_error("fstat", what).with_hint("the inherited fd must be open in crshim"));
  if (!::isatty(fd))
    return fail(make_error(Errc::invalid_argument, "restore", what, "the inherited fd is not a terminal"));
  UniqueFd own(::fcntl(fd, F_DUPFD_CLOEXEC, 3));
  if (!own) return fail(sys_error("dup", what));
  if (ti.has_termios_locked()) CR_OK(set_locked_termios(own.get(), ti.termios_locked(), what));
  if (ti.has_termios()) CR_OK(set_termios(own.get(), from_entry(ti.termios()), what));
  if (ti.has_winsize()) {
    winsize ws{uint16_t(ti.winsize().ws_row()), uint16_t(ti.winsize().ws_col()), uint16_t(ti.winsize().ws_xpixel()),
               uint16_t(ti.winsize().ws_ypixel())};
    if (::ioctl(own.get(), TIOCSWINSZ, &ws) < 0) return fail(sys_error("ioctl(TIOCSWINSZ)", what));
  }
  uint32_t index = ti.id() >> 1, now = is_pts(st.st_rdev) ? pts_index(st.st_rdev) : 0;
  LOG_INFO(log, "tty %u (%s, %s) comes from %s", ti.id(), TtyType_Name(ti.type()).c_str(), key.c_str(), what.c_str());
  if (ti.sid()) out.cttys.push_back({ti.sid(), ti.pgrp(), own.get(), index, now});
  if (ti.type() == PTY && !(ti.id() & 1)) out.slaves[index] = own.get();
  files.objects()[kInheritedKey][ti.id()] = std::move(own);
  return {};
}

}  // namespace

Result<RestoredPtys> restore_ptys(files::RestoreFiles& files, const restorer::ImageSet& set, bool orphan_pts_master,
                                  Logger& log) {
  RestoredPtys out;
  auto infos = CR_TRY(read_all<tty_info_entry>(files.images_dir(), kInfoFile, image::Type::tty_info));
  if (infos.empty()) return out;
  auto data = CR_TRY(read_all<tty_data_entry>(files.images_dir(), kDataFile, image::Type::tty_data));
  std::map<uint32_t, const tty_info_entry*> by_id;  // the ptys made here
  std::map<uint32_t, bool> all_ids;
  for (const auto& ti : infos) {
    if (ti.type() != PTY && ti.type() != EXT_TTY)
      return fail(make_error(Errc::unsupported, "restore", kInfoFile,
                             "tty " + std::to_string(ti.id()) + " of type " + TtyType_Name(ti.type()) + " is not supported"));
    all_ids[ti.id()] = true;
    // --inherit-fd fd[N]:tty[RDEV:DEV] serves the tty with that key, external at dump or not.
    std::string key = external_key(ti.rdev(), ti.dev());
    if (int fd = files.inherited_fd(key); fd >= 0) {
      CR_OK(use_inherited(files, ti, fd, key, out, log));
      continue;
    }
    if (ti.type() == EXT_TTY)
      return fail(make_error(Errc::not_found, "restore", "external terminal " + key, "no inherited fd for it")
                      .with_hint("pass --inherit-fd fd[N]:" + key + " with a terminal open as fd N"));
    by_id[ti.id()] = &ti;
  }
  std::map<uint32_t, bool> slave_files;  // index -> a slave open file exists
  for (const auto& [id, fe] : set.files)
    if (fe.type() == TTY && fe.has_tty() && !(fe.tty().tty_info_id() & 1)) slave_files[fe.tty().tty_info_id() >> 1] = true;
  for (const auto& [id, fe] : set.files)
    if (fe.type() == TTY && (!fe.has_tty() || !all_ids.count(fe.tty().tty_info_id())))
      return fail(make_error(Errc::corrupt_image, "restore", image::kFilesFile,
                             "TTY file " + std::to_string(id) + " has no tty_info_entry"));
  std::map<uint32_t, bool> indexes;
  for (const auto& [id, ti] : by_id) indexes[id >> 1] = true;
  auto& pairs = files.objects()[kPairsKey];
  for (const auto& [index, unused] : indexes) {
    (void)unused;
    const tty_info_entry* mi = by_id.count(info_id(index, true)) ? by_id[info_id(index, true)] : nullptr;
    const tty_info_entry* si = by_id.count(info_id(index, false)) ? by_id[info_id(index, false)] : nullptr;
    std::string what = "pty " + std::to_string(index);
    if (!mi && !orphan_pts_master)
      return fail(make_error(Errc::unsupported, "restore", "pty slave /dev/pts/" + std::to_string(index),
                             "its master was outside the dumped tree")
                      .with_hint("restore with --orphan-pts-master: the new master is handed to the orphan-pts-master hook"));
    Pair p = CR_TRY(new_pair(what));
    LOG_INFO(log, "pty %u restored as /dev/pts/%u%s", index, p.index, mi ? "" : " (its master goes to the caller)");
    const tty_info_entry& ti = si ? *si : *mi;
    Queued q;
    for (const auto& d : data) {
      if (d.tty_id() == info_id(index, true)) q.to_master += d.data();
      if (d.tty_id() == info_id(index, false)) q.to_slave += d.data();
    }
    KTermios2 t = ti.has_termios() ? from_entry(ti.termios()) : CR_TRY(get_termios(p.master.get(), what));
    CR_OK(put_queued(p.master.get(), p.slave.get(), q, t, what));
    if (ti.has_termios_locked()) CR_OK(set_locked_termios(p.master.get(), ti.termios_locked(), what));
    if (ti.has_winsize()) {
      winsize ws{uint16_t(ti.winsize().ws_row()), uint16_t(ti.winsize().ws_col()), uint16_t(ti.winsize().ws_xpixel()),
                 uint16_t(ti.winsize().ws_ypixel())};
      if (::ioctl(p.master.get(), TIOCSWINSZ, &ws) < 0) return fail(sys_error("ioctl(TIOCSWINSZ)", what));
    }
    if (mi && mi->packet_mode()) {
      int on = 1;
      if (::ioctl(p.master.get(), TIOCPKT, &on) < 0) return fail(sys_error("ioctl(TIOCPKT)", what));
    }
    if (si && si->exclusive() && ::ioctl(p.slave.get(), TIOCEXCL) < 0) return fail(sys_error("ioctl(TIOCEXCL)", what));
    if (mi && mi->exclusive() && ::ioctl(p.master.get(), TIOCEXCL) < 0) return fail(sys_error("ioctl(TIOCEXCL)", what));
    // A locked pty cannot be opened any more: locked again only when no slave file needs opening.
    if (mi && mi->locked()) {
      if (slave_files.count(index)) {
        LOG_WARN(log, "pty %u was locked while its slave was open; restored unlocked", index);
      } else {
        int lock = 1;
        if (::ioctl(p.master.get(), TIOCSPTLCK, &lock) < 0) return fail(sys_error("ioctl(TIOCSPTLCK)", what));
      }
    }
    if (si && si->sid()) out.cttys.push_back({si->sid(), si->pgrp(), p.slave.get(), index, p.index});
    if (!mi) out.orphans.push_back({index, p.index, p.master.get()});
    out.slaves[index] = p.slave.get();
    pairs[info_id(index, true)] = std::move(p.master);
    pairs[info_id(index, false)] = std::move(p.slave);
  }
  return out;
}

Status take_ctty(restorer::RestoredTask& task, uint32_t vpid, const RestoredPtys& ptys, Logger& log) {
  for (const auto& c : ptys.cttys) {
    if (c.sid != vpid) continue;
    LOG_INFO(log, "Session %u takes /dev/pts/%u (was %u) as its controlling terminal", vpid, c.new_index, c.index);
    return restorer::run_early(task, [&](kernel::Remote& r) -> Status {
      CR_OK_IN(r.call(SYS_ioctl, c.slave, TIOCSCTTY, 0), "TIOCSCTTY /dev/pts/" + std::to_string(c.new_index));
      return {};
    });
  }
  return {};
}

Status set_foreground_groups(const RestoredPtys& ptys, const restorer::ImageSet& set,
                             const std::function<restorer::RestoredTask*(uint32_t vpid)>& task_of, Logger& log) {
  for (const auto& c : ptys.cttys) {
    if (!c.pgrp || c.pgrp == c.sid) continue;  // TIOCSCTTY already made the leader's group the foreground
    restorer::RestoredTask* leader = task_of(c.sid);
    const restorer::ProcessImage *leader_img = nullptr, *group_img = nullptr;
    for (const auto& p : set.processes) {
      if (p.pid() == c.sid) leader_img = &p;
      if (p.pid() == c.pgrp) group_img = &p;
    }
    if (!leader || !leader_img || !group_img || leader_img->ns_depth() != group_img->ns_depth()) {
      LOG_WARN(log, "Foreground group %u of /dev/pts/%u is not restored (no leader of it in the session's namespace)",
               c.pgrp, c.new_index);
      continue;
    }
    pid_t pgrp = group_img->own_tid(0);
    CR_OK(restorer::run_early(*leader, [&](kernel::Remote& r) -> Status {
      uint64_t addr = CR_TRY(r.put(&pgrp, sizeof pgrp));
      CR_OK_IN(r.call(SYS_ioctl, c.slave, TIOCSPGRP, long(addr)), "TIOCSPGRP /dev/pts/" + std::to_string(c.new_index));
      return {};
    }));
  }
  return {};
}

}  // namespace crshim::tty
