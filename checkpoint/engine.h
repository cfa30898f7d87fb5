// The engine's public API: dump a process tree into an image directory, restore it from one.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "checkpoint/base/log.h"
#include "checkpoint/base/result.h"
#include "checkpoint/base/unique_fd.h"
#include "checkpoint/hook_points.h"

namespace crshim {

// Everything one job needs besides its request; nothing lives in globals, so a service can run many.
struct Session {
  Logger& log;
  int images_dir = -1;  // directory fd where images are read or written
  int work_dir = -1;    // directory fd for logs and stats (= images_dir when not given)
};

struct DumpRequest {
  pid_t pid = 0;               // root of the tree to dump
  bool leave_running = false;  // resume the tree after the dump instead of killing it
  bool shell_job = false;      // the tree may share a session/tty with the dumper's shell
  std::vector<std::string> external;  // --external keys
  uint64_t ghost_limit = 1u << 20;    // largest deleted-but-open file carried in the image
  bool file_locks = false;            // --file-locks: dump the locks tasks hold (else they are an error)
};

struct DumpResult {
  uint64_t frozen_us = 0;
  uint64_t memdump_us = 0;
  uint64_t memwrite_us = 0;
  uint64_t pages_scanned = 0;
  uint64_t pages_written = 0;
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
};

struct RestoreRequest {
  bool detached = false;        // -d: crshim exits, leaving the tree running
  bool sibling = false;         // --restore-sibling: the root becomes the caller's sibling
  bool shell_job = false;
  std::string pidfile;          // --pidfile: where to write the root's real pid
  std::vector<InheritedFd> inherit_fds;
  std::vector<JoinNamespace> join_ns;
};

struct RestoreResult {
  pid_t root_pid = 0;   // real pid of the restored root task
  int exit_status = 0;  // when not detached: the root's wait status once it exits
  uint64_t total_us = 0;
};

Result<DumpResult> dump(const DumpRequest& req, Session& session, Hooks& hooks);
Result<RestoreResult> restore(const RestoreRequest& req, Session& session, Hooks& hooks);

}  // namespace crshim
