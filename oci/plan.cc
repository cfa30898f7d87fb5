#include "oci/plan.h"

#include <sched.h>

#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <set>
#include <tuple>

#include "checkpoint/base/sys.h"

namespace crshim::oci {

namespace {

using json = nlohmann::json;

// runc's keys for namespaces that come from outside (an inherited fd at restore).
constexpr const char* kNetKey = "extRootNetNS";

Error refused(const std::string& field, const std::string& what) {
  return make_error(Errc::unsupported, "OCI bundle", "config.json", field + ": " + what);
}

std::string join_path(const std::string& a, const std::string& b) {
  if (b.empty() || b == "/") return a.empty() ? "/" : a;
  std::string out = a;
  while (!out.empty() && out.back() == '/') out.pop_back();
  return out + (b[0] == '/' ? "" : "/") + b;
}

// Namespaces the engine can only have made fresh (or not at all) in bundle mode.
Status check_namespaces(const Config& c) {
  for (size_t i = 0; i < c.namespaces.size(); i++) {
    const Namespace& n = c.namespaces[i];
    const std::string f = "linux.namespaces[" + std::to_string(i) + "]";
    if (n.path.empty()) continue;
    if (n.type == "pid" || n.type == "mount" || n.type == "cgroup")
      return fail(refused(f + ".path", "joining an existing " + n.type + " namespace is not supported"));
  }
  return {};
}

// The hierarchy (host naming) a cgroup mount of the container shows, by its super options.
std::optional<std::string> hierarchy_of(const proc::MountInfo& m, const std::vector<cgroup::Hierarchy>& host) {
  if (m.fstype == "cgroup2") return std::string();
  std::set<std::string> opts;
  for (auto o : sys::split(m.super_options, ',')) opts.emplace(o);
  for (const auto& h : host) {
    if (h.controllers == std::vector<std::string>{""}) continue;
    bool all = !h.controllers.empty();
    for (const auto& c : h.controllers) all &= opts.count(c) > 0;
    if (!all) continue;
    std::string name;
    for (const auto& c : h.controllers) name += (name.empty() ? "" : ",") + c;
    return name;
  }
  return std::nullopt;
}

// Maps in container id order (the kernel's order may differ from the bundle's).
std::vector<IdMapping> sorted_maps(std::vector<IdMapping> v) {
  std::sort(v.begin(), v.end(), [](const IdMapping& a, const IdMapping& b) { return a.container_id < b.container_id; });
  return v;
}

}  // namespace

Result<CheckpointPlan> plan_checkpoint(const Config& c, const ContainerView& view) {
  CR_OK(check_namespaces(c));
  // A user namespace the bundle joins is the one the container is in: its maps are those compared.
  const Namespace* user = c.find_namespace("user");
  if (user && !user->path.empty()) {
    auto it = view.ns_path_inodes.find(user->path);
    auto own = view.ns_inodes.find("user");
    if (it != view.ns_path_inodes.end() && own != view.ns_inodes.end() && own->second != it->second)
      return fail(make_error(Errc::conflict, "OCI bundle", user->path,
                             "the container is in user:[" + std::to_string(own->second) + "], not in this namespace (" +
                                 std::to_string(it->second) + ")")
                      .with_hint("is the pid the container's init?"));
  }
  CR_OK(check_userns(c, view.userns, false, view.userns));
  CheckpointPlan plan;
  if (const Namespace* net = c.find_namespace("network")) {
    if (net->path.empty()) {
      // The container's own network namespace is not dumped; runc asks the same.
      plan.empty_ns |= CLONE_NEWNET;
    } else {
      auto it = view.ns_path_inodes.find(net->path);
      if (it == view.ns_path_inodes.end())
        return fail(make_error(Errc::not_found, "OCI bundle", net->path, "the network namespace file was not inspected"));
      auto own = view.ns_inodes.find("net");
      if (own != view.ns_inodes.end() && own->second != it->second)
        return fail(make_error(Errc::conflict, "OCI bundle", net->path,
                               "the container is in net:[" + std::to_string(own->second) + "], not in this namespace (" +
                                   std::to_string(it->second) + ")")
                        .with_hint("is the pid the container's init?"));
      plan.external.push_back("net[" + std::to_string(it->second) + "]:" + kNetKey);
    }
  }
  // Bind mounts come from the host: the image names each by its destination, as runc does.
  for (const auto& m : c.mounts)
    if (m.is_bind()) plan.ext_mounts.emplace_back(m.destination, m.destination);
  // Cgroup file systems show host directories: recorded so restore can bind the same hierarchy.
  for (const auto& m : view.mounts) {
    if (m.fstype != "cgroup" && m.fstype != "cgroup2") continue;
    auto hierarchy = hierarchy_of(m, view.host_hierarchies);
    if (!hierarchy)
      return fail(make_error(Errc::not_found, "OCI bundle", "cgroup mount " + m.mount_point,
                             "its hierarchy (" + m.super_options + ") is not mounted on this host"));
    plan.record.cgroup_mounts.push_back({m.mount_point, *hierarchy, m.root});
    plan.ext_mounts.emplace_back(m.mount_point, m.mount_point);
  }
  // Files of the host's devtmpfs (device nodes a runtime binds in a user namespace, /dev/null over
  // masked files): named by their host path, which the restore binds again.
  for (const auto& m : view.mounts) {
    if (m.fstype != "devtmpfs") continue;
    if (view.host_dev.empty())
      return fail(make_error(Errc::not_found, "OCI bundle", "mount " + m.mount_point,
                             "it shows the host's devtmpfs, which is not mounted in crshim's mount namespace"));
    std::string host = join_path(view.host_dev, m.root);
    plan.ext_mounts.emplace_back(m.mount_point, host);
    auto& binds = plan.record.device_binds;
    if (std::find(binds.begin(), binds.end(), host) == binds.end()) binds.push_back(host);
  }
  return plan;
}

std::string cgroup_target(const std::string& path, const cgroup::Member& own) {
  if (!path.empty() && path[0] == '/') return path;
  return join_path(own.path, path);
}

Result<RestorePlan> plan_restore(const Config& c, const std::string& bundle, const std::vector<std::string>& descriptors,
                                 const BundleRecord& record, const HostView& host) {
  CR_OK(check_namespaces(c));
  RestorePlan plan;
  plan.root = c.root_path[0] == '/' ? c.root_path : join_path(bundle, c.root_path);
  plan.terminal = c.terminal;

  for (const auto& n : c.namespaces) {
    if (n.type == "network") {
      if (n.path.empty()) plan.empty_ns |= CLONE_NEWNET;
      else plan.open.push_back({kNetKey, n.path});
    } else if (!n.path.empty()) {
      // ipc, uts, time, user: the restored tree joins the namespace the config names.
      plan.join_ns.push_back({n.type, n.path});
    }
  }
  for (const auto& m : c.mounts)
    if (m.is_bind()) plan.ext_mounts.emplace_back(m.destination, m.source[0] == '/' ? m.source : join_path(bundle, m.source));

  // Stdio: what fds 0..2 were at checkpoint becomes crshim's own 0..2 (runc maps pipes only: files
  // and /dev/null are reopened by path, a terminal comes back as a new pty).
  if (!descriptors.empty() && descriptors.size() != 3)
    return fail(make_error(Errc::corrupt_image, "OCI bundle", kDescriptorsFile,
                           "expected 3 entries, got " + std::to_string(descriptors.size())));
  for (size_t i = 0; i < descriptors.size(); i++)
    if (descriptors[i].find("pipe:") != std::string::npos) plan.stdio.push_back({int(i), descriptors[i]});

  // Cgroups: with linux.cgroupsPath every hierarchy's dumped root moves there; without, the tasks go
  // back where they were.
  if (c.cgroups_path)
    for (const auto& own : host.own_cgroups) plan.cgroup_roots.push_back({own.name, cgroup_target(*c.cgroups_path, own)});
  for (const auto& d : record.device_binds) plan.ext_mounts.emplace_back(d, d);
  for (const auto& m : record.cgroup_mounts) {
    std::string host_mount = cgroup::find_mount(host.hierarchies, m.hierarchy);
    if (host_mount.empty())
      return fail(make_error(Errc::not_found, "OCI bundle", "cgroup mount " + m.mount_point,
                             "hierarchy '" + (m.hierarchy.empty() ? std::string("cgroup2") : m.hierarchy) +
                                 "' is not mounted on this host"));
    std::string dir = m.root;
    if (c.cgroups_path) {
      auto own = std::find_if(host.own_cgroups.begin(), host.own_cgroups.end(), [&](const cgroup::Member& o) {
        return cgroup::controllers_of(o.name) == cgroup::controllers_of(m.hierarchy);
      });
      dir = cgroup_target(*c.cgroups_path, own != host.own_cgroups.end() ? *own : cgroup::Member{});
    }
    std::string source = join_path(host_mount, dir);
    plan.ext_mounts.emplace_back(m.mount_point, source);
    plan.cgroup_dirs.push_back(source);
  }
  return plan;
}

std::string descriptors_json(const std::vector<std::string>& targets) {
  return json(targets).dump(-1, ' ', false, json::error_handler_t::replace);
}

Result<std::vector<std::string>> parse_descriptors(std::string_view text) {
  auto bad = [](const std::string& why) {
    return fail(make_error(Errc::corrupt_image, "parse", kDescriptorsFile, why));
  };
  json doc = json::parse(text.begin(), text.end(), nullptr, false);
  if (doc.is_discarded()) return bad("not valid JSON");
  if (!doc.is_array()) return bad("expected an array of strings");
  std::vector<std::string> out;
  for (const auto& e : doc) {
    if (!e.is_string()) return bad("expected an array of strings");
    out.push_back(e.get<std::string>());
  }
  return out;
}

std::string record_json(const BundleRecord& record) {
  json list = json::array();
  for (const auto& m : record.cgroup_mounts)
    list.push_back({{"mountPoint", m.mount_point}, {"hierarchy", m.hierarchy}, {"root", m.root}});
  json doc{{"cgroupMounts", list}};
  if (!record.device_binds.empty()) doc["deviceBinds"] = record.device_binds;
  return doc.dump(-1, ' ', false, json::error_handler_t::replace);
}

Result<BundleRecord> parse_record(std::string_view text) {
  auto bad = [](const std::string& why) {
    return fail(make_error(Errc::corrupt_image, "parse", kBundleRecordFile, why));
  };
  json doc = json::parse(text.begin(), text.end(), nullptr, false);
  if (doc.is_discarded()) return bad("not valid JSON");
  if (!doc.is_object()) return bad("expected an object");
  BundleRecord out;
  if (auto d = doc.find("deviceBinds"); d != doc.end()) {
    if (!d->is_array()) return bad("deviceBinds: expected an array");
    for (const auto& e : *d) {
      if (!e.is_string() || e.get_ref<const std::string&>().empty() || e.get_ref<const std::string&>()[0] != '/')
        return bad("deviceBinds: expected absolute paths");
      out.device_binds.push_back(e.get<std::string>());
    }
  }
  auto it = doc.find("cgroupMounts");
  if (it == doc.end()) return out;
  if (!it->is_array()) return bad("cgroupMounts: expected an array");
  for (const auto& e : *it) {
    if (!e.is_object()) return bad("cgroupMounts: expected objects");
    CgroupMount m;
    for (auto [key, field] : {std::pair{"mountPoint", &m.mount_point}, {"hierarchy", &m.hierarchy}, {"root", &m.root}}) {
      auto f = e.find(key);
      if (f == e.end() || !f->is_string()) return bad(std::string("cgroupMounts: ") + key + " must be a string");
      *field = f->get<std::string>();
    }
    if (m.mount_point.empty() || m.mount_point[0] != '/' || m.root.empty() || m.root[0] != '/')
      return bad("cgroupMounts: paths must be absolute");
    out.cgroup_mounts.push_back(std::move(m));
  }
  return out;
}

std::string maps_text(const std::vector<IdMapping>& maps) {
  if (maps.empty()) return "none";
  std::string out;
  for (const auto& m : maps)
    out += (out.empty() ? "" : ", ") + std::to_string(m.container_id) + " " + std::to_string(m.host_id) + " " +
           std::to_string(m.size);
  return out;
}

Status check_userns(const Config& config, const std::optional<UserMaps>& maps, bool at_restore,
                    const std::optional<UserMaps>& joined) {
  const std::string tree = at_restore ? "the checkpointed container" : "the container";
  auto mismatch = [&](const std::string& field, const std::string& what) {
    return fail(make_error(Errc::invalid_argument, at_restore ? "restore" : "checkpoint", field, what)
                    .with_hint(at_restore ? "restore with the bundle the container was checkpointed from"
                                          : "give the container's bundle and the pid of its init"));
  };
  const Namespace* user = config.find_namespace("user");
  if (!user && !maps) return {};
  // A joined namespace's maps are whatever its holder set: the bundle's mappings, if it gives any,
  // must be those (the images' maps are what the tree had, not what it joins).
  if (user && !user->path.empty()) {
    if (config.uid_mappings.empty() && config.gid_mappings.empty()) return {};
    const std::string ns = "the user namespace " + user->path;
    if (!joined)
      return fail(make_error(Errc::invalid_argument, at_restore ? "restore" : "checkpoint", "linux.namespaces",
                             "the bundle gives uid/gid mappings but " + ns + " is crshim's own")
                      .with_hint("drop linux.uidMappings and linux.gidMappings or name the container's namespace"));
    for (auto [field, want, have] : {std::tuple{"linux.uidMappings", &config.uid_mappings, &joined->uid},
                                     {"linux.gidMappings", &config.gid_mappings, &joined->gid}})
      if (sorted_maps(*want) != sorted_maps(*have))
        return fail(make_error(Errc::invalid_argument, at_restore ? "restore" : "checkpoint", field,
                               "the bundle maps '" + maps_text(*want) + "' but " + ns + " maps '" + maps_text(*have) +
                                   "' (container id, host id, size)")
                        .with_hint("give the mappings of the namespace the bundle joins"));
    return {};
  }
  if (!user)
    return mismatch("linux.namespaces", tree + " has a user namespace of its own (uid map " + maps_text(maps->uid) +
                                            ") but the bundle has no user namespace entry");
  if (!maps)
    return mismatch("linux.namespaces",
                    "the bundle gives the container a user namespace but " + tree + " is in crshim's user namespace");
  for (auto [field, want, have] : {std::tuple{"linux.uidMappings", &config.uid_mappings, &maps->uid},
                                   {"linux.gidMappings", &config.gid_mappings, &maps->gid}})
    if (sorted_maps(*want) != sorted_maps(*have))
      return mismatch(field, "the bundle maps '" + maps_text(*want) + "' but " + tree + "'s user namespace maps '" +
                                 maps_text(*have) + "' (container id, host id, size)");
  return {};
}

Status check_security(const Config& config, const InitSecurity& init) {
  auto mismatch = [](const std::string& field, const std::string& what) {
    return fail(make_error(Errc::invalid_argument, "restore", field, what)
                    .with_hint("restore with the bundle the container was checkpointed from"));
  };
  auto hex = [](uint64_t v) {
    char buf[24];
    snprintf(buf, sizeof buf, "0x%llx", (unsigned long long)v);
    return std::string(buf);
  };
  if (config.capabilities) {
    for (auto [name, want, have] : {std::tuple{"bounding", config.capabilities->bounding, init.caps.bounding},
                                    {"effective", config.capabilities->effective, init.caps.effective},
                                    {"permitted", config.capabilities->permitted, init.caps.permitted}})
      if (want != have)
        return mismatch(std::string("process.capabilities.") + name,
                        "the bundle grants " + hex(want) + " but the checkpointed init has " + hex(have));
  }
  if (config.seccomp != init.seccomp)
    return mismatch("linux.seccomp", config.seccomp ? "the bundle has a seccomp profile but the checkpointed init has no filter"
                                                    : "the checkpointed init has a seccomp filter but the bundle has no profile");
  return {};
}

}  // namespace crshim::oci
