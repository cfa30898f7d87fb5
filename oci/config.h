// OCI runtime config.json: the parts a checkpoint/restore needs, parsed and validated into a struct.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "checkpoint/base/result.h"

namespace crshim::oci {

// One entry of "mounts".
struct Mount {
  std::string destination;  // absolute path in the container
  std::string type;         // "" when absent
  std::string source;       // as written (relative sources are relative to the bundle)
  std::vector<std::string> options;
  // runc's rule: type "bind" or a bind/rbind option makes it a bind mount of a host path.
  bool is_bind() const;
};

// One entry of a hooks list.
struct Hook {
  std::string path;  // absolute
  std::vector<std::string> args;  // argv, args[0] included; empty: {path}
  std::vector<std::string> env;
  std::optional<int> timeout;  // seconds, > 0
};

struct HookLists {
  std::vector<Hook> prestart, create_runtime, create_container, start_container, poststart, poststop;
};

// One entry of linux.namespaces.
struct Namespace {
  std::string type;  // pid, network, mount, ipc, uts, user, cgroup, time
  std::string path;  // "" = a new namespace
};

// One entry of linux.uidMappings / linux.gidMappings: `size` ids from container_id inside are host_id.. outside.
struct IdMapping {
  uint32_t container_id = 0, host_id = 0, size = 0;
  bool operator==(const IdMapping&) const = default;
};

// process.capabilities: each set as a mask of capability bits.
struct Capabilities {
  uint64_t bounding = 0, effective = 0, permitted = 0;
  bool operator==(const Capabilities&) const = default;
};

struct Config {
  std::string oci_version;
  std::string root_path;  // as written (relative to the bundle unless absolute)
  bool root_readonly = false;
  bool terminal = false;
  std::optional<Capabilities> capabilities;  // absent: the bundle says nothing, nothing is checked
  bool seccomp = false;                      // linux.seccomp is given
  std::vector<Mount> mounts;
  HookLists hooks;
  std::vector<Namespace> namespaces;
  std::vector<IdMapping> uid_mappings, gid_mappings;  // linux.uidMappings, linux.gidMappings
  std::optional<std::string> cgroups_path;
  std::vector<std::string> masked_paths;
  std::vector<std::string> readonly_paths;
  std::map<std::string, std::string> annotations;

  // The namespace entry of `type`, or null.
  const Namespace* find_namespace(std::string_view type) const;
};

// Largest config.json accepted, and deepest nesting (a guard against stack-hungry inputs).
inline constexpr size_t kMaxConfigSize = 4u << 20;
inline constexpr int kMaxConfigDepth = 64;

// Parses config.json text. Errors are one line, "FIELD: what is wrong" in Error::message, with
// `origin` (the file) as the object. Unknown properties are ignored, as the OCI spec requires.
Result<Config> parse_config(std::string_view text, const std::string& origin = "config.json");
// Reads and parses BUNDLE/config.json.
Result<Config> load_config(const std::string& bundle_dir);

}  // namespace crshim::oci
