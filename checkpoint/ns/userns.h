// A user namespace of a dumped tree: its uid and gid maps (userns-<id>.img), read from /proc at dump,
// written into the new namespace at restore, and the translation of ids between crshim's view (what
// /proc shows a reader in the parent namespace) and the namespace's own (what the images keep).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>

#include "checkpoint/base/result.h"
#include "checkpoint/kernel/remote.h"
#include "creds.pb.h"
#include "userns.pb.h"

namespace crshim::ns {

// Whether `pid` lives in another user namespace than crshim.
bool in_other_userns(pid_t pid);

// Makes the task `r` uid and gid `id` of the user namespace it was just put in (no supplementary
// groups), as its creator would be: what the namespace owns (sysctls, /proc files) is then its own.
Status become(kernel::Remote& r, uint32_t uid, uint32_t gid);

class UserNs {
 public:
  // The maps of `pid`'s user namespace, which must be a child of crshim's.
  static Result<UserNs> of_task(pid_t pid);
  // userns-<id>.img, validated.
  static Result<UserNs> load(int images_dir, uint32_t id);
  Status save(int images_dir, uint32_t id) const;
  // The maps of the user namespace open as `ns_fd` (--join-ns user), as crshim's namespace sees them.
  static Result<UserNs> of_ns_fd(int ns_fd, const std::string& what);
  // Writes the maps into the fresh user namespace of `pid` (before it uses any id).
  Status apply(pid_t pid) const;
  // become(r, 0, 0) if uid and gid 0 are mapped.
  Status become_root(kernel::Remote& r) const;

  // An id of the parent namespace as the namespace sees it (65534, the overflow id, if unmapped).
  uint32_t uid_inside(uint32_t outside) const { return inside(entry_.uid_map(), outside); }
  uint32_t gid_inside(uint32_t outside) const { return inside(entry_.gid_map(), outside); }
  // An id of the namespace as the parent sees it; none if unmapped.
  std::optional<uint32_t> uid_outside(uint32_t inside) const { return outside(entry_.uid_map(), inside); }
  std::optional<uint32_t> gid_outside(uint32_t inside) const { return outside(entry_.gid_map(), inside); }
  // The credentials /proc showed crshim, as the namespace sees them.
  void creds_inside(creds_entry& c) const;

  const userns_entry& entry() const { return entry_; }

 private:
  static uint32_t inside(const google::protobuf::RepeatedPtrField<uid_gid_extent>& map, uint32_t outside);
  static std::optional<uint32_t> outside(const google::protobuf::RepeatedPtrField<uid_gid_extent>& map, uint32_t inside);
  userns_entry entry_;
};

// The owner of a non-task object (SysV IPC object, memfd, ghost file, socket file, tty).
struct Owner {
  uint32_t uid = 0, gid = 0;
};

// Dump: how the images keep an owner crshim sees as `host`: as the tree's own user namespace `ns`
// sees it (the overflow id if unmapped), as CRIU does; unchanged when `ns` is null (no namespace of
// its own), so that images move between namespaces with other id ranges.
Owner owner_in_image(const UserNs* ns, Owner host);
// Restore: the owner crshim gives (chown, IPC_SET) to object `what` whose image owner is `image`, the
// tree being restored into user namespace `ns` (null: crshim's own); an error if `ns` does not map it.
Result<Owner> owner_on_host(const UserNs* ns, Owner image, const std::string& what);

}  // namespace crshim::ns
