#include "checkpoint/files/unix_restore.h"

#include <fcntl.h>
#include <linux/filter.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <map>
#include <set>
#include <vector>

#include "checkpoint/base/sys.h"
#include "checkpoint/files/anon_common.h"
#include "checkpoint/files/file_table.h"
#include "checkpoint/files/unix_diag.h"
#include "checkpoint/ns/userns.h"
#include "sk-packet.pb.h"

namespace crshim::files::unixsk {

namespace {

constexpr const char* kKind = "unix";
constexpr const char* kQueuesFile = "sk-queues.img";
constexpr uint32_t kUskExtern = 1;  // unix_sk_entry.uflags: the peer is outside the tree

// One socket of the image while the set is being rebuilt.
struct Sock {
  uint32_t id = 0;
  unix_sk_entry e;
  UniqueFd fd;
  UniqueFd helper;         // the other end of a pair whose original peer had closed
  uint32_t connected = 0;  // ino of the socket the new one is connected to now (0: none)
  bool bound = false;      // bind() gave it its name (accepted sockets inherit theirs)
  std::vector<std::string> packets;
  std::string what;
};

using Socks = std::map<uint32_t, Sock>;

bool is_path(const std::string& name) { return !name.empty() && name[0] != '\0'; }

Result<sockaddr_un> make_addr(const std::string& name, socklen_t& len, const std::string& what) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (name.size() > sizeof a.sun_path - (is_path(name) ? 1 : 0))
    return fail(make_error(Errc::corrupt_image, "restore", what, "socket name of " + std::to_string(name.size()) + " bytes"));
  memcpy(a.sun_path, name.data(), name.size());
  len = socklen_t(offsetof(sockaddr_un, sun_path) + name.size() + (is_path(name) ? 1 : 0));
  return a;
}

// Runs `fn(n)` in the directory that holds socket path `name` (relative to `dir` when it is relative
// and `dir` is given), with `n` the name relative to that directory. The directory is looked up inside
// the restored root when there is one (a mount namespace of the tree's own), so bind/connect and the
// file operations on the socket file land there rather than in crshim's root. Abstract names, and
// relative names with no directory, are used as they are.
template <class Fn>
Status at_path(const RestoreFiles& files, const std::string& name, const std::string& dir, Fn fn) {
  if (!is_path(name) || (name[0] != '/' && dir.empty())) return fn(name);
  std::string full = name[0] == '/' ? name : dir + "/" + name;
  size_t slash = full.rfind('/');
  std::string parent = slash == 0 ? "/" : full.substr(0, slash);
  std::string base = full.substr(slash + 1);
  if (base.empty() || base == "." || base == "..")
    return fail(make_error(Errc::corrupt_image, "restore", "socket name " + name, "does not name a file"));
  auto dirfd = files.open_path(parent, O_PATH | O_DIRECTORY);
  if (!dirfd) return fail(dirfd.error().within("socket name " + name));
  UniqueFd here(::open(".", O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!here) return fail(sys_error("open", "."));
  if (::fchdir(dirfd->get()) < 0) return fail(sys_error("fchdir", parent));
  Status st = fn(base);
  if (::fchdir(here.get()) < 0 && st) return fail(sys_error("fchdir", "previous directory"));
  return st;
}

// Binds `fd` to `name` as the task will see it: the kernel keeps the address bind() was given, so a
// path is bound under its own name, with the restored root as "/" when there is one (in a short-lived
// child that chroots there; crshim keeps its own root).
Status bind_in_root(const RestoreFiles& files, int fd, const std::string& name, const std::string& dir,
                    const std::string& what) {
  socklen_t len;
  sockaddr_un a = CR_TRY(make_addr(name, len, what));
  auto do_bind = [&]() -> Status {
    if (::bind(fd, reinterpret_cast<sockaddr*>(&a), len) < 0) return fail(sys_error("bind", what));
    return {};
  };
  if (!is_path(name)) return do_bind();
  auto root = CR_TRY(files.open_path("/", O_PATH | O_DIRECTORY));
  struct stat r, own;
  if (::fstat(root.get(), &r) < 0 || ::stat("/", &own) < 0) return fail(sys_error("stat", "root directory"));
  if (r.st_dev == own.st_dev && r.st_ino == own.st_ino) {
    if (dir.empty()) return do_bind();
    UniqueFd here(::open(".", O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!here) return fail(sys_error("open", "."));
    if (::chdir(dir.c_str()) < 0) return fail(sys_error("chdir", dir));
    Status st = do_bind();
    if (::fchdir(here.get()) < 0 && st) return fail(sys_error("fchdir", "previous directory"));
    return st;
  }
  // Only system calls in the child (crshim may have threads).
  pid_t child = ::fork();
  if (child < 0) return fail(sys_error("fork", what));
  if (child == 0) {
    if (::fchdir(root.get()) < 0 || ::chroot(".") < 0 || (!dir.empty() && ::chdir(dir.c_str()) < 0)) ::_exit(255);
    ::_exit(::bind(fd, reinterpret_cast<sockaddr*>(&a), len) < 0 ? errno : 0);
  }
  int status = 0;
  while (::waitpid(child, &status, 0) < 0)
    if (errno != EINTR) return fail(sys_error("waitpid", what));
  if (!WIFEXITED(status) || WEXITSTATUS(status) == 255)
    return fail(make_error(Errc::internal, "bind", what, "could not enter the restored root to bind"));
  if (int err = WEXITSTATUS(status)) {
    errno = err;
    return fail(sys_error("bind", what, "inside the restored root"));
  }
  return {};
}

// Whether a live socket is bound to the socket file `st`.
Result<bool> path_in_use(const RestoreFiles& files, const struct stat& st) {
  auto all = CR_TRY(diag_all(files.netns()));
  for (const auto& d : all)
    if (d.vfs_ino && *d.vfs_ino == st.st_ino && (d.vfs_dev >> 20) == major(st.st_dev) &&
        (d.vfs_dev & 0xfffff) == minor(st.st_dev))
      return true;
  return false;
}

Status connect_to(const RestoreFiles& files, int fd, const std::string& name, const std::string& dir,
                  const std::string& what) {
  return at_path(files, name, dir, [&](const std::string& n) -> Status {
    socklen_t len;
    sockaddr_un a = CR_TRY(make_addr(n, len, what));
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), len) < 0) return fail(sys_error("connect", what, "to " + name));
    return {};
  });
}

// Sockets are made in the tree's network namespace: abstract names and sock_diag live there.
Result<UniqueFd> new_socket(const RestoreFiles& files, int type, const std::string& what) {
  auto fd = files.socket(AF_UNIX, type, 0);
  if (!fd) return fail(fd.error().within(what));
  return fd;
}

Status make_pair(const RestoreFiles& files, Sock& a, Sock& b) {
  CR_OK_IN(files.socketpair(AF_UNIX, int(a.e.type()), a.fd, b.fd), a.what);
  a.connected = b.e.ino();
  b.connected = a.e.ino();
  return {};
}

Status bind_own_name(const RestoreFiles& files, Sock& s) {
  if (s.e.name().empty()) return {};
  // A removed socket file is bound and removed again; the path must not hold anything meanwhile.
  CR_OK(bind_name(files, s.fd.get(), s.e.name(), s.e.has_name_dir() ? s.e.name_dir() : std::string(), !s.e.deleted()));
  s.bound = true;
  return {};
}

std::string name_dir(const Sock& s) { return s.e.has_name_dir() ? s.e.name_dir() : std::string(); }

// The listener an established stream/seqpacket socket was accepted from: it carries the listener's name.
Sock* listener_of(Socks& socks, const Sock& s) {
  if (s.e.type() == SOCK_DGRAM || s.e.state() == TCP_LISTEN || s.e.name().empty()) return nullptr;
  for (auto& [ino, l] : socks)
    if (l.e.state() == TCP_LISTEN && l.e.type() == s.e.type() && l.e.name() == s.e.name() && name_dir(l) == name_dir(s))
      return &l;
  return nullptr;
}

Status set_int(int fd, int opt, int v, const char* name, const std::string& what) {
  if (::setsockopt(fd, SOL_SOCKET, opt, &v, sizeof v) < 0) return fail(sys_error(std::string("setsockopt(") + name + ")", what));
  return {};
}

int get_int(int fd, int opt) {
  int v = 0;
  socklen_t len = sizeof v;
  ::getsockopt(fd, SOL_SOCKET, opt, &v, &len);
  return v;
}

// Buffer sizes as the kernel reports them (doubled): the FORCE variants take half and skip the
// rmem_max/wmem_max clamp, which the original may have been allowed to pass.
Status set_buf(int fd, int opt, int force_opt, uint32_t want, const char* name, const std::string& what) {
  if (uint32_t(get_int(fd, opt)) == want) return {};
  int half = int(want / 2);
  if (::setsockopt(fd, SOL_SOCKET, force_opt, &half, sizeof half) == 0) return {};
  return set_int(fd, opt, half, name, what);
}

Status set_timeout(int fd, int opt, uint64_t sec, uint64_t usec, const char* name, const std::string& what) {
  if (!sec && !usec) return {};
  timeval tv{time_t(sec), suseconds_t(usec)};
  if (::setsockopt(fd, SOL_SOCKET, opt, &tv, sizeof tv) < 0) return fail(sys_error(std::string("setsockopt(") + name + ")", what));
  return {};
}

Status restore_opts(int fd, const sk_opts_entry& o, const std::string& what) {
  CR_OK(set_buf(fd, SO_SNDBUF, SO_SNDBUFFORCE, o.so_sndbuf(), "SO_SNDBUF", what));
  CR_OK(set_buf(fd, SO_RCVBUF, SO_RCVBUFFORCE, o.so_rcvbuf(), "SO_RCVBUF", what));
  CR_OK(set_timeout(fd, SO_SNDTIMEO, o.so_snd_tmo_sec(), o.so_snd_tmo_usec(), "SO_SNDTIMEO", what));
  CR_OK(set_timeout(fd, SO_RCVTIMEO, o.so_rcv_tmo_sec(), o.so_rcv_tmo_usec(), "SO_RCVTIMEO", what));
  if (o.reuseaddr()) CR_OK(set_int(fd, SO_REUSEADDR, 1, "SO_REUSEADDR", what));
  if (o.so_priority()) CR_OK(set_int(fd, SO_PRIORITY, int(o.so_priority()), "SO_PRIORITY", what));
  if (o.has_so_rcvlowat() && o.so_rcvlowat() != 1) CR_OK(set_int(fd, SO_RCVLOWAT, int(o.so_rcvlowat()), "SO_RCVLOWAT", what));
  if (o.so_mark()) CR_OK(set_int(fd, SO_MARK, int(o.so_mark()), "SO_MARK", what));
  if (o.so_passcred()) CR_OK(set_int(fd, SO_PASSCRED, 1, "SO_PASSCRED", what));
  if (o.so_passsec()) CR_OK(set_int(fd, SO_PASSSEC, 1, "SO_PASSSEC", what));
  if (o.so_filter_size()) {
    std::vector<sock_filter> insns(size_t(o.so_filter_size()));
    for (int i = 0; i < o.so_filter_size(); i++) {
      uint64_t word = o.so_filter(i);
      memcpy(&insns[size_t(i)], &word, sizeof word);
    }
    sock_fprog prog{uint16_t(insns.size()), insns.data()};
    if (::setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog) < 0)
      return fail(sys_error("setsockopt(SO_ATTACH_FILTER)", what));
  }
  return {};
}

// Sends one queued packet (a datagram or record as one message, stream bytes in as many as needed).
Status send_packet(const RestoreFiles& files, int fd, const std::string& data, int type, const std::string* to,
                   const std::string& dir, const std::string& what) {
  return at_path(files, to ? *to : std::string(), dir, [&](const std::string& rel) -> Status {
    sockaddr_un a{};
    socklen_t alen = 0;
    if (to) a = CR_TRY(make_addr(rel, alen, what));
    size_t done = 0;
    do {
      ssize_t n = ::sendto(fd, data.data() + done, data.size() - done, MSG_DONTWAIT | MSG_NOSIGNAL,
                           to ? reinterpret_cast<sockaddr*>(&a) : nullptr, to ? alen : 0);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN)
        return fail(make_error(Errc::unsupported, "restore", what,
                               "the queued data does not fit the new socket's queue")
                        .with_hint(type == SOCK_DGRAM ? "more datagrams than net.unix.max_dgram_qlen from other senders"
                                                      : "the sender's buffer is too small"));
      if (n < 0) return fail(sys_error("send", what, "queued data"));
      done += size_t(n);
    } while (type == SOCK_STREAM && done < data.size());
    return {};
  });
}

// Puts the saved receive queue of `s` back by sending it from a socket that may reach it.
Status restore_queue(const RestoreFiles& files, Socks& socks, Sock& s) {
  if (s.packets.empty()) return {};
  int type = int(s.e.type());
  int sender = -1;
  UniqueFd temp;
  const std::string* to = nullptr;
  if (type != SOCK_DGRAM) {
    if (s.helper) sender = s.helper.get();
    else if (s.e.peer() && socks.count(s.e.peer())) sender = socks[s.e.peer()].fd.get();
    if (sender < 0)
      return fail(make_error(Errc::corrupt_image, "restore", s.what, "queued data on a socket that is not connected"));
  } else if (s.e.peer()) {
    // A connected datagram socket takes data from its peer only.
    if (!socks.count(s.e.peer()))
      return fail(make_error(Errc::unsupported, "restore", s.what, "queued datagrams from a peer outside the tree")
                      .with_hint("pass the socket with --inherit-fd fd[N]:socket:[" + std::to_string(s.e.ino()) + "]"));
    Sock& p = socks[s.e.peer()];
    sender = p.fd.get();
    if (p.connected != s.e.ino()) {
      if (s.e.name().empty())
        return fail(make_error(Errc::unsupported, "restore", s.what, "queued datagrams from a peer that cannot reach it"));
      to = &s.e.name();
    }
  } else {
    for (auto& [ino, y] : socks)
      if (y.connected == s.e.ino() && y.fd) sender = y.fd.get();
    if (sender < 0) {
      if (s.e.name().empty())
        return fail(make_error(Errc::unsupported, "restore", s.what, "queued datagrams on an unnamed socket with no sender"));
      temp = CR_TRY(new_socket(files, SOCK_DGRAM, s.what));
      sender = temp.get();
      to = &s.e.name();
    }
  }
  // Room for everything at once; the saved size is put back with the other options afterwards.
  int big = 16 << 20;
  ::setsockopt(sender, SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof big);
  for (const auto& pkt : s.packets) CR_OK(send_packet(files, sender, pkt, type, to, name_dir(s), s.what));
  return {};
}

Status load_queues(Socks& socks, const Socks& ext, int images_dir) {
  auto r = image::Reader::open(images_dir, kQueuesFile, image::kind(image::Type::sk_queues));
  if (!r) {
    if (r.error().err == ENOENT) return {};
    return fail(r.error());
  }
  std::map<uint32_t, Sock*> by_id;
  for (auto& [ino, s] : socks) by_id[s.id] = &s;
  std::set<uint32_t> ext_ids;
  for (const auto& [ino, s] : ext) ext_ids.insert(s.id);
  for (;;) {
    sk_packet_entry pe;
    bool got = CR_TRY(r->read(pe));
    if (!got) break;
    std::string data = CR_TRY(r->read_raw(pe.length()));
    if (pe.scm_size())
      return fail(make_error(Errc::unsupported, "restore", kQueuesFile, "queued control messages (SCM) are not supported"));
    auto it = by_id.find(pe.id_for());
    if (it == by_id.end() && ext_ids.count(pe.id_for())) continue;  // an inherited socket keeps its own
    if (it == by_id.end())
      return fail(make_error(Errc::corrupt_image, "restore", kQueuesFile,
                             "packet for socket " + std::to_string(pe.id_for()) + ", which is no unix socket of the image"));
    it->second->packets.push_back(std::move(data));
  }
  return {};
}

Status build_all(RestoreFiles& files) {
  Socks socks, ext;
  auto table = CR_TRY(read_file_table(files.images_dir()));
  for (auto& [id, fe] : table) {
    if (fe.type() != UNIXSK) continue;
    if (!fe.has_usk() || fe.usk().id() != id)
      return fail(make_error(Errc::corrupt_image, "restore", image::kFilesFile, "file " + std::to_string(id) + " has no matching usk payload"));
    const unix_sk_entry& e = fe.usk();
    Sock s;
    s.id = id;
    s.e = e;
    // CRIU keeps the kernel's terminating NUL of path names; bind() and lstat() want it gone.
    std::string name = e.name();
    while (is_path(name) && name.back() == '\0') name.pop_back();
    s.e.set_name(name);
    s.what = "unix socket " + std::to_string(e.ino());
    if (e.type() != SOCK_STREAM && e.type() != SOCK_DGRAM && e.type() != SOCK_SEQPACKET)
      return fail(make_error(Errc::unsupported, "restore", s.what, "socket type " + std::to_string(e.type())));
    // External entries (an outside peer, or a socket that must be inherited) are never built here.
    auto& into = (e.uflags() & kUskExtern) ? ext : socks;
    if (ext.count(e.ino()) || !into.emplace(e.ino(), std::move(s)).second)
      return fail(make_error(Errc::corrupt_image, "restore", image::kFilesFile, "two unix sockets with inode " + std::to_string(e.ino())));
  }
  for (auto it = socks.begin(); it != socks.end();) {
    Sock& s = it->second;
    bool outside = s.e.peer() && ext.count(s.e.peer());
    if (s.e.peer() && !socks.count(s.e.peer()) && !outside)
      return fail(make_error(Errc::unsupported, "restore", s.what,
                             "its peer (socket inode " + std::to_string(s.e.peer()) + ") is not in the image"));
    if (s.e.peer() == it->first) return fail(make_error(Errc::corrupt_image, "restore", s.what, "connected to itself"));
    // Only a datagram socket can be connected to an outside peer again (by its name); another one
    // can only be inherited.
    if (outside && (s.e.type() != SOCK_DGRAM || ext[s.e.peer()].e.name().empty())) {
      ext[it->first] = std::move(s);
      it = socks.erase(it);
      continue;
    }
    ++it;
  }
  CR_OK(load_queues(socks, ext, files.images_dir()));

  // 1. Listeners: bound and listening before anyone connects to them.
  for (auto& [ino, s] : socks) {
    if (s.e.state() != TCP_LISTEN) continue;
    if (s.e.type() == SOCK_DGRAM) return fail(make_error(Errc::corrupt_image, "restore", s.what, "listening datagram socket"));
    s.fd = CR_TRY(new_socket(files, int(s.e.type()), s.what));
    CR_OK(bind_own_name(files, s));
    if (::listen(s.fd.get(), int(s.e.backlog())) < 0) return fail(sys_error("listen", s.what));
  }
  // 2. Connected stream/seqpacket sockets: through their listener when one end was accepted from a
  //    listener of the image (both ends then carry the right names), else as a pair.
  for (auto& [ino, s] : socks) {
    if (s.fd || s.e.type() == SOCK_DGRAM || s.e.state() == TCP_LISTEN || !s.e.peer()) continue;
    Sock& p = socks[s.e.peer()];
    if (p.e.peer() != ino || p.e.type() != s.e.type())
      return fail(make_error(Errc::corrupt_image, "restore", s.what, "its peer is not connected back to it"));
    Sock* acc = &s;
    Sock* cli = &p;
    Sock* lis = listener_of(socks, s);
    if (!lis) {
      acc = &p;
      cli = &s;
      lis = listener_of(socks, p);
    }
    if (lis) {
      cli->fd = CR_TRY(new_socket(files, int(cli->e.type()), cli->what));
      CR_OK(bind_own_name(files, *cli));
      CR_OK(connect_to(files, cli->fd.get(), lis->e.name(), name_dir(*lis), cli->what));
      acc->fd.reset(::accept4(lis->fd.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (!acc->fd) return fail(sys_error("accept4", lis->what));
      acc->connected = cli->e.ino();
      cli->connected = acc->e.ino();
    } else {
      CR_OK(make_pair(files, s, p));
      CR_OK(bind_own_name(files, s));
      CR_OK(bind_own_name(files, p));
    }
  }
  // 3. Datagram pairs connected both ways.
  for (auto& [ino, s] : socks) {
    if (s.fd || s.e.type() != SOCK_DGRAM || !s.e.peer() || !socks.count(s.e.peer())) continue;
    Sock& p = socks[s.e.peer()];
    if (p.e.peer() != ino || p.fd) continue;
    if (p.e.type() != SOCK_DGRAM) return fail(make_error(Errc::corrupt_image, "restore", s.what, "peer of another type"));
    CR_OK(make_pair(files, s, p));
    CR_OK(bind_own_name(files, s));
    CR_OK(bind_own_name(files, p));
  }
  // 4. Everything else stands alone: unconnected sockets, one-way datagram connections, and
  //    stream ends whose peer had closed (a pair whose other end goes away after the queue is back).
  for (auto& [ino, s] : socks) {
    if (s.fd) continue;
    if (s.e.type() != SOCK_DGRAM && s.e.state() == TCP_ESTABLISHED) {
      Sock gone;
      gone.e.set_type(s.e.type());
      CR_OK(make_pair(files, s, gone));
      s.helper = std::move(gone.fd);
      s.connected = 0;
    } else {
      s.fd = CR_TRY(new_socket(files, int(s.e.type()), s.what));
    }
    CR_OK(bind_own_name(files, s));
  }
  for (auto& [ino, s] : socks) {
    if (s.e.type() != SOCK_DGRAM || !s.e.peer() || s.connected == s.e.peer()) continue;
    bool outside = !socks.count(s.e.peer());
    Sock& p = outside ? ext[s.e.peer()] : socks[s.e.peer()];
    if (p.e.name().empty())
      return fail(make_error(Errc::unsupported, "restore", s.what,
                             "connected to an unnamed datagram socket that is not connected back"));
    Status st = connect_to(files, s.fd.get(), p.e.name(), name_dir(p), s.what);
    if (!st && outside)
      return fail(st.error().with_hint("the outside peer must be bound to that name again, or pass --inherit-fd fd[N]:socket:[" +
                                       std::to_string(s.e.ino()) + "]"));
    CR_OK(st);
    s.connected = p.e.ino();
  }
  // 5. Queued data, sent from the peer so that it lands in the right receive queue.
  for (auto& [ino, s] : socks) CR_OK_IN(restore_queue(files, socks, s), "queued data");
  // 6. Shutdown state (after the data: a shut-down side can take no more), then the peers that were gone.
  for (auto& [ino, s] : socks) {
    if (!s.e.has_shutdown() || s.e.shutdown() == NONE) continue;
    int how = s.e.shutdown() == READ ? SHUT_RD : s.e.shutdown() == WRITE ? SHUT_WR : SHUT_RDWR;
    if (::shutdown(s.fd.get(), how) < 0) return fail(sys_error("shutdown", s.what));
  }
  for (auto& [ino, s] : socks) s.helper.reset();
  // 7. Options, status flags and owners; permissions of socket files, and names removed after bind.
  for (auto& [ino, s] : socks) {
    CR_OK(restore_opts(s.fd.get(), s.e.opts(), s.what));
    CR_OK(anon::restore_status_flags(s.fd.get(), s.e.flags(), s.what));
    CR_OK(anon::restore_fown(s.fd.get(), s.e.fown(), s.what));
  }
  for (auto& [ino, s] : socks) {
    if (!s.bound || !is_path(s.e.name())) continue;
    CR_OK(at_path(files, s.e.name(), name_dir(s), [&](const std::string& n) -> Status {
      const char* path = n.c_str();
      if (s.e.has_file_perms()) {
        const file_perms_entry& fp = s.e.file_perms();
        if (::chmod(path, fp.mode() & 07777) < 0) return fail(sys_error("chmod", s.e.name()));
        std::string what = "unix socket file " + std::string(s.e.name().c_str());
        auto owner = CR_TRY(ns::owner_on_host(files.userns(), {fp.uid(), fp.gid()}, what));
        if (::chown(path, owner.uid, owner.gid) < 0) return fail(sys_error("chown", s.e.name()));
      }
      if (s.e.deleted() && ::unlink(path) < 0) return fail(sys_error("unlink", s.e.name()));
      return {};
    }));
  }
  auto& objs = files.objects()[kKind];
  for (auto& [ino, s] : socks) objs[ino] = std::move(s.fd);
  return {};
}

}  // namespace

Status bind_name(const RestoreFiles& files, int fd, const std::string& name, const std::string& dir,
                 bool replace_stale) {
  std::string what = "socket name " + (is_path(name) ? name : "@" + name.substr(1));
  CR_OK(at_path(files, name, dir, [&](const std::string& n) -> Status {
    if (is_path(name)) {
      struct stat st;
      if (::lstat(n.c_str(), &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
          return fail(make_error(Errc::conflict, "bind", name, "the path exists and is not a socket"));
        if (!replace_stale)
          return fail(make_error(Errc::conflict, "bind", name,
                                 "the socket file was removed before the dump, and the path is taken again"));
        if (CR_TRY(path_in_use(files, st)))
          return fail(make_error(Errc::conflict, "bind", name, "a live socket is bound to this path")
                          .with_hint("stop the process that holds it, or restore where the path is free"));
        if (::unlink(n.c_str()) < 0) return fail(sys_error("unlink", name, "stale socket file"));
      }
    }
    return {};
  }));
  return bind_in_root(files, fd, name, dir, what);
}

Result<UniqueFd> open_socket(const file_entry& fe, RestoreFiles& files) {
  if (!fe.has_usk()) return fail(make_error(Errc::corrupt_image, "restore", image::kFilesFile, "UNIXSK entry without payload"));
  auto& built = files.data()["unix:built"];
  if (built.empty()) {
    built[0] = "1";
    CR_OK_IN(build_all(files), "unix sockets");
  }
  auto& objs = files.objects()[kKind];
  auto it = objs.find(fe.usk().ino());
  if (it == objs.end() || !it->second) {
    std::string ino = std::to_string(fe.usk().ino());
    if (fe.usk().uflags() & kUskExtern || !objs.count(fe.usk().ino()))
      return fail(make_error(Errc::not_found, "restore", "unix socket " + ino,
                             "its peer was outside the dumped tree and no inherited fd stands in for it")
                      .with_hint("pass --inherit-fd fd[N]:socket:[" + ino + "] with a connected socket N"));
    return fail(make_error(Errc::internal, "restore", "unix socket " + ino, "was not rebuilt"));
  }
  UniqueFd fd(::fcntl(it->second.get(), F_DUPFD_CLOEXEC, 0));
  if (!fd) return fail(sys_error("dup", "unix socket " + std::to_string(fe.usk().ino())));
  return fd;
}

}  // namespace crshim::files::unixsk
