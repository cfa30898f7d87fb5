// Unix sockets (stream, datagram, seqpacket): one unix_sk_entry per socket, described by sock_diag
// (name, peer, state, backlog, shutdown) and socket options; queued data is peeked into sk-queues.img.
// Sockets connected to something outside the dumped processes are refused unless the dump allows
// them (--ext-unix-sk, --external unix[INO]).
#include <dirent.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/time.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstring>
#include <set>

#include "checkpoint/base/sys.h"
#include "checkpoint/files/anon_common.h"
#include "checkpoint/files/kinds.h"
#include "checkpoint/files/sock_diag.h"
#include "checkpoint/files/sock_opts.h"
#include "checkpoint/files/unix_diag.h"
#include "checkpoint/files/unix_restore.h"
#include "checkpoint/ns/userns.h"
#include "sk-packet.pb.h"

namespace crshim::files {

namespace {

constexpr const char* kKind = "unix";
constexpr const char* kQueuesFile = "sk-queues.img";
constexpr uint32_t kUskExtern = 1;  // unix_sk_entry.uflags: the peer is outside the tree

std::string fd_path(const OpenFd& f) { return "/proc/" + std::to_string(f.pid) + "/fd/" + std::to_string(f.fd); }

// The socket's protocol ("UNIX", "UNIX-STREAM", "TCP", ...), from the socket inode's xattr.
std::string proto_name(const OpenFd& f) {
  char buf[64];
  ssize_t n = ::getxattr(fd_path(f).c_str(), "system.sockprotoname", buf, sizeof buf);
  return n > 0 ? std::string(buf, size_t(n)) : std::string();
}

bool matches(const OpenFd& f) { return f.link.rfind("socket:", 0) == 0 && proto_name(f).rfind("UNIX", 0) == 0; }

uint32_t sock_ino(const OpenFd& f) {
  if (f.st.st_ino) return uint32_t(f.st.st_ino);
  uint64_t ino = 0;
  if (f.link.size() > 9) sys::parse_u64(std::string_view(f.link).substr(8, f.link.size() - 9), ino);
  return uint32_t(ino);
}

std::vector<pid_t> children_of(pid_t pid) {
  std::vector<pid_t> out;
  std::string dir = "/proc/" + std::to_string(pid) + "/task";
  DIR* d = ::opendir(dir.c_str());
  if (!d) return out;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    auto text = sys::read_file(dir + "/" + e->d_name + "/children");
    if (!text) continue;
    for (auto piece : sys::split(*text, ' ')) {
      uint64_t c;
      if (sys::parse_u64(sys::trim(piece), c)) out.push_back(pid_t(c));
    }
  }
  ::closedir(d);
  return out;
}

std::set<pid_t> subtree(pid_t root) {
  std::set<pid_t> out;
  std::vector<pid_t> todo{root};
  while (!todo.empty()) {
    pid_t p = todo.back();
    todo.pop_back();
    if (!out.insert(p).second) continue;
    for (pid_t c : children_of(p)) todo.push_back(c);
  }
  return out;
}

// The processes a dump of `pid` covers: its session leader's tree when `pid` is in it (the dumped root
// is a session leader), else its own subtree.
std::set<pid_t> dump_scope(pid_t pid) {
  pid_t sid = ::getsid(pid);
  if (sid > 0) {
    auto tree = subtree(sid);
    if (tree.count(pid)) return tree;
  }
  return subtree(pid);
}

// Inodes of every socket the processes in `pids` hold.
std::set<uint32_t> held_sockets(const std::set<pid_t>& pids) {
  std::set<uint32_t> out;
  for (pid_t p : pids) {
    std::string dir = "/proc/" + std::to_string(p) + "/fd";
    DIR* d = ::opendir(dir.c_str());
    if (!d) continue;
    while (dirent* e = ::readdir(d)) {
      if (e->d_name[0] == '.') continue;
      auto link = sys::read_link(dir + "/" + e->d_name);
      uint64_t ino;
      if (link && link->rfind("socket:[", 0) == 0 && sys::parse_u64(std::string_view(*link).substr(8, link->size() - 9), ino))
        out.insert(uint32_t(ino));
    }
    ::closedir(d);
  }
  return out;
}

std::string describe_peer_problem(const unixsk::SockDiag& d, bool peer_held) {
  if (d.state == TCP_LISTEN && !d.icons.empty())
    return "listening unix socket with " + std::to_string(d.icons.size()) +
           " connection(s) not accepted yet (let the program accept them first)";
  if (d.peer && !peer_held)
    return "unix socket connected to socket inode " + std::to_string(d.peer) + " outside the dumped processes";
  return "";
}

std::string unsupported(const OpenFd& f, bool) {
  auto ns = sockdiag::task_netns(f.pid);
  if (!ns) return "unix socket (" + ns.error().render() + ")";
  auto d = unixsk::diag_by_ino(sock_ino(f), ns->get());
  if (!d) return "unix socket (" + d.error().render() + ")";
  // A peer outside the tree may be allowed (--ext-unix-sk, unix[INO]): dump() decides, knowing the keys.
  return describe_peer_problem(*d, true);
}

using sock::get_int;

Result<sk_opts_entry> dump_opts(int fd, const std::string& what) {
  sk_opts_entry o = CR_TRY(sock::dump_common_opts(fd, what));
  o.set_so_passcred(CR_TRY(get_int(fd, SOL_SOCKET, SO_PASSCRED, "SO_PASSCRED", what)) != 0);
  o.set_so_passsec(CR_TRY(get_int(fd, SOL_SOCKET, SO_PASSSEC, "SO_PASSSEC", what)) != 0);
  // An attached classic BPF filter: the instruction count first, then the instructions.
  socklen_t count = 0;
  if (::getsockopt(fd, SOL_SOCKET, SO_GET_FILTER, nullptr, &count) < 0) return fail(sys_error("getsockopt(SO_GET_FILTER)", what));
  if (count) {
    std::vector<sock_filter> insns(count);
    socklen_t got = count;
    if (::getsockopt(fd, SOL_SOCKET, SO_GET_FILTER, insns.data(), &got) < 0)
      return fail(sys_error("getsockopt(SO_GET_FILTER)", what));
    for (socklen_t i = 0; i < got && i < count; i++) {
      uint64_t word;
      static_assert(sizeof word == sizeof(sock_filter));
      memcpy(&word, &insns[i], sizeof word);
      o.add_so_filter(word);
    }
  }
  return o;
}

// Fills name, name_dir, deleted and file_perms for a socket bound to `name`.
Status dump_name(const OpenFd& f, const unixsk::SockDiag& d, unix_sk_entry& e, const std::string& what) {
  std::string name = d.name;
  if (name.empty() || name[0] == '\0') {
    e.set_name(name);  // unbound, or abstract: the bytes are the name
    return {};
  }
  // A path name: stored as the kernel reports it, with its terminating NUL (as CRIU does).
  e.set_name(name);
  while (!name.empty() && name.back() == '\0') name.pop_back();
  // Looked up through the task's own root (a container's names are not crshim's).
  std::string full = "/proc/" + std::to_string(f.pid) + "/root" + name;
  if (name[0] != '/') {
    // Relative to the directory it was bound in; the task's cwd is the only candidate we can see.
    std::string cwd = CR_TRY(sys::read_link("/proc/" + std::to_string(f.pid) + "/cwd"));
    full = "/proc/" + std::to_string(f.pid) + "/cwd/" + name;
    e.set_name_dir(cwd);
  }
  struct stat st;
  bool exists = ::stat(full.c_str(), &st) == 0;
  bool same = exists && d.vfs_ino && S_ISSOCK(st.st_mode) && st.st_ino == *d.vfs_ino &&
              major(st.st_dev) == (d.vfs_dev >> 20) && minor(st.st_dev) == (d.vfs_dev & 0xfffff);
  if (same) {
    file_perms_entry* p = e.mutable_file_perms();
    p->set_mode(st.st_mode);
    p->set_uid(st.st_uid);
    p->set_gid(st.st_gid);
  } else if (name[0] != '/' && exists) {
    // Another file has the name in the task's current directory: it was bound somewhere else.
    return fail(make_error(Errc::unsupported, "dump", what,
                           "bound to the relative name '" + name + "' outside the current directory of the task"));
  } else {
    e.set_deleted(true);  // the socket file was removed (or replaced) after bind
  }
  return {};
}

Status dump_queue(int fd, int type, uint32_t id, DumpFiles& files, const std::string& what) {
  auto packets = CR_TRY(unixsk::peek_queue(fd, type, what));
  if (packets.empty()) return {};
  image::Writer* w = CR_TRY(files.writer(kQueuesFile, image::Type::sk_queues));
  for (const auto& p : packets) {
    sk_packet_entry pe;
    pe.set_id_for(id);
    pe.set_length(uint32_t(p.size()));
    CR_OK(w->write(pe));
    CR_OK(w->write_raw(p));
  }
  return {};
}

// The peer of `e` outside the tree, as an entry with the external flag that no fd refers to: restore
// reads its name to connect `e` to it again.
Status add_external_peer(const unixsk::SockDiag& peer, const unix_sk_entry& e, DumpFiles& files) {
  auto& ids = files.seen()[kKind];
  if (ids.count(peer.ino)) return {};
  file_entry fe;
  fe.set_type(UNIXSK);
  unix_sk_entry* x = fe.mutable_usk();
  x->set_ino(peer.ino);
  x->set_type(peer.type);
  x->set_state(peer.state);
  x->set_flags(0);
  x->set_uflags(kUskExtern);
  x->set_backlog(0);
  x->set_peer(0);
  *x->mutable_fown() = e.fown();
  *x->mutable_opts() = e.opts();
  x->set_name(peer.name);
  uint32_t id = CR_TRY(anon::add_file(files, std::move(fe), [](file_entry& y, uint32_t i) {
    y.set_id(i);
    y.mutable_usk()->set_id(i);
  }));
  ids[peer.ino] = id;
  return {};
}

Result<uint32_t> dump(const OpenFd& f, DumpFiles& files) {
  uint32_t ino = sock_ino(f);
  // A socket has exactly one open file (it cannot be reopened), so the inode names it.
  auto& ids = files.seen()[kKind];
  if (auto it = ids.find(ino); it != ids.end()) return it->second;
  std::string what = "unix socket " + std::to_string(ino);
  UniqueFd own = CR_TRY(f.steal());
  // Listed by the network namespace the socket was made in (the tree's may not be crshim's).
  UniqueFd netns = CR_TRY(sockdiag::socket_netns(own.get(), what));
  auto d = CR_TRY(unixsk::diag_by_ino(ino, netns.get()));

  // Every socket the dumped processes hold, gathered once (they are frozen now).
  auto& held = files.seen()["unix:held"];
  if (held.empty()) {
    held[0] = 1;  // marks the set as gathered
    for (uint32_t i : held_sockets(dump_scope(f.pid))) held[i] = 1;
  }
  bool outside = d.peer && !held.count(d.peer);
  bool external = outside && d.state != TCP_LISTEN &&
                  (files.is_external("unix[" + std::to_string(ino) + "]") || files.is_external("unix[]"));
  if (std::string why = describe_peer_problem(d, !outside || external); !why.empty())
    return fail(make_error(Errc::unsupported, "dump", what, why)
                    .with_hint(d.state == TCP_LISTEN ? "let the program accept them, or close the socket, before checkpointing"
                                                     : "allow it with --ext-unix-sk or --external unix[" +
                                                           std::to_string(ino) + "]"));

  int type = CR_TRY(get_int(own.get(), SOL_SOCKET, SO_TYPE, "SO_TYPE", what));
  if (type != SOCK_STREAM && type != SOCK_DGRAM && type != SOCK_SEQPACKET)
    return fail(make_error(Errc::unsupported, "dump", what, "socket type " + std::to_string(type)));

  file_entry fe;
  fe.set_type(UNIXSK);
  unix_sk_entry* e = fe.mutable_usk();
  e->set_ino(ino);
  e->set_type(uint32_t(type));
  e->set_state(d.state);
  e->set_flags(f.open_flags());
  e->set_uflags(0);
  e->set_backlog(d.state == TCP_LISTEN ? d.wqueue : 0);
  e->set_peer(d.peer);
  *e->mutable_fown() = CR_TRY(anon::dump_fown(own.get(), what));
  *e->mutable_opts() = CR_TRY(dump_opts(own.get(), what));
  CR_OK(dump_name(f, d, *e, what));
  if (e->has_file_perms()) {
    auto owner = ns::owner_in_image(files.userns(), {e->file_perms().uid(), e->file_perms().gid()});
    e->mutable_file_perms()->set_uid(owner.uid);
    e->mutable_file_perms()->set_gid(owner.gid);
  }
  bool self_external = false;
  if (external) {
    // A datagram socket whose outside peer has a name is connected to that name again at restore (the
    // peer is recorded as an external entry); anything else is external itself and comes back only
    // through --inherit-fd fd[N]:socket:[INO].
    auto peer = unixsk::diag_by_ino(d.peer, netns.get());
    if (type == SOCK_DGRAM && peer && !peer->name.empty() && (peer->name[0] == '/' || peer->name[0] == '\0')) {
      CR_OK(add_external_peer(*peer, *e, files));
    } else {
      e->set_uflags(kUskExtern);
      e->set_peer(0);
      self_external = true;
    }
  }
  if (d.shutdown & 3) e->set_shutdown(sk_shutdown(d.shutdown & 3));
  uint32_t id = CR_TRY(anon::add_file(files, std::move(fe), [](file_entry& x, uint32_t id) {
    x.set_id(id);
    x.mutable_usk()->set_id(id);
  }));
  ids[ino] = id;
  // A listener's queue holds connections, not data (and a pending one was refused above).
  // An external socket comes back as the inherited socket, with whatever it holds then.
  if (d.state != TCP_LISTEN && !self_external) CR_OK(dump_queue(own.get(), type, id, files, what));
  return id;
}

Result<UniqueFd> open(const file_entry& fe, RestoreFiles& files) { return unixsk::open_socket(fe, files); }

}  // namespace

extern const FileKind kUnixKind{"unix socket", UNIXSK, matches, unsupported, dump, open, nullptr};

}  // namespace crshim::files
