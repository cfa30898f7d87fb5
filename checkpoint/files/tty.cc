// Terminals. Unix98 ptys (/dev/ptmx masters, /dev/pts/N slaves) are dumped as CRIU does: a TTY
// file_entry per open file, a tty_info_entry per side in tty-info.img (termios, window size, modes,
// the session and foreground group it controls) and the queued bytes in tty-data.img. A slave whose
// master is outside the tree needs --orphan-pts-master (restore makes a new master and hands it to
// the caller), or --shell-job, which keeps it a path as for every other terminal: with --shell-job
// the restored task gets the restoring shell's terminal, as CRIU does.
// Queued bytes: a tty has no peek, so unlike CRIU (which saves them only with --tty-data) crshim always
// takes them out and puts them straight back during the dump (a raw termios while they pass the line
// discipline again: no echo, no translation, no signals), so a --leave-running or failed dump leaves
// the tree as it was. Without the master in the tree (an orphan slave) nothing can put them back, so
// an orphan slave's unread input stays with the dumped tree and is not in the image.
// A terminal named by --external tty[RDEV:DEV] (any kind: pty end, console, vt) is not dumped but
// recorded as CRIU does (an EXT_TTY tty_info with its termios, no path companion): restore takes
// it from --inherit-fd fd[N]:tty[RDEV:DEV], which also stands in for any dumped tty with that key.
#include <dirent.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "checkpoint/base/sys.h"
#include "checkpoint/files/anon_common.h"
#include "checkpoint/files/kinds.h"
#include "checkpoint/ns/userns.h"
#include "checkpoint/tty/pty.h"

namespace crshim::files {

namespace {

constexpr const char* kKind = "tty";

bool matches(const OpenFd& f) {
  if (!S_ISCHR(f.st.st_mode)) return false;
  unsigned maj = major(f.st.st_rdev), min = minor(f.st.st_rdev);
  return tty::is_pts(f.st.st_rdev) || maj == 4 || maj == 3 || (maj == 5 && min <= 2);
}

// Every terminal is checked at dump, which knows the --external keys and the whole frozen tree
// (is a pty's master there?).
std::string unsupported(const OpenFd&, bool) { return ""; }

// External ttys get indexes of their own, above every pty number (CRIU's range).
constexpr uint32_t kExtIndexFirst = 1013, kExtIndexLast = 1076;

// Indexes of the ptys whose master some task of the tree holds: scanned once per dump.
Result<const std::map<uint64_t, uint32_t>*> masters_in_tree(DumpFiles& files) {
  auto& masters = files.seen()["tty:masters"];
  auto& scanned = files.seen()["tty:scanned"];
  if (scanned.count(0) || !files.tree_pids()) return &masters;
  for (const auto& [pid, vpid] : *files.tree_pids()) {
    (void)vpid;
    std::string dir = proc::proc_dir(pid) + "/fd";
    DIR* d = opendir(dir.c_str());
    if (!d) continue;  // a zombie has no fds
    UniqueFd pidfd(sys::pidfd_open(pid));
    while (dirent* e = readdir(d)) {
      uint64_t fd;
      struct stat st;
      if (!sys::parse_u64(e->d_name, fd) || ::stat((dir + "/" + e->d_name).c_str(), &st) < 0) continue;
      if (!S_ISCHR(st.st_mode) || !tty::is_ptmx(st.st_rdev) || !pidfd) continue;
      UniqueFd own(sys::pidfd_getfd(pidfd.get(), int(fd), 0));
      unsigned index = 0;
      if (own && ::ioctl(own.get(), TIOCGPTN, &index) == 0) masters[index] = 1;
    }
    closedir(d);
  }
  scanned[0] = 1;
  return &masters;
}

// The session a tty controls and its foreground group, as pids of the image (0: none in the tree).
std::pair<uint32_t, uint32_t> controlled_by(DumpFiles& files, dev_t rdev) {
  if (!files.tree_pids()) return {0, 0};
  const auto& vpids = *files.tree_pids();
  for (const auto& [pid, vpid] : vpids) {
    (void)vpid;
    auto st = proc::read_stat(pid);
    if (!st || st->tty_nr == 0 || tty::decode_tty_nr(st->tty_nr) != rdev) continue;
    auto sid = vpids.find(st->session), pgrp = vpids.find(st->tpgid);
    if (sid == vpids.end()) continue;
    return {uint32_t(sid->second), pgrp == vpids.end() ? 0u : uint32_t(pgrp->second)};
  }
  return {0, 0};
}

// One side's tty_info_entry, read through `fd` (either end; termios and window size are the slave's).
Result<tty_info_entry> describe(DumpFiles& files, uint32_t index, bool master, int fd, int master_fd, int slave_fd,
                                const struct stat& st, const std::string& what) {
  tty_info_entry ti;
  ti.set_id(tty::info_id(index, master));
  ti.set_type(PTY);
  int v = 0;
  ti.set_locked(master_fd >= 0 && ::ioctl(master_fd, TIOCGPTLCK, &v) == 0 && v);
  v = 0;
  if (::ioctl(master ? master_fd : slave_fd, TIOCGEXCL, &v) < 0) return fail(sys_error("ioctl(TIOCGEXCL)", what));
  ti.set_exclusive(v != 0);
  v = 0;
  ti.set_packet_mode(master_fd >= 0 && ::ioctl(master_fd, TIOCGPKT, &v) == 0 && v);
  auto [sid, pgrp] = controlled_by(files, tty::pts_rdev(index));
  ti.set_sid(sid);
  ti.set_pgrp(pgrp);
  ti.set_rdev(uint32_t(master ? makedev(tty::kPtmxMajor, tty::kPtmxMinor) : tty::pts_rdev(index)));
  *ti.mutable_termios() = tty::to_entry(CR_TRY(tty::get_termios(fd, what)));
  *ti.mutable_termios_locked() = CR_TRY(tty::get_locked_termios(fd, what));
  winsize ws{};
  if (::ioctl(fd, TIOCGWINSZ, &ws) < 0) return fail(sys_error("ioctl(TIOCGWINSZ)", what));
  winsize_entry* w = ti.mutable_winsize();
  w->set_ws_row(ws.ws_row);
  w->set_ws_col(ws.ws_col);
  w->set_ws_xpixel(ws.ws_xpixel);
  w->set_ws_ypixel(ws.ws_ypixel);
  ti.mutable_pty()->set_index(index);
  ti.set_dev(uint32_t(st.st_dev));
  auto owner = ns::owner_in_image(files.userns(), {st.st_uid, st.st_gid});
  ti.set_uid(owner.uid);
  ti.set_gid(owner.gid);
  return ti;
}

Status write_info(DumpFiles& files, const tty_info_entry& ti) {
  auto& written = files.seen()["tty:info"];
  if (written.count(ti.id())) return {};
  written[ti.id()] = 1;
  auto w = CR_TRY(files.writer(tty::kInfoFile, image::Type::tty_info));
  return w->write(ti);
}

// tty_info for both sides (the slave's even when no fd holds it: it may be a session's terminal) and,
// once per pair whose master we hold, the queued bytes: taken out and put straight back.
Status dump_pair(DumpFiles& files, uint32_t index, int master_fd, int slave_fd, const std::string& what) {
  UniqueFd peer;
  if (slave_fd < 0) {
    peer.reset(CR_TRY(tty::open_peer(master_fd, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC, what)));
    slave_fd = peer.get();
  }
  struct stat sst{};
  if (::fstat(slave_fd, &sst) < 0) return fail(sys_error("fstat", what));
  if (!files.seen()["tty:info"].count(tty::info_id(index, false)))
    CR_OK(write_info(files, CR_TRY(describe(files, index, false, slave_fd, master_fd, slave_fd, sst, what))));
  if (master_fd < 0) return {};
  struct stat mst{};
  if (::fstat(master_fd, &mst) < 0) return fail(sys_error("fstat", what));
  if (!files.seen()["tty:info"].count(tty::info_id(index, true)))
    CR_OK(write_info(files, CR_TRY(describe(files, index, true, master_fd, master_fd, slave_fd, mst, what))));
  auto& done = files.seen()["tty:data"];
  if (done.count(index)) return {};
  done[index] = 1;
  // Our own non-blocking slave file for reading the input queue (the task's may block).
  UniqueFd reader;
  if (!peer) reader.reset(CR_TRY(tty::open_peer(master_fd, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC, what)));
  int rd = peer ? peer.get() : reader.get();
  tty::KTermios2 t = CR_TRY(tty::get_termios(master_fd, what));
  tty::Queued q = CR_TRY(tty::take_queued(master_fd, rd, what));
  // Back at once: a --leave-running or failed dump leaves the tree as it was.
  CR_OK(tty::put_queued(master_fd, rd, q, t, what));
  auto w = CR_TRY(files.writer(tty::kDataFile, image::Type::tty_data));
  for (auto [bytes, master] : {std::pair{&q.to_master, true}, std::pair{&q.to_slave, false}}) {
    if (bytes->empty()) continue;
    tty_data_entry d;
    d.set_tty_id(tty::info_id(index, master));
    d.set_data(*bytes);
    CR_OK(w->write(d));
  }
  return {};
}

Result<uint32_t> dump_pty(const OpenFd& f, DumpFiles& files, uint32_t index, bool master) {
  if (uint32_t id = anon::shared_id(f, files, kKind)) return id;
  std::string what = std::string(master ? "pty master " : "pty slave ") + std::to_string(index);
  UniqueFd own = CR_TRY(f.steal());
  CR_OK(dump_pair(files, index, master ? own.get() : -1, master ? -1 : own.get(), what));
  // The device path, as CRIU records it: a REG entry no fd refers to.
  uint32_t regf = files.table().add_reg(f.link, f.open_flags(), 0, f.st, f.info.mnt_id, true);
  file_entry fe;
  fe.set_type(TTY);
  tty_file_entry* t = fe.mutable_tty();
  t->set_tty_info_id(tty::info_id(index, master));
  t->set_flags(f.open_flags());
  *t->mutable_fown() = CR_TRY(anon::dump_fown(own.get(), what));
  t->set_regf_id(regf);
  uint32_t id = CR_TRY(anon::add_file(files, std::move(fe), [](file_entry& e, uint32_t id) {
    e.set_id(id);
    e.mutable_tty()->set_id(id);
  }));
  anon::remember(f, files, kKind, id);
  return id;
}

// --external tty[RDEV:DEV]: one EXT_TTY tty_info per open file, with what the terminal's settings
// were; no path, no queued bytes (the terminal stays outside).
Result<uint32_t> dump_external(const OpenFd& f, DumpFiles& files, const std::string& key) {
  if (uint32_t id = anon::shared_id(f, files, kKind)) return id;
  std::string what = "external terminal " + key + " (" + f.link + ")";
  UniqueFd own = CR_TRY(f.steal());
  auto& count = files.seen()["tty:ext"][0];
  uint32_t index = kExtIndexFirst + count;
  if (index > kExtIndexLast)
    return fail(make_error(Errc::unsupported, "dump", what, "too many external terminal files (CRIU's limit is 64)"));
  count++;
  tty_info_entry ti;
  ti.set_id(tty::info_id(index, false));
  ti.set_type(EXT_TTY);
  int v = 0;
  ti.set_locked(false);
  ti.set_exclusive(::ioctl(own.get(), TIOCGEXCL, &v) == 0 && v);
  ti.set_packet_mode(false);
  auto [sid, pgrp] = controlled_by(files, f.st.st_rdev);
  ti.set_sid(sid);
  ti.set_pgrp(pgrp);
  ti.set_rdev(uint32_t(f.st.st_rdev));
  ti.set_dev(uint32_t(f.st.st_dev));
  // A hung-up terminal has no settings left (EIO): recorded without them, as CRIU does.
  if (auto t = tty::get_termios(own.get(), what)) {
    *ti.mutable_termios() = tty::to_entry(*t);
    *ti.mutable_termios_locked() = CR_TRY(tty::get_locked_termios(own.get(), what));
    winsize ws{};
    if (::ioctl(own.get(), TIOCGWINSZ, &ws) < 0) return fail(sys_error("ioctl(TIOCGWINSZ)", what));
    winsize_entry* w = ti.mutable_winsize();
    w->set_ws_row(ws.ws_row);
    w->set_ws_col(ws.ws_col);
    w->set_ws_xpixel(ws.ws_xpixel);
    w->set_ws_ypixel(ws.ws_ypixel);
  } else if (t.error().err != EIO) {
    return fail(t.error());
  }
  CR_OK(write_info(files, ti));
  file_entry fe;
  fe.set_type(TTY);
  tty_file_entry* tf = fe.mutable_tty();
  tf->set_tty_info_id(ti.id());
  tf->set_flags(f.open_flags());
  *tf->mutable_fown() = CR_TRY(anon::dump_fown(own.get(), what));
  uint32_t id = CR_TRY(anon::add_file(files, std::move(fe), [](file_entry& e, uint32_t id) {
    e.set_id(id);
    e.mutable_tty()->set_id(id);
  }));
  anon::remember(f, files, kKind, id);
  return id;
}

Result<uint32_t> dump(const OpenFd& f, DumpFiles& files) {
  std::string key = tty::external_key(f.st.st_rdev, f.st.st_dev);
  if (files.is_external(key)) return dump_external(f, files, key);
  if (tty::is_ptmx(f.st.st_rdev)) {
    UniqueFd own = CR_TRY(f.steal());
    unsigned index = 0;
    if (::ioctl(own.get(), TIOCGPTN, &index) < 0) return fail(sys_error("ioctl(TIOCGPTN)", f.name()));
    return dump_pty(f, files, index, true);
  }
  if (tty::is_pts(f.st.st_rdev)) {
    uint32_t index = tty::pts_index(f.st.st_rdev);
    const auto* masters = CR_TRY(masters_in_tree(files));
    if (masters->count(index) || files.orphan_pts_master()) return dump_pty(f, files, index, false);
    if (!files.shell_job())
      return fail(make_error(Errc::unsupported, "dump", f.link, "a pty slave whose master is not in the dumped tree")
                      .with_hint("use --orphan-pts-master (restore then hands a new master to the caller), or "
                                 "--shell-job if it is the terminal of the shell that started the tree, or "
                                 "--external " + key + " and --inherit-fd on restore"));
  } else if (!files.shell_job()) {
    return fail(make_error(Errc::unsupported, "dump", f.link, "a terminal other than a pty")
                    .with_hint("use --shell-job if it is the terminal of the shell that started the tree, or "
                               "--external " + key + " and --inherit-fd on restore"));
  }
  return files.table().add_open_reg(f.pid, f.fd, f.link, f.open_flags(), 0, f.st, f.info.mnt_id);
}

bool is_terminal_path(const std::string& p) {
  return p.rfind("/dev/pts/", 0) == 0 || p.rfind("/dev/tty", 0) == 0 || p == "/dev/console";
}

Result<UniqueFd> open(const file_entry& fe, RestoreFiles& files) {
  if (!fe.has_tty()) return fail(make_error(Errc::corrupt_image, "restore", image::kFilesFile, "TTY entry without payload"));
  const tty_file_entry& t = fe.tty();
  uint32_t index = t.tty_info_id() >> 1;
  bool master = t.tty_info_id() & 1;
  std::string what = index >= kExtIndexFirst ? "external terminal " + std::to_string(index)
                                             : std::string(master ? "pty master " : "pty slave ") + std::to_string(index);
  // A terminal from --inherit-fd (external, or a dumped one whose key was given): the inherited open
  // file itself, shared with whoever passed it, so its flags and owner stay theirs.
  auto& inherited = files.objects()[tty::kInheritedKey];
  if (auto in = inherited.find(uint64_t(t.tty_info_id())); in != inherited.end()) {
    UniqueFd fd(::fcntl(in->second.get(), F_DUPFD_CLOEXEC, 0));
    if (!fd) return fail(sys_error("dup", "inherited terminal for " + what));
    return fd;
  }
  auto& pairs = files.objects()[tty::kPairsKey];
  auto it = pairs.find(uint64_t(t.tty_info_id()));
  if (it == pairs.end())
    return fail(make_error(Errc::corrupt_image, "restore", tty::kInfoFile, "no tty_info_entry " + std::to_string(t.tty_info_id()) + " for " + what));
  UniqueFd fd;
  if (master) {
    // One ptmx open file is one pty: its fds all share this file.
    fd.reset(::fcntl(it->second.get(), F_DUPFD_CLOEXEC, 0));
    if (!fd) return fail(sys_error("dup", what));
    CR_OK(anon::restore_status_flags(fd.get(), t.flags(), what));
  } else {
    // Each slave open file is its own open of the (new) /dev/pts node.
    int flags = int(t.flags()) & ~(O_CREAT | O_EXCL | O_TRUNC);
    fd = CR_TRY(sys::open("/proc/self/fd/" + std::to_string(it->second.get()), flags | O_NOCTTY));
  }
  CR_OK(anon::restore_fown(fd.get(), t.fown(), what));
  return fd;
}

}  // namespace

std::optional<Result<UniqueFd>> open_shell_terminal(const reg_file_entry& reg) {
  if (!S_ISCHR(reg.mode()) || !is_terminal_path(reg.name())) return std::nullopt;
  for (int fd = 0; fd <= 2; fd++) {
    if (!isatty(fd)) continue;
    auto path = sys::read_link("/proc/self/fd/" + std::to_string(fd));
    if (!path) continue;
    return sys::open(*path, int(reg.flags()) & (O_ACCMODE | O_APPEND | O_NONBLOCK));
  }
  return std::nullopt;
}

// Ptys are TTY entries; other terminals are REG entries restored through the regular-file kind,
// which asks open_shell_terminal() first under --shell-job.
extern const FileKind kTtyKind{"terminal", TTY, matches, unsupported, dump, open, nullptr};

}  // namespace crshim::files
