// Reads a whole image set and validates it before anything is created: every id, count, address and
// reference is checked here so that restore never acts on a hostile or damaged image.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "checkpoint/base/result.h"
#include "core.pb.h"
#include "fdinfo.pb.h"
#include "fs.pb.h"
#include "inventory.pb.h"
#include "mm.pb.h"
#include "pagemap.pb.h"
#include "seccomp.pb.h"

namespace crshim::restorer {

struct ProcessImage {
  pstree_entry pstree;
  std::vector<core_entry> cores;  // one per thread, in pstree.threads order (leader first)
  task_kobj_ids_entry ids;
  mm_entry mm;
  uint32_t pages_id = 0;
  std::vector<pagemap_entry> pagemap;
  fs_entry fs;
  std::vector<fdinfo_entry> fds;

  uint32_t pid() const { return pstree.pid(); }
  // Pid namespaces the task lives in below the dumped tree's (crshim extension of pstree.img).
  size_t ns_depth() const { return size_t(pstree.crshim_ns_pid_size()); }
  // Thread `i`'s pids for clone3's set_tid: innermost namespace first, the tree's namespace last.
  std::vector<pid_t> set_tid(int i) const {
    std::vector<pid_t> out;
    for (size_t d = ns_depth(); d > 0; d--) out.push_back(pid_t(pstree.crshim_ns_threads(int(size_t(i) * ns_depth() + d - 1))));
    out.push_back(pid_t(pstree.threads(i)));
    return out;
  }
  // The id thread `i` has in its own pid namespace (what its own syscalls take).
  pid_t own_tid(int i) const { return set_tid(i).front(); }
  bool alive() const { return cores[0].tc().task_state() == 1; }
};

struct ImageSet {
  inventory_entry inventory;
  std::vector<ProcessImage> processes;  // parents before children, root first
  std::map<uint32_t, file_entry> files;
  seccomp_entry seccomp;
};

// Limits that bound what an image may ask for (a corrupt count must not make us allocate or loop forever).
inline constexpr size_t kMaxTasks = 1u << 16;
inline constexpr size_t kMaxThreads = 1u << 14;
inline constexpr size_t kMaxVmas = 1u << 20;
inline constexpr size_t kMaxFds = 1u << 20;

Result<ImageSet> load_images(int images_dir);

}  // namespace crshim::restorer
