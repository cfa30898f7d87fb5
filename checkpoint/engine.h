// The engine's public API: dump a process tree into an image directory, restore it from one.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "checkpoint/base/log.h"
#include "checkpoint/base/progress.h"
#include "checkpoint/base/result.h"
#include "checkpoint/base/unique_fd.h"
#include "checkpoint/hook_points.h"

namespace crshim {

// Everything one job needs besides its request; nothing lives in globals, so a service can run many.
struct Session {
  Logger& log;
  int images_dir = -1;  // directory fd where images are read or written
  int work_dir = -1;    // directory fd for logs and stats (= images_dir when not given)
  ProgressSink* progress = nullptr;  // pages moved, for a progress line (the shim's, on a terminal)
};

// --manage-cgroups modes (CRIU's names). The engine moves tasks in soft mode; props, full and strict
// are taken as soft (properties are not restored); ignore and none leave tasks where crshim is.
enum class CgroupsMode { ignore, none, props, soft, full, strict };

// --cgroup-root [CONTROLLER:]/PATH, RPC cg_root: the dumped root of a hierarchy becomes `path`.
struct CgroupRootRemap {
  std::string controller;  // empty: every hierarchy without a root of its own
  std::string path;
};

// --network-lock: how the network of a tree is kept quiet while its sockets are dumped and restored.
// The values are CRIU's inventory numbering (inventory_entry.network_lock_method).
enum class NetLockMethod : uint32_t { iptables = 0, nftables = 1, skip = 2 };

struct DumpRequest {
  pid_t pid = 0;               // root of the tree to dump
  bool leave_running = false;  // resume the tree after the dump instead of killing it
  bool shell_job = false;      // the tree may share a session/tty with the dumper's shell
  std::vector<std::string> external;  // --external keys
  uint64_t ghost_limit = 1u << 20;    // largest deleted-but-open file carried in the image
  bool link_remap = false;            // --link-remap: deleted files that can be linked again are, instead of copied
  bool file_locks = false;            // --file-locks: dump the locks tasks hold (else they are an error)
  bool orphan_pts_master = false;     // a pty slave whose master is outside the tree is dumped (else refused)
  bool tcp_established = false;       // --tcp-established: established TCP connections are dumped (else refused)
  bool tcp_close = false;             // --tcp-close: TCP connections are dumped as closed sockets (else refused)
  bool skip_in_flight = false;        // --skip-in-flight: connections a listener has not accepted are dropped
  bool compress = false;              // --compress: pages images are zstd streams (restore reads both kinds)
  NetLockMethod network_lock = NetLockMethod::iptables;  // recorded in the inventory for the restore
  // --ext-mount-map KEY:VAL and RPC ext_mnt (besides --external mnt[KEY]:VAL in `external`): the
  // mount at mount point KEY of the tree's mount namespace comes from outside; the image names it VAL.
  std::vector<std::pair<std::string, std::string>> ext_mounts;
  uint32_t empty_ns = 0;      // CLONE_NEWNET (--empty-ns net): the tree's own netns is not dumped
  std::string freeze_cgroup;  // --freeze-cgroup PATH: noted; the tree is frozen with ptrace
  unsigned freeze_timeout_s = 10;  // --timeout: how long one thread may take to stop (a task in D state)
  // Incremental dumps. A pre-dump writes memory only and leaves the tree running; with track_mem
  // the kernel records what the tree writes afterwards, so a dump with parent_img = that pre-dump's
  // images writes only the pages written since and refers to the parent for the rest.
  bool pre_dump = false;
  bool track_mem = false;   // --track-mem (always on for a pre-dump)
  std::string parent_img;   // --prev-images-dir: the previous dump's images, relative to the images dir
  // --page-server: pagemaps and pages go to a page server (CRIU's protocol) instead of the images
  // dir; every other image stays there. ps_fd: an already connected socket instead of address:port.
  bool page_server = false;
  std::string ps_address;
  uint16_t ps_port = 0;
  int ps_fd = -1;
  // --lazy-pages (post-copy): private anonymous pages stay in the frozen tree; once the images are
  // written the dump listens on ps_address:ps_port and serves them to the destination's
  // `crshim lazy-pages --page-server` until it has them all, then the tree goes (or resumes if the
  // transfer fails). status-ready fires when the dump listens.
  bool lazy_pages = false;
  int hangup_fd = -1;  // the RPC client's socket: a lazy dump waiting on its destination gives up when it hangs up
};

struct DumpResult {
  uint64_t frozen_us = 0;
  uint64_t memdump_us = 0;
  uint64_t memwrite_us = 0;
  uint64_t pages_scanned = 0;
  uint64_t pages_written = 0;
  uint64_t pages_skipped_parent = 0;  // unchanged since the parent dump: left to its images
  uint64_t pages_lazy = 0;            // --lazy-pages: left in the tree, served to the destination
  uint64_t total_us = 0;
};

struct InheritedFd {
  int fd = -1;      // in crshim's own fd table
  std::string key;  // pipe:[ino], socket:[ino], tty[rdev:dev], file[mnt:ino], path, external key
};

// --join-ns NS:PID|PATH: restore into an existing namespace instead of the restorer's.
struct JoinNamespace {
  std::string ns;      // ipc, net, time, user, uts
  std::string target;  // a pid (its /proc/PID/ns/NS) or a path to an nsfs file
  uint32_t uid = 0, gid = 0;  // user: the ids the root takes in the namespace (then the images' own)
};

struct RestoreRequest {
  bool detached = false;        // -d: crshim exits, leaving the tree running
  bool sibling = false;         // --restore-sibling: the root becomes the caller's sibling
  bool shell_job = false;
  std::string pidfile;          // --pidfile: where to write the root's real pid
  std::vector<InheritedFd> inherit_fds;
  std::vector<JoinNamespace> join_ns;
  // --root: the directory that becomes the root of the restored mount namespace (needed with one).
  std::string root;
  // --external mnt[NAME]:PATH (in `external`), --ext-mount-map NAME:PATH, RPC ext_mnt: bind host PATH
  // where the image has the external mount NAME.
  std::vector<std::string> external;
  std::vector<std::pair<std::string, std::string>> ext_mounts;
  bool orphan_pts_master = false;  // pty slaves dumped without their master get a new one, handed to the hooks
  uint32_t empty_ns = 0;           // CLONE_NEWNET: a netns the image does not hold is made empty (lo up)
  CgroupsMode manage_cgroups = CgroupsMode::soft;
  std::vector<CgroupRootRemap> cgroup_roots;
  // --lazy-pages: private anonymous memory is left to the `crshim lazy-pages` daemon listening in the
  // work dir, which serves it through userfaultfd while the tree already runs.
  bool lazy_pages = false;
  bool tcp_close = false;  // --tcp-close: dumped TCP connections come back closed, on their addresses
  std::optional<NetLockMethod> network_lock;  // unset (as CRIU): the method the inventory names
};

struct RestoreResult {
  pid_t root_pid = 0;   // real pid of the restored root task
  int exit_status = 0;  // when not detached: the root's wait status once it exits
  uint64_t total_us = 0;
};

Result<DumpResult> dump(const DumpRequest& req, Session& session, Hooks& hooks);
Result<RestoreResult> restore(const RestoreRequest& req, Session& session, Hooks& hooks);

}  // namespace crshim
