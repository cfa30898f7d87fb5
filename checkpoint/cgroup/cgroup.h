// Cgroups of a dumped tree: every task's set from /proc/PID/cgroup into cgroup.img, and at restore
// the tasks put back into those cgroups (remapped with --cgroup-root / RPC cg_root) before they run.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "cgroup.pb.h"
#include "checkpoint/base/log.h"
#include "checkpoint/base/result.h"
#include "checkpoint/engine.h"

namespace crshim::cgroup {

inline constexpr const char* kCgroupFile = "cgroup.img";

// One line of /proc/PID/cgroup: the hierarchy's name ("memory", "cpu,cpuacct", "name=systemd", ""
// for the v2 hierarchy) and the task's path in it.
struct Member {
  std::string name;
  std::string path;
  // For a task in its own cgroup namespace: how much of `path` is that namespace's root (0: "/").
  uint32_t ns_prefix = 0;
  bool operator==(const Member&) const = default;
  bool operator<(const Member& o) const { return name < o.name || (name == o.name && path < o.path); }
};
using Set = std::vector<Member>;  // sorted by name

// Parses /proc/PID/cgroup text; the result is sorted by hierarchy name.
Result<Set> parse_proc_cgroup(std::string_view text, std::string_view source = "cgroup");
Result<Set> read_task_cgroups(pid_t pid);

// The controllers a hierarchy name stands for: "cpu,cpuacct" -> {cpu, cpuacct}; "" -> {""} (v2).
std::vector<std::string> controllers_of(std::string_view name);

// A mounted cgroup hierarchy of this host (only mounts of the hierarchy's root count).
struct Hierarchy {
  std::vector<std::string> controllers;  // sorted; {""} for cgroup2
  std::string mount_point;
};
// Hierarchies from mountinfo text (super options give the controllers).
Result<std::vector<Hierarchy>> parse_hierarchies(std::string_view mountinfo);
// The mount point of hierarchy `name` among `all`, or "" when it is not mounted.
std::string find_mount(const std::vector<Hierarchy>& all, std::string_view name);

// `path` with the dumped root `from` (a controller's top directory, no leading '/') replaced by `to`,
// if `path` lies at or below it (whole components only); nothing when it does not.
std::optional<std::string> remap_path(std::string_view path, std::string_view from, std::string_view to);
// Applies --cgroup-root / cg_root to every set of `entry` (CRIU's rule: each controller's top
// directories are the dumped roots; a root naming one of its controllers wins over a global one).
void apply_roots(cgroup_entry& entry, const std::vector<CgroupRootRemap>& roots);

// Dump side: collects the sets of the dumper and of every task, and writes cgroup.img.
class Collector {
 public:
  // Registers crshim's own set first: its id (1) is the inventory's root_cg_set.
  Status init();
  uint32_t own_set() const { return 1; }
  // The id of the set `pid` lives in (equal sets share an id). A task in a cgroup namespace of its
  // own has the namespace's root recorded in each member (cgns_prefix).
  Result<uint32_t> add_task(pid_t pid);
  // The image: sets used by tasks, and per hierarchy the directories they use, with the root
  // task's directory at the top (what cg_root replaces at restore).
  cgroup_entry entry(uint32_t root_set) const;
  Status write(int images_dir, uint32_t root_set) const;

 private:
  std::vector<Set> sets_;  // id = index + 1
  std::vector<bool> used_;
  std::vector<Hierarchy> hierarchies_;
};

// A freezer cgroup (--freeze-cgroup, RPC freeze_cgroup) that a runtime froze before the dump
// (containerd pauses a container first): thawed so that ptrace can stop its tasks, and frozen again
// when it goes out of scope, for tasks that run on (a failed dump, --leave-running).
class PausedFreezer {
 public:
  // `path`: the cgroup directory (v1 freezer.state or v2 cgroup.freeze); "" or not frozen: nothing.
  static Result<PausedFreezer> thaw_if_frozen(const std::string& path, Logger& log);
  PausedFreezer(PausedFreezer&& o) noexcept : state_file_(std::move(o.state_file_)), log_(o.log_) { o.state_file_.clear(); }
  PausedFreezer& operator=(PausedFreezer&&) = delete;
  ~PausedFreezer();
  // The tasks were killed: there is nothing left to freeze again.
  void tasks_gone() { state_file_.clear(); }

 private:
  PausedFreezer(Logger& log) : log_(&log) {}
  std::string state_file_;  // set while we owe a freeze
  Logger* log_;
};

// Restore side: moves each created task into its set's cgroups, creating missing directories
// (soft mode); directories it created are removed again unless commit() was called.
class Placement {
 public:
  Placement() = default;
  Placement(Placement&&) = default;
  Placement& operator=(Placement&&) = default;
  ~Placement();

  // Reads cgroup.img (absent: nothing to do) and applies `roots`. Modes ignore/none leave every
  // task where crshim is.
  static Result<Placement> prepare(int images_dir, uint32_t root_cg_set, CgroupsMode mode,
                                   const std::vector<CgroupRootRemap>& roots, Logger& log);
  // Moves the task just created for image pid `vpid` (parent `vppid`, 0 for the root) into set
  // `cg_set` (0: no set recorded, it stays where its parent is). Parents are placed first.
  Status place(pid_t real_pid, uint32_t vpid, uint32_t vppid, uint32_t cg_set);
  // For a task about to unshare its cgroup namespace: moves it into that namespace's root in every
  // hierarchy (where it has to be when it unshares); place() then moves it on into `cg_set`.
  Status enter_ns_root(pid_t real_pid, uint32_t vpid, uint32_t cg_set);
  // The restore succeeded: the directories made stay.
  void commit() { created_.clear(); }
  // Paths where `cg_set` would put a task (after remapping), for tests and logs.
  std::vector<std::string> paths_of(uint32_t cg_set) const;

 private:
  Status move(pid_t pid, const cg_set_entry& set);
  Result<std::string> dir_for(const cg_member_entry& m);

  bool active_ = false;
  uint32_t root_cg_set_ = 0;
  Logger* log_ = nullptr;
  std::map<uint32_t, cg_set_entry> sets_;
  std::vector<Hierarchy> hierarchies_;
  std::map<uint32_t, uint32_t> effective_;  // image pid -> set it was put in (0: crshim's)
  std::set<uint32_t> displaced_;            // image pids moved into a namespace root, not in their set yet
  std::vector<std::string> created_;        // made by us, parents first
};

}  // namespace crshim::cgroup
