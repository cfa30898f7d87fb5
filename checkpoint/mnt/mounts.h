// Mount namespaces, pure part: mountinfo -> mnt_entry records (what mountpoints-<ns>.img holds, and
// which mounts cannot be reproduced), external mount maps, and the ordered plan that rebuilds a tree.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "checkpoint/base/result.h"
#include "checkpoint/kernel/proc.h"
#include "mnt.pb.h"

namespace crshim::mnt {

// KEY -> VALUE from --external mnt[KEY]:VALUE, --ext-mount-map KEY:VALUE and RPC ext_mnt. At dump KEY
// is a mount point in the tree and VALUE the name the image keeps; at restore KEY is that name and
// VALUE the host path bound in its place. Other --external kinds and mnt[] (auto-detection) are skipped.
Result<std::map<std::string, std::string>> external_map(const std::vector<std::string>& external,
                                                        const std::vector<std::pair<std::string, std::string>>& pairs);

// KEY -> VALUE from --external dev[KEY]:VALUE (block devices under mounts). At dump KEY is the device as
// "MAJOR/MINOR" and VALUE the name the image keeps; at restore KEY is that name and VALUE the device path.
Result<std::map<std::string, std::string>> device_map(const std::vector<std::string>& external);

// The fstype enum value of a mountinfo filesystem type ("proc" -> PROC); UNSUPPORTED if none.
uint32_t fstype_code(std::string_view fstype);
// The filesystem type mount(2) takes for an fstype value we can mount afresh; empty if none.
std::string fstype_name(uint32_t code);
// MS_* flags of mountinfo per-mount options ("ro,nosuid,relatime"); no atime option = MS_STRICTATIME.
uint32_t mount_flags(std::string_view options);
// Superblock flags (ro, sync, dirsync, mand, lazytime) of mountinfo super options, and the rest of them.
std::pair<uint32_t, std::string> super_flags(std::string_view super_options);
// The kernel's dev encoding CRIU stores: (major << 20) | minor.
inline uint32_t kernel_dev(uint32_t major, uint32_t minor) { return (major << 20) | minor; }
// tmpfs-dev-<s_dev>.tar.gz.img
std::string tmpfs_file(uint32_t s_dev);

// The mount tree as the dump records it.
struct Table {
  std::vector<mnt_entry> entries;     // in mountinfo order; the root mount ("/") first
  std::vector<std::string> problems;  // one line per mount that cannot be restored
  // tmpfs superblocks whose contents are dumped: s_dev -> mount point of one mount showing its root.
  std::map<uint32_t, std::string> tmpfs;
};
// `ext` maps mount points to external names (dump side of external_map()), `devices` block devices to
// external names (dump side of device_map()): a mount of such a device is recorded as fstype AUTO with
// its real type in fsname and "dev[NAME]" as source, as CRIU does, and mounted again from the device
// given for NAME at restore.
Table build_table(const std::vector<proc::MountInfo>& mounts, const std::map<std::string, std::string>& ext,
                  const std::map<std::string, std::string>& devices = {});

// One mount(2)-level action of a restore, with every path already absolute in the helper's view.
struct Step {
  enum class Op {
    fresh,      // mount(source, target, fstype, flags, data): a new superblock in the yard
    extract,    // unpack tmpfs contents (tar_image) into target
    bind,       // mount(source, target, MS_BIND), creating a missing target like source
    propagate,  // mount(NULL, target, NULL, flags): MS_SHARED / MS_SLAVE / MS_PRIVATE
    remount,    // mount(NULL, target, NULL, MS_REMOUNT | MS_BIND | flags): per-mount flags
    detach,     // umount2(target, MNT_DETACH)
    seal,       // mount(NULL, target, NULL, MS_REMOUNT | flags): a read-only superblock, once filled
  };
  Op op;
  std::string target;
  std::string source;
  std::string fstype;
  std::string data;
  unsigned long flags = 0;
  std::string tar_image;   // extract: image file name
  std::string mountpoint;  // the mount point in the image this step serves (for messages)
  int pts_index = -1;      // bind: the source is /dev/pts/<index> of a devpts in the image (runc's /dev/console)
};

struct Plan {
  std::vector<Step> steps;         // everything between making the root a mount and pivot_root()
  std::vector<std::string> yards;  // directories (under the yard) holding fresh superblocks
  std::set<std::string> tar_images;
};
// Orders `entries` parent-first and turns them into steps that rebuild the tree under `root`, with
// fresh superblocks in `yard`; `ext` maps external names to host paths and `devices` external device
// names to device paths (restore sides).
Result<Plan> plan_restore(const std::vector<mnt_entry>& entries, const std::string& root, const std::string& yard,
                          const std::map<std::string, std::string>& ext,
                          const std::map<std::string, std::string>& devices = {});

}  // namespace crshim::mnt
