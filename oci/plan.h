// OCI bundle -> engine request pieces: what a checkpoint marks external, what a restore binds, joins,
// inherits and opens. Pure functions over facts gathered elsewhere, so every mapping is unit-testable.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "checkpoint/base/result.h"
#include "checkpoint/cgroup/cgroup.h"
#include "checkpoint/engine.h"
#include "checkpoint/kernel/proc.h"
#include "oci/config.h"

namespace crshim::oci {

// A cgroup file system mounted in the container, as recorded at checkpoint: restore binds the host
// directory of the same hierarchy in its place.
struct CgroupMount {
  std::string mount_point;  // in the container
  std::string hierarchy;    // "cpu", "cpu,cpuacct", "name=systemd", "" for cgroup2
  std::string root;         // the directory of the hierarchy it shows, "/h5"
  bool operator==(const CgroupMount&) const = default;
};

// crshim-oci.json: what a checkpoint learns that its restore needs besides the images.
struct BundleRecord {
  std::vector<CgroupMount> cgroup_mounts;
  // Host device files bound into the container (in a user namespace a runtime cannot mknod them, and
  // masks files with a bind of /dev/null): their host paths, which also name them in the images.
  std::vector<std::string> device_binds;
  bool operator==(const BundleRecord&) const = default;
};

// Files written next to the images: runc's stdio record and crshim's own bundle record.
inline constexpr const char* kDescriptorsFile = "descriptors.json";
inline constexpr const char* kBundleRecordFile = "crshim-oci.json";

// The uid and gid maps of a container's own user namespace (/proc/PID/uid_map, userns-<id>.img): host
// ids as crshim sees them, like the bundle's linux.uidMappings hostID.
struct UserMaps {
  std::vector<IdMapping> uid, gid;
};

// What the checkpoint learns from the running container.
struct ContainerView {
  std::vector<proc::MountInfo> mounts;           // its mountinfo
  std::map<std::string, uint64_t> ns_path_inodes;  // linux.namespaces[].path -> inode of that file
  std::map<std::string, uint64_t> ns_inodes;     // the container's own: "net", "user" -> inode
  std::vector<cgroup::Hierarchy> host_hierarchies;  // this host's, to name the cgroup mounts
  std::string host_dev;  // where crshim sees the host's devtmpfs ("" when it is not mounted)
  std::optional<UserMaps> userns;  // the maps of the init's user namespace, when it is not crshim's
};

struct CheckpointPlan {
  std::vector<std::pair<std::string, std::string>> ext_mounts;  // mount point -> name in the image
  std::vector<std::string> external;                           // net[INO]:extRootNetNS
  uint32_t empty_ns = 0;
  BundleRecord record;
};

Result<CheckpointPlan> plan_checkpoint(const Config& config, const ContainerView& view);

// What the restore needs to know about this host.
struct HostView {
  std::vector<cgroup::Hierarchy> hierarchies;
  cgroup::Set own_cgroups;  // crshim's /proc/self/cgroup
};

// A file the shim opens and hands to the engine as --inherit-fd KEY.
struct FileToOpen {
  std::string key;
  std::string path;
};

struct RestorePlan {
  std::string root;  // absolute rootfs path
  std::vector<std::pair<std::string, std::string>> ext_mounts;  // name in the image -> host path
  std::vector<JoinNamespace> join_ns;
  std::vector<InheritedFd> stdio;  // fds 0..2 of crshim itself, keyed by what descriptors.json recorded
  std::vector<FileToOpen> open;
  uint32_t empty_ns = 0;
  bool terminal = false;
  std::vector<CgroupRootRemap> cgroup_roots;
  std::vector<std::string> cgroup_dirs;  // host directories bound into the container: made beforehand
};

// `bundle` is absolute; `descriptors` the three recorded stdio targets (may be empty).
Result<RestorePlan> plan_restore(const Config& config, const std::string& bundle,
                                 const std::vector<std::string>& descriptors,
                                 const BundleRecord& record, const HostView& host);

// The cgroup a container's tasks go to in hierarchy `own` (crshim's membership there) for
// linux.cgroupsPath `path`: absolute paths are taken as they are, relative ones below crshim's own.
std::string cgroup_target(const std::string& path, const cgroup::Member& own);

// descriptors.json and crshim-oci.json (de)serialisation.
std::string descriptors_json(const std::vector<std::string>& targets);
Result<std::vector<std::string>> parse_descriptors(std::string_view text);
std::string record_json(const BundleRecord& record);
Result<BundleRecord> parse_record(std::string_view text);

// What the checkpointed init runs with: its capability sets and whether a seccomp filter is on.
struct InitSecurity {
  Capabilities caps;
  bool seccomp = false;
};

// Refuses a restore whose bundle does not describe the checkpointed init: process.capabilities
// (when given) must equal its sets, and linux.seccomp must be given exactly when it has a filter
// (a restore brings back what was dumped, not what the bundle asks for).
Status check_security(const Config& config, const InitSecurity& init);

// "0 100000 65536, ..." (container id, host id, size), "none" for no entries.
std::string maps_text(const std::vector<IdMapping>& maps);

// Refuses a bundle that does not describe the container's user namespace: a user namespace entry
// exactly when the tree has one of its own (`maps`, nullopt: it is in crshim's), with the same uid and
// gid maps (a restore makes the namespace with the image's maps: a bundle asking for others would be
// silently ignored). At checkpoint `maps` are the running init's, at restore the images'.
// A user namespace entry with a path is joined: then only the bundle's mappings, if any, are
// compared with `joined`, the maps of that namespace (nullopt: crshim's own).
Status check_userns(const Config& config, const std::optional<UserMaps>& maps, bool at_restore,
                    const std::optional<UserMaps>& joined = std::nullopt);

}  // namespace crshim::oci
