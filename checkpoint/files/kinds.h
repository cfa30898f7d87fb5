// Kinds of open files (regular files, pipes, sockets, eventfds, ...): how each is recognised and
// dumped, and how restore gets it back. One .cc file per kind; the registry is file_kinds().
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "checkpoint/base/result.h"
#include "checkpoint/base/unique_fd.h"
#include "checkpoint/base/sys.h"
#include "checkpoint/files/file_table.h"
#include "checkpoint/image/catalog.h"
#include "checkpoint/image/image.h"
#include "checkpoint/kernel/proc.h"
#include "checkpoint/kernel/remote.h"
#include "fdinfo.pb.h"
#include "file-lock.pb.h"
#include "remap-file-path.pb.h"

namespace crshim::ns {
class UserNs;
}

namespace crshim::files {

namespace inet {
// What a dump does with TCP sockets beyond listening and closed ones.
struct TcpPolicy {
  bool established = false;     // --tcp-established: connections dumped in repair mode
  bool close = false;           // --tcp-close: connections (any state) dumped as closed sockets
  bool skip_in_flight = false;  // --skip-in-flight: connections not accepted yet are dropped
};
}  // namespace inet

// One open fd of a frozen task, as /proc describes it.
struct OpenFd {
  pid_t pid = 0;
  int fd = -1;
  std::string link;    // readlink /proc/PID/fd/N: a path, "pipe:[ino]", "socket:[ino]", "anon_inode:[eventfd]"...
  struct stat st {};   // stat through the link (zeroed when the kernel refuses)
  proc::FdInfo info;   // /proc/PID/fdinfo/N
  int task_pidfd = -1; // pidfd of the task, for steal()

  // A copy of the task's open file in crshim's fd table (pidfd_getfd): the same struct file.
  Result<UniqueFd> steal() const;
  std::string name() const { return "fd " + std::to_string(fd) + " of pid " + std::to_string(pid); }
  // Open flags without O_CLOEXEC (that one is per fd and goes to fdinfo_entry.flags).
  uint32_t open_flags() const;
};

// Dump-wide file state: the files.img table and the images several fds or tasks add to.
class DumpFiles {
 public:
  DumpFiles(int images_dir, bool shell_job) : images_dir_(images_dir), shell_job_(shell_job) {}
  DumpFiles(const DumpFiles&) = delete;
  DumpFiles& operator=(const DumpFiles&) = delete;
  // Removes the --link-remap links this dump made unless keep_link_remaps() was called (link_remap.cc).
  ~DumpFiles();
  FileTable& table() { return table_; }
  int images_dir() const { return images_dir_; }
  bool shell_job() const { return shell_job_; }
  // An image opened on first use and closed by finish() (pipes-data.img, ...).
  Result<image::Writer*> writer(const std::string& name, image::Type type);
  // --external keys given at dump (file[mnt:ino], ...): such files are recorded by key only.
  void set_externals(std::vector<std::string> keys) { externals_ = std::move(keys); }
  void set_ghost_limit(uint64_t bytes) { ghost_limit_ = bytes; }
  // --link-remap: a deleted file that can be linked again gets a link_remap.N name instead of a ghost.
  void set_link_remap(bool on) { link_remap_ = on; }
  bool link_remap() const { return link_remap_; }
  // A link made for --link-remap (`name` in directory `dir`): removed again if the dump fails.
  void add_link_remap(UniqueFd dir, std::string name) { links_.emplace_back(std::move(dir), std::move(name)); }
  // The dump succeeded: its links stay for the restore, which removes them.
  void keep_link_remaps() { links_.clear(); }
  void set_file_locks(bool on) { file_locks_ = on; }
  bool file_locks() const { return file_locks_; }
  // --orphan-pts-master: a pty slave whose master is outside the tree is dumped anyway.
  void set_orphan_pts_master(bool on) { orphan_pts_master_ = on; }
  bool orphan_pts_master() const { return orphan_pts_master_; }
  // --tcp-established: established TCP connections are dumped (in repair mode) instead of refused.
  void set_tcp_policy(const inet::TcpPolicy& p) { tcp_ = p; }
  const inet::TcpPolicy& tcp_policy() const { return tcp_; }
  // Established TCP sockets put into repair mode by the dump (crshim's copies). They stay in repair
  // mode so that killing the tree sends nothing to the peers; a tree that runs on (--leave-running, a
  // failed dump) needs end_tcp_repair() before it is resumed. Defined in inet.cc.
  void add_repaired(UniqueFd sock) { repaired_.push_back(std::move(sock)); }
  void end_tcp_repair();
  // Real pid/tid -> pid in the image for every task of the frozen tree (for kinds that look across it).
  void set_tree_pids(const std::map<pid_t, pid_t>* vpids) { tree_pids_ = vpids; }
  const std::map<pid_t, pid_t>* tree_pids() const { return tree_pids_; }
  // The tree's own user namespace, if any: owners of files go into the images as it sees them.
  void set_userns(const ns::UserNs* userns) { userns_ = userns; }
  const ns::UserNs* userns() const { return userns_; }
  uint64_t ghost_limit() const { return ghost_limit_; }
  bool is_external(const std::string& key) const;
  // Kind-specific memory of what was already dumped (pipe inodes whose data is saved, ...).
  std::map<std::string, std::map<uint64_t, uint32_t>>& seen() { return seen_; }
  // Open files of one kind already given an id, to find fds that share them.
  OpenFiles& open_files(const std::string& kind) { return open_files_[kind]; }
  Status finish();

 private:
  int images_dir_;
  bool shell_job_;
  FileTable table_;
  std::vector<std::string> externals_;
  uint64_t ghost_limit_ = 1u << 20;
  bool link_remap_ = false;
  std::vector<std::pair<UniqueFd, std::string>> links_;
  bool file_locks_ = false;
  bool orphan_pts_master_ = false;
  inet::TcpPolicy tcp_;
  std::vector<UniqueFd> repaired_;
  const std::map<pid_t, pid_t>* tree_pids_ = nullptr;
  const ns::UserNs* userns_ = nullptr;
  std::map<std::string, std::unique_ptr<image::Writer>> writers_;
  std::map<std::string, std::map<uint64_t, uint32_t>> seen_;
  std::map<std::string, OpenFiles> open_files_;
};

// Restore-wide file state: every file object is opened once in crshim and handed to the tasks
// that use it, so fds that shared a struct file share one again.
class RestoreFiles {
 public:
  RestoreFiles(const std::map<uint32_t, file_entry>& files, int images_dir, bool shell_job)
      : files_(files), images_dir_(images_dir), shell_job_(shell_job) {}
  // --inherit-fd fd[N]:KEY: files whose key is KEY come from crshim's fd N instead of being recreated.
  // A key given twice keeps its first fd, as CRIU does (runc names one pipe for stdout and stderr).
  void inherit(int fd, const std::string& key) { inherited_.emplace(key, fd); }
  // crshim's fd given for `key` with --inherit-fd, or -1 (for kinds whose key is not in file_entry).
  int inherited_fd(const std::string& key) const {
    auto it = inherited_.find(key);
    return it == inherited_.end() ? -1 : it->second;
  }
  // The restored tree's root (a directory fd) when it has a mount namespace of its own: the image's
  // paths name files there, not in crshim's root.
  void set_root(int root_fd) { root_fd_ = root_fd; }
  // Opens a path of the image, inside the restored root when there is one.
  Result<UniqueFd> open_path(const std::string& path, int flags, mode_t mode = 0) const {
    return sys::open_in_root(root_fd_, path, flags, mode);
  }
  // The restored tree's network namespace when it is not crshim's: sockets are made in there.
  void set_netns(int netns_fd) { netns_fd_ = netns_fd; }
  int netns() const { return netns_fd_; }
  // socket(2) and socketpair(2) in the tree's network namespace (SOCK_CLOEXEC added).
  Result<UniqueFd> socket(int family, int type, int protocol) const;
  Status socketpair(int family, int type, UniqueFd& a, UniqueFd& b) const;
  // crshim's fd for file `id`, opened on first use.
  Result<int> fd_for(uint32_t id);
  const file_entry& entry(uint32_t id) const { return files_.at(id); }
  int images_dir() const { return images_dir_; }
  bool shell_job() const { return shell_job_; }
  // --tcp-close at restore: connections come back as closed sockets on their address, not repaired.
  void set_tcp_close(bool on) { tcp_close_ = on; }
  bool tcp_close() const { return tcp_close_; }
  // The user namespace the tree is restored into when it is not crshim's: owners in the images are
  // its ids (ns::owner_on_host()).
  void set_userns(const ns::UserNs* userns) { userns_ = userns; }
  const ns::UserNs* userns() const { return userns_; }
  // The file locks task `vpid` held (filelocks.img), loaded on first use.
  Result<std::vector<file_lock_entry>> locks_of(uint32_t vpid);
  // The remap-fpath.img entry for REG file `id` (a ghost, or a --link-remap link whose REG entry is
  // remap_id), nullptr if none. Loaded and checked on first use.
  Result<const remap_file_path_entry*> remap_for(uint32_t id);
  // Ghost (deleted-but-open) file that stands in for REG file `id`; 0 if none.
  Result<uint32_t> ghost_for(uint32_t id);
  // A --link-remap link (REG entry `link_id`) was opened; unlink_link_remaps() removes every such link
  // once all tasks have their files.
  void note_link_remap(uint32_t link_id) { used_links_.insert(link_id); }
  Status unlink_link_remaps();
  // Kind-specific shared objects (both ends of a pipe, loaded data images, ...).
  std::map<std::string, std::map<uint64_t, UniqueFd>>& objects() { return objects_; }
  std::map<std::string, std::map<uint64_t, std::string>>& data() { return data_; }

 private:
  const std::map<uint32_t, file_entry>& files_;
  int images_dir_;
  bool shell_job_;
  int root_fd_ = -1;
  int netns_fd_ = -1;
  const ns::UserNs* userns_ = nullptr;
  bool tcp_close_ = false;
  std::map<std::string, int> inherited_;
  std::optional<std::map<uint32_t, remap_file_path_entry>> remaps_;  // orig file id -> its remap
  std::set<uint32_t> used_links_;
  std::optional<std::vector<file_lock_entry>> locks_;  // loaded on first use
  std::map<uint32_t, UniqueFd> opened_;
  std::map<std::string, std::map<uint64_t, UniqueFd>> objects_;
  std::map<std::string, std::map<uint64_t, std::string>> data_;
};

// Before any task exists: every owner the images give files (memfds, ghost files, unix socket files)
// has an id in files.userns(), so that a refused restore leaves nothing behind (owners.cc).
Status check_owners(RestoreFiles& files, const std::map<uint32_t, file_entry>& all);

struct FileKind {
  const char* name;
  fd_types type;
  // Whether this kind handles the fd (checked in registry order; the first match wins).
  bool (*matches)(const OpenFd& f);
  // Why this fd cannot be dumped even though it is of this kind ("" when it can); called before freezing.
  std::string (*unsupported)(const OpenFd& f, bool shell_job);
  // Adds the file to the dump and returns its id.
  Result<uint32_t> (*dump)(const OpenFd& f, DumpFiles& files);
  // Opens (creates) the file in crshim at restore.
  Result<UniqueFd> (*open)(const file_entry& fe, RestoreFiles& files);
  // Optional: work that needs the task's whole fd table in place (epoll targets), run in the task.
  Status (*finish)(const file_entry& fe, int fd, kernel::Remote& r, RestoreFiles& files);
};

std::span<const FileKind> file_kinds();
const FileKind* kind_for_type(fd_types type);

// Opens a path-named file as a reg_file_entry describes it (flags, position, size check).
Result<UniqueFd> open_reg_file(const reg_file_entry& reg, const RestoreFiles& files);
// For --shell-job: the restoring shell's terminal in place of the recorded one; nullopt when `reg`
// is not a terminal or crshim has none.
std::optional<Result<UniqueFd>> open_shell_terminal(const reg_file_entry& reg);

}  // namespace crshim::files
