// OCI bundle -> engine request pieces: externals at checkpoint, binds/joins/inherited files at restore.
#include <gtest/gtest.h>
#include <sched.h>

#include "oci/plan.h"

namespace crshim::oci {
namespace {

Config config_of(const std::string& text) {
  auto c = parse_config(text);
  EXPECT_TRUE(c) << c.error().render();
  return c ? *c : Config{};
}

const char* kBundle = R"({
  "ociVersion": "1.0.2",
  "root": {"path": "rootfs"},
  "mounts": [
    {"destination": "/proc", "type": "proc", "source": "proc"},
    {"destination": "/data", "type": "bind", "source": "/srv/data", "options": ["rbind", "rw"]},
    {"destination": "/cfg", "source": "cfg", "options": ["bind", "ro"]}
  ],
  "linux": {"namespaces": [{"type": "pid"}, {"type": "network", "path": "/run/netns/n1"}, {"type": "mount"},
                           {"type": "ipc", "path": "/proc/7/ns/ipc"}, {"type": "uts"}]}
})";

proc::MountInfo cgroup_mount(const std::string& mp, const std::string& root, const std::string& super) {
  proc::MountInfo m;
  m.mount_point = mp;
  m.root = root;
  m.fstype = "cgroup";
  m.super_options = super;
  return m;
}

std::vector<cgroup::Hierarchy> host_hierarchies() {
  return {{{"cpu", "cpuacct"}, "/sys/fs/cgroup/cpu,cpuacct"},
          {{"memory"}, "/sys/fs/cgroup/memory"},
          {{"name=systemd"}, "/sys/fs/cgroup/systemd"},
          {{""}, "/sys/fs/cgroup/unified"}};
}

TEST(OciPlan, CheckpointMarksBindsCgroupsAndTheNetnsExternal) {
  ContainerView view;
  view.ns_path_inodes["/run/netns/n1"] = 4026532999;
  view.ns_inodes["net"] = 4026532999;
  view.host_hierarchies = host_hierarchies();
  view.mounts = {cgroup_mount("/sys/fs/cgroup/cpu,cpuacct", "/ctr", "rw,cpu,cpuacct"),
                 cgroup_mount("/sys/fs/cgroup/systemd", "/ctr", "rw,xattr,name=systemd"),
                 cgroup_mount("/sys/fs/cgroup/memory", "/nest/ctr", "rw,memory")};
  auto plan = plan_checkpoint(config_of(kBundle), view);
  ASSERT_TRUE(plan) << plan.error().render();
  EXPECT_EQ(plan->external, (std::vector<std::string>{"net[4026532999]:extRootNetNS"}));
  EXPECT_EQ(plan->empty_ns, 0u);
  using P = std::pair<std::string, std::string>;
  EXPECT_EQ(plan->ext_mounts, (std::vector<P>{{"/data", "/data"},
                                              {"/cfg", "/cfg"},
                                              {"/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/cpu,cpuacct"},
                                              {"/sys/fs/cgroup/systemd", "/sys/fs/cgroup/systemd"},
                                              {"/sys/fs/cgroup/memory", "/sys/fs/cgroup/memory"}}));
  EXPECT_EQ(plan->record.cgroup_mounts, (std::vector<CgroupMount>{{"/sys/fs/cgroup/cpu,cpuacct", "cpu,cpuacct", "/ctr"},
                                                           {"/sys/fs/cgroup/systemd", "name=systemd", "/ctr"},
                                                           {"/sys/fs/cgroup/memory", "memory", "/nest/ctr"}}));
}

TEST(OciPlan, CheckpointOwnNetnsIsLeftEmptyAndAWrongNetnsIsRefused) {
  auto own = plan_checkpoint(config_of(R"({"ociVersion": "1", "root": {"path": "r"},
      "linux": {"namespaces": [{"type": "network"}]}})"), {});
  ASSERT_TRUE(own);
  EXPECT_EQ(own->empty_ns, uint32_t(CLONE_NEWNET));
  EXPECT_TRUE(own->external.empty());

  ContainerView view;
  view.ns_path_inodes["/run/netns/n1"] = 11;
  view.ns_inodes["net"] = 12;
  auto wrong = plan_checkpoint(config_of(kBundle), view);
  ASSERT_FALSE(wrong);
  EXPECT_EQ(wrong.error().render(),
            "OCI bundle /run/netns/n1: the container is in net:[12], not in this namespace (11); hint: is the pid the container's init?");
}

TEST(OciPlan, HostDeviceFilesAreNamedByTheirHostPathAndBoundAgain) {
  auto dev = [](const std::string& mp, const std::string& root) {
    proc::MountInfo m;
    m.mount_point = mp;
    m.root = root;
    m.fstype = "devtmpfs";
    return m;
  };
  ContainerView view;
  view.mounts = {dev("/dev/null", "/null"), dev("/dev/zero", "/zero"), dev("/proc/keys", "/null")};
  view.host_dev = "/dev";
  auto c = config_of(R"({"ociVersion": "1", "root": {"path": "r"}, "linux": {"namespaces": [{"type": "pid"}]}})");
  auto plan = plan_checkpoint(c, view);
  ASSERT_TRUE(plan) << plan.error().render();
  using P = std::pair<std::string, std::string>;
  EXPECT_EQ(plan->ext_mounts, (std::vector<P>{{"/dev/null", "/dev/null"}, {"/dev/zero", "/dev/zero"}, {"/proc/keys", "/dev/null"}}));
  EXPECT_EQ(plan->record.device_binds, (std::vector<std::string>{"/dev/null", "/dev/zero"}));
  auto restore = plan_restore(c, "/b", {}, plan->record, {});
  ASSERT_TRUE(restore) << restore.error().render();
  EXPECT_EQ(restore->ext_mounts, (std::vector<P>{{"/dev/null", "/dev/null"}, {"/dev/zero", "/dev/zero"}}));

  view.host_dev.clear();
  auto none = plan_checkpoint(c, view);
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().render(), "OCI bundle mount /dev/null: it shows the host's devtmpfs, which is not mounted in "
                                   "crshim's mount namespace");
}

TEST(OciPlan, UnsupportedNamespacesAreRefusedOnBothSides) {
  auto pid = config_of(R"({"ociVersion": "1", "root": {"path": "r"},
      "linux": {"namespaces": [{"type": "ipc"}, {"type": "pid", "path": "/proc/1/ns/pid"}]}})");
  auto c2 = plan_checkpoint(pid, {});
  ASSERT_FALSE(c2);
  auto r2 = plan_restore(pid, "/b", {}, {}, {});
  ASSERT_FALSE(r2);
  EXPECT_EQ(r2.error().code, Errc::unsupported);
  EXPECT_EQ(r2.error().message, "linux.namespaces[1].path: joining an existing pid namespace is not supported");
}

TEST(OciPlan, AUserNamespacePathIsJoinedAndOnlyTheBundlesMappingsAreCompared) {
  auto user = config_of(R"({"ociVersion": "1", "root": {"path": "r"},
      "linux": {"namespaces": [{"type": "pid"}, {"type": "user", "path": "/proc/7/ns/user"}],
                "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
                "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}]}})");
  UserMaps holder{{{0, 100000, 65536}}, {{0, 100000, 65536}}};
  ContainerView view;
  view.userns = holder;
  view.ns_path_inodes["/proc/7/ns/user"] = 42;
  view.ns_inodes["user"] = 42;
  ASSERT_TRUE(plan_checkpoint(user, view));
  auto plan = plan_restore(user, "/b", {}, {}, {});
  ASSERT_TRUE(plan) << plan.error().render();
  ASSERT_EQ(plan->join_ns.size(), 1u);
  EXPECT_EQ(plan->join_ns[0].ns, "user");
  EXPECT_EQ(plan->join_ns[0].target, "/proc/7/ns/user");

  // The images' maps are what the tree had, not compared; the joined namespace's are.
  UserMaps other = holder;
  other.uid[0].host_id = 300000;
  EXPECT_TRUE(check_userns(user, other, true, holder));
  EXPECT_TRUE(check_userns(user, std::nullopt, true, holder));
  auto r = check_userns(user, holder, true, other);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().render(),
            "restore linux.uidMappings: the bundle maps '0 100000 65536' but the user namespace /proc/7/ns/user maps "
            "'0 300000 65536' (container id, host id, size); "
            "hint: give the mappings of the namespace the bundle joins");
  r = check_userns(user, holder, true, std::nullopt);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().render(),
            "restore linux.namespaces: the bundle gives uid/gid mappings but the user namespace /proc/7/ns/user is "
            "crshim's own; hint: drop linux.uidMappings and linux.gidMappings or name the container's namespace");
  // Without mappings in the bundle nothing is compared.
  auto bare = config_of(R"({"ociVersion": "1", "root": {"path": "r"},
      "linux": {"namespaces": [{"type": "user", "path": "/proc/7/ns/user"}]}})");
  EXPECT_TRUE(check_userns(bare, other, true, std::nullopt));

  // At checkpoint the container must be in the namespace the bundle names, with its maps.
  view.ns_inodes["user"] = 43;
  auto c = plan_checkpoint(user, view);
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().render(),
            "OCI bundle /proc/7/ns/user: the container is in user:[43], not in this namespace (42); "
            "hint: is the pid the container's init?");
  view.ns_inodes["user"] = 42;
  view.userns = other;
  c = plan_checkpoint(user, view);
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().render().find("checkpoint linux.uidMappings: the bundle maps '0 100000 65536' but the user "
                                    "namespace /proc/7/ns/user maps '0 300000 65536'"),
            std::string::npos)
      << c.error().render();
}

TEST(OciPlan, AUserNamespaceOfItsOwnIsPlannedAndItsMapsMustMatchOnBothSides) {
  auto user = config_of(R"({"ociVersion": "1", "root": {"path": "r"},
      "linux": {"namespaces": [{"type": "user"}, {"type": "pid"}],
                "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
                "gidMappings": [{"containerID": 1, "hostID": 200001, "size": 10}, {"containerID": 0, "hostID": 100000, "size": 1}]}})");
  UserMaps same{{{0, 100000, 65536}}, {{0, 100000, 1}, {1, 200001, 10}}};  // the kernel's order may differ
  ContainerView view;
  view.userns = same;
  ASSERT_TRUE(plan_checkpoint(user, view));
  auto plan = plan_restore(user, "/b", {}, {}, {});
  ASSERT_TRUE(plan) << plan.error().render();
  EXPECT_TRUE(plan->join_ns.empty());

  EXPECT_TRUE(check_userns(user, same, true));
  UserMaps other = same;
  other.uid[0].host_id = 300000;
  auto r = check_userns(user, other, true);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().render(),
            "restore linux.uidMappings: the bundle maps '0 100000 65536' but the checkpointed container's user namespace "
            "maps '0 300000 65536' (container id, host id, size); hint: restore with the bundle the container was "
            "checkpointed from");
  // At checkpoint the running init's maps are compared, before anything is frozen.
  view.userns = other;
  auto c = plan_checkpoint(user, view);
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().render(),
            "checkpoint linux.uidMappings: the bundle maps '0 100000 65536' but the container's user namespace maps "
            "'0 300000 65536' (container id, host id, size); hint: give the container's bundle and the pid of its init");
  other = same;
  other.gid.pop_back();
  r = check_userns(user, other, true);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().render().find("linux.gidMappings: the bundle maps '1 200001 10, 0 100000 1' but the checkpointed "
                                    "container's user namespace maps '0 100000 1'"), std::string::npos) << r.error().render();

  auto plain = config_of(R"({"ociVersion": "1", "root": {"path": "r"}, "linux": {"namespaces": [{"type": "pid"}]}})");
  EXPECT_TRUE(check_userns(plain, std::nullopt, true));
  EXPECT_TRUE(plan_checkpoint(plain, {}));
  r = check_userns(plain, same, true);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("the checkpointed container has a user namespace of its own (uid map 0 100000 65536) "
                                   "but the bundle has no user namespace entry"), std::string::npos) << r.error().render();
  c = plan_checkpoint(plain, view);
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("the container has a user namespace of its own"), std::string::npos) << c.error().render();
  r = check_userns(user, std::nullopt, true);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("the bundle gives the container a user namespace but the checkpointed container is in "
                                   "crshim's user namespace"), std::string::npos) << r.error().render();
  c = plan_checkpoint(user, {});
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("but the container is in crshim's user namespace"), std::string::npos) << c.error().render();
}

TEST(OciPlan, RestoreBindsJoinsAndInheritsWhatTheBundleNames) {
  HostView host;
  host.hierarchies = host_hierarchies();
  auto plan = plan_restore(config_of(kBundle), "/b", {"/dev/null", "pipe:[100]", "pipe:[101]"}, {}, host);
  ASSERT_TRUE(plan) << plan.error().render();
  EXPECT_EQ(plan->root, "/b/rootfs");
  using P = std::pair<std::string, std::string>;
  EXPECT_EQ(plan->ext_mounts, (std::vector<P>{{"/data", "/srv/data"}, {"/cfg", "/b/cfg"}}));
  ASSERT_EQ(plan->join_ns.size(), 1u);
  EXPECT_EQ(plan->join_ns[0].ns, "ipc");
  EXPECT_EQ(plan->join_ns[0].target, "/proc/7/ns/ipc");
  ASSERT_EQ(plan->open.size(), 1u);
  EXPECT_EQ(plan->open[0].key, "extRootNetNS");
  EXPECT_EQ(plan->open[0].path, "/run/netns/n1");
  ASSERT_EQ(plan->stdio.size(), 2u);  // /dev/null is reopened by path, pipes are inherited
  EXPECT_EQ(plan->stdio[0].fd, 1);
  EXPECT_EQ(plan->stdio[0].key, "pipe:[100]");
  EXPECT_EQ(plan->stdio[1].fd, 2);
  EXPECT_EQ(plan->empty_ns, 0u);
  EXPECT_TRUE(plan->cgroup_roots.empty());
}

TEST(OciPlan, RestoreCgroupMountsFollowCgroupsPath) {
  HostView host;
  host.hierarchies = host_hierarchies();
  host.own_cgroups = {{"", "/"}, {"cpu,cpuacct", "/"}, {"memory", "/limited"}, {"name=systemd", "/"}};
  BundleRecord recorded{{{"/sys/fs/cgroup/cpu,cpuacct", "cpu,cpuacct", "/old"},
                         {"/sys/fs/cgroup/memory", "memory", "/limited/old"}}, {}};
  const std::string base = R"({"ociVersion": "1", "root": {"path": "/r"})";
  // Without cgroupsPath the tasks go back to where they were, and so do the mounts' sources.
  auto same = plan_restore(config_of(base + "}"), "/b", {}, recorded, host);
  ASSERT_TRUE(same) << same.error().render();
  using P = std::pair<std::string, std::string>;
  EXPECT_EQ(same->ext_mounts, (std::vector<P>{{"/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/cpu,cpuacct/old"},
                                              {"/sys/fs/cgroup/memory", "/sys/fs/cgroup/memory/limited/old"}}));
  EXPECT_EQ(same->cgroup_dirs, (std::vector<std::string>{"/sys/fs/cgroup/cpu,cpuacct/old", "/sys/fs/cgroup/memory/limited/old"}));
  EXPECT_TRUE(same->cgroup_roots.empty());

  // A relative cgroupsPath lives below crshim's own cgroup in each hierarchy.
  auto rel = plan_restore(config_of(base + R"(, "linux": {"cgroupsPath": "new"}})"), "/b", {}, recorded, host);
  ASSERT_TRUE(rel) << rel.error().render();
  EXPECT_EQ(rel->ext_mounts, (std::vector<P>{{"/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/cpu,cpuacct/new"},
                                             {"/sys/fs/cgroup/memory", "/sys/fs/cgroup/memory/limited/new"}}));
  ASSERT_EQ(rel->cgroup_roots.size(), 4u);
  EXPECT_EQ(rel->cgroup_roots[2].controller, "memory");
  EXPECT_EQ(rel->cgroup_roots[2].path, "/limited/new");
  EXPECT_EQ(rel->cgroup_roots[0].path, "/new");

  auto abs = plan_restore(config_of(base + R"(, "linux": {"cgroupsPath": "/top/ctr"}})"), "/b", {}, recorded, host);
  ASSERT_TRUE(abs);
  for (const auto& r : abs->cgroup_roots) EXPECT_EQ(r.path, "/top/ctr") << r.controller;
  EXPECT_EQ(abs->ext_mounts[1].second, "/sys/fs/cgroup/memory/top/ctr");

  BundleRecord missing{{{"/sys/fs/cgroup/blkio", "blkio", "/x"}}, {}};
  auto none = plan_restore(config_of(base + "}"), "/b", {}, missing, host);
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().render(), "OCI bundle cgroup mount /sys/fs/cgroup/blkio: hierarchy 'blkio' is not mounted on this host");
}

TEST(OciPlan, RecordsRoundTripAndBadOnesAreCorrupt) {
  std::vector<std::string> fds = {"pipe:[1]", "/dev/null", "/tmp/a \"b\""};
  auto back = parse_descriptors(descriptors_json(fds));
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, fds);
  EXPECT_EQ(descriptors_json({"pipe:[1]", "/dev/null", "/dev/null"}), R"(["pipe:[1]","/dev/null","/dev/null"])");
  EXPECT_EQ(parse_descriptors("[1]").error().message, "expected an array of strings");
  EXPECT_EQ(parse_descriptors("[\"a\"").error().message, "not valid JSON");

  BundleRecord record{{{"/sys/fs/cgroup/cpu", "cpu", "/c"}, {"/sys/fs/cgroup", "", "/"}}, {}};
  auto rec = parse_record(record_json(record));
  ASSERT_TRUE(rec) << rec.error().render();
  EXPECT_EQ(*rec, record);
  record.device_binds = {"/dev/null", "/dev/zero"};
  rec = parse_record(record_json(record));
  ASSERT_TRUE(rec) << rec.error().render();
  EXPECT_EQ(*rec, record);
  EXPECT_EQ(parse_record(R"({"deviceBinds": ["null"]})").error().message, "deviceBinds: expected absolute paths");
  EXPECT_EQ(parse_record(R"({"cgroupMounts": [{"mountPoint": "x", "hierarchy": "", "root": "/"}]})").error().message,
            "cgroupMounts: paths must be absolute");
  EXPECT_EQ(parse_record(R"({"cgroupMounts": [{"mountPoint": "/x", "root": "/"}]})").error().message,
            "cgroupMounts: hierarchy must be a string");

  auto bad_count = plan_restore(config_of(R"({"ociVersion": "1", "root": {"path": "r"}})"), "/b", {"pipe:[1]"}, {}, {});
  ASSERT_FALSE(bad_count);
  EXPECT_EQ(bad_count.error().message, "expected 3 entries, got 1");
}

TEST(OciPlan, SecurityMustMatchTheCheckpointedInit) {
  Config c = config_of(R"({"ociVersion": "1.0.2", "root": {"path": "r"},
    "process": {"capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"], "permitted": ["CAP_KILL"]}},
    "linux": {"seccomp": {"defaultAction": "SCMP_ACT_ALLOW"}}})");
  InitSecurity init{{1ull << 5, 1ull << 5, 1ull << 5}, true};
  EXPECT_TRUE(check_security(c, init));
  init.caps.effective = (1ull << 5) | 1;
  auto st = check_security(c, init);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().object, "process.capabilities.effective");
  EXPECT_NE(st.error().message.find("the bundle grants 0x20 but the checkpointed init has 0x21"), std::string::npos)
      << st.error().render();
  init.caps.effective = 1ull << 5;
  init.seccomp = false;
  st = check_security(c, init);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().object, "linux.seccomp");
  // A bundle without capabilities checks only the seccomp presence.
  EXPECT_TRUE(check_security(config_of(R"({"ociVersion": "1.0.2", "root": {"path": "r"}})"), InitSecurity{{1, 2, 3}, false}));
}

}  // namespace
}  // namespace crshim::oci
