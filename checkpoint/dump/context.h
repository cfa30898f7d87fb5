// State shared by every step of one dump: the request, the session, the dump-wide tables and ids.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "checkpoint/dump/incremental.h"
#include "checkpoint/engine.h"
#include "checkpoint/files/kinds.h"
#include "checkpoint/kernel/features.h"
#include "checkpoint/mem/lazy_remote.h"
#include "checkpoint/ns/userns.h"
#include "seccomp.pb.h"

namespace crshim::dumper {

// CRIU's small integer ids for kernel objects (namespaces, fd tables, mms...), allocated from one
// counter so that equal kernel objects get equal ids.
class IdMap {
 public:
  uint32_t get(const std::string& kind, uint64_t kernel_key) {
    auto [it, fresh] = ids_.try_emplace({kind, kernel_key}, next_);
    if (fresh) next_++;
    return it->second;
  }
  // An id no other object shares.
  uint32_t unique() { return next_++; }
  // The id of `pid`'s object of kcmp type `kcmp_type` (KCMP_VM, KCMP_FILES, ...): equal to another
  // task's id exactly when the kernel says they share the object.
  uint32_t by_kcmp(int kcmp_type, pid_t pid);

 private:
  std::map<std::pair<std::string, uint64_t>, uint32_t> ids_;
  std::map<int, std::vector<std::pair<pid_t, uint32_t>>> kcmp_;
  uint32_t next_ = 1;
};

struct DumpContext {
  DumpContext(const DumpRequest& r, Session& s)
      : req(r), session(s), xsave(kernel::xsave_layout()), files(s.images_dir, r.shell_job) {
    files.set_externals(r.external);
    files.set_ghost_limit(r.ghost_limit);
    files.set_link_remap(r.link_remap);
    files.set_file_locks(r.file_locks);
    files.set_orphan_pts_master(r.orphan_pts_master);
    files.set_tcp_policy({r.tcp_established, r.tcp_close, r.skip_in_flight});
    files.set_tree_pids(&vpids);
  }

  const DumpRequest& req;
  Session& session;
  kernel::XsaveLayout xsave;
  files::DumpFiles files;
  IdMap ids;
  seccomp_entry seccomp;
  uint32_t next_pages_id = 1;
  DumpResult result;
  std::map<pid_t, pid_t> vpids;  // real pid/tid -> pid/tid in the dumped tree's pid namespace
  size_t pid_levels = 0;         // pid namespace depth of the tree's root, as /proc/PID/status shows it
  std::map<pid_t, std::vector<uint32_t>> nested_pids;  // real pid/tid -> pids in deeper namespaces
  std::map<pid_t, uint32_t> cg_sets;  // real pid -> its cgroup set in cgroup.img (thread_core.cg_set)
  const ParentImages* parent = nullptr;    // --prev-images-dir
  mem::PageSink* page_sink = nullptr;      // --page-server: where pages go instead of the images dir
  mem::LazyPagesSource* lazy_source = nullptr;  // --lazy-pages: the pages left in the tasks, served later
  std::map<uint32_t, uint64_t> tracking;  // vpid -> write-tracking userfaultfd left armed (inode)
  std::map<pid_t, int> armed_now;          // real pid -> fd of a tracking uffd this dump put in it
  std::optional<ns::UserNs> userns;        // the tree's own user namespace: ids in images are its

  uint32_t vpid(pid_t real) const {
    auto it = vpids.find(real);
    return uint32_t(it == vpids.end() ? real : it->second);
  }
};

}  // namespace crshim::dumper
