// Cgroups: /proc/PID/cgroup and mountinfo parsing, and --cgroup-root / cg_root remapping.
#include <gtest/gtest.h>
#include <unistd.h>

#include "checkpoint/cgroup/cgroup.h"

namespace crshim::cgroup {
namespace {

// This host's layout: every v1 controller in its own hierarchy, name=systemd, and the v2 line.
const char* kHybrid =
    "9:name=systemd:/\n"
    "8:pids:/\n"
    "4:memory:/process_api/0218fb/crshim-test-1\n"
    "3:cpu,cpuacct:/a/b\n"
    "0::/crshim-test-1\n";

TEST(CgroupParse, HybridLinesSortedByHierarchy) {
  auto set = parse_proc_cgroup(kHybrid);
  ASSERT_TRUE(set) << set.error().render();
  ASSERT_EQ(set->size(), 5u);
  EXPECT_EQ((*set)[0], (Member{"", "/crshim-test-1"}));
  EXPECT_EQ((*set)[1], (Member{"cpu,cpuacct", "/a/b"}));
  EXPECT_EQ((*set)[2], (Member{"memory", "/process_api/0218fb/crshim-test-1"}));
  EXPECT_EQ((*set)[3], (Member{"name=systemd", "/"}));
  EXPECT_EQ((*set)[4], (Member{"pids", "/"}));
}

TEST(CgroupParse, PathsMayHoldColons) {
  auto set = parse_proc_cgroup("5:devices:/odd:name\n");
  ASSERT_TRUE(set);
  EXPECT_EQ((*set)[0].path, "/odd:name");
}

TEST(CgroupParse, MalformedAndRepeatedLinesAreErrors) {
  EXPECT_FALSE(parse_proc_cgroup("garbage\n"));
  EXPECT_FALSE(parse_proc_cgroup("4:memory:relative\n"));
  auto twice = parse_proc_cgroup("4:memory:/a\n5:memory:/b\n");
  ASSERT_FALSE(twice);
  EXPECT_NE(twice.error().message.find("memory"), std::string::npos);
}

TEST(CgroupParse, ControllersOfAHierarchyName) {
  EXPECT_EQ(controllers_of("cpuacct,cpu"), (std::vector<std::string>{"cpu", "cpuacct"}));
  EXPECT_EQ(controllers_of(""), (std::vector<std::string>{""}));
  EXPECT_EQ(controllers_of("name=systemd"), (std::vector<std::string>{"name=systemd"}));
}

TEST(CgroupParse, HierarchiesFromMountinfo) {
  const char* mi =
      "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
      "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct\n"
      "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
      "40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd\n"
      "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate\n"
      "50 31 0:32 /sub /mnt/memsub rw,relatime - cgroup cgroup rw,memory\n";
  auto h = parse_hierarchies(mi);
  ASSERT_TRUE(h) << h.error().render();
  ASSERT_EQ(h->size(), 4u);  // a mount of a subdirectory is not the hierarchy's root
  EXPECT_EQ(find_mount(*h, "cpu,cpuacct"), "/sys/fs/cgroup/cpu,cpuacct");
  EXPECT_EQ(find_mount(*h, "cpuacct,cpu"), "/sys/fs/cgroup/cpu,cpuacct");
  EXPECT_EQ(find_mount(*h, "memory"), "/sys/fs/cgroup/memory");
  EXPECT_EQ(find_mount(*h, "name=systemd"), "/sys/fs/cgroup/systemd");
  EXPECT_EQ(find_mount(*h, ""), "/sys/fs/cgroup/unified");
  EXPECT_EQ(find_mount(*h, "blkio"), "");
}

TEST(CgroupMap, RemapPathReplacesWholeComponentsOnly) {
  EXPECT_EQ(remap_path("/ctr", "ctr", "/other"), "/other");
  EXPECT_EQ(remap_path("/ctr/sub/x", "ctr", "/other"), "/other/sub/x");
  EXPECT_EQ(remap_path("/ctr/sub", "ctr", "/"), "/sub");
  EXPECT_EQ(remap_path("/ctrl", "ctr", "/other"), std::nullopt);
  EXPECT_EQ(remap_path("/elsewhere", "ctr", "/other"), std::nullopt);
  EXPECT_EQ(remap_path("/", "", "/other/"), "/other");
  EXPECT_EQ(remap_path("/x", "", "/other"), "/other/x");
  EXPECT_EQ(remap_path("/a/b/c", "a/b", "/n"), "/n/c");
}

// A set as a dump of a task in `memory:/ctr/sub` and `0::/ctr` writes it, with a sibling task in `/ctr`.
cgroup_entry sample() {
  cgroup_entry e;
  auto* s1 = e.add_sets();
  s1->set_id(2);
  auto add = [](cg_set_entry* s, const char* n, const char* p) {
    auto* m = s->add_ctls();
    m->set_name(n);
    m->set_path(p);
  };
  add(s1, "", "/ctr");
  add(s1, "memory", "/ctr/sub");
  add(s1, "cpu,cpuacct", "/ctr");
  auto* s2 = e.add_sets();
  s2->set_id(3);
  add(s2, "", "/ctr");
  add(s2, "memory", "/ctr");
  add(s2, "cpu,cpuacct", "/unrelated");
  auto ctl = [&](std::vector<const char*> names, std::vector<const char*> tops) {
    auto* c = e.add_controllers();
    for (auto* n : names) c->add_cnames(n);
    for (auto* t : tops) c->add_dirs()->set_dir_name(t);
  };
  ctl({""}, {"ctr"});
  ctl({"memory"}, {"ctr"});
  ctl({"cpu", "cpuacct"}, {"ctr", "unrelated"});
  return e;
}

TEST(CgroupMap, ControllerRootWinsOverGlobalRoot) {
  cgroup_entry e = sample();
  apply_roots(e, {{"", "/global"}, {"memory", "/other"}});
  EXPECT_EQ(e.sets(0).ctls(0).path(), "/global");
  EXPECT_EQ(e.sets(0).ctls(1).path(), "/other/sub");
  EXPECT_EQ(e.sets(0).ctls(2).path(), "/global");
  EXPECT_EQ(e.sets(1).ctls(1).path(), "/other");
  EXPECT_EQ(e.sets(1).ctls(2).path(), "/global");  // its own top directory, replaced as well
}

TEST(CgroupMap, OnlyTheNamedControllerMoves) {
  cgroup_entry e = sample();
  apply_roots(e, {{"memory", "/other"}});
  EXPECT_EQ(e.sets(0).ctls(0).path(), "/ctr");
  EXPECT_EQ(e.sets(0).ctls(1).path(), "/other/sub");
  EXPECT_EQ(e.sets(0).ctls(2).path(), "/ctr");
}

TEST(CgroupMap, CoMountedControllersMatchByAnyNameOrTheWholeList) {
  for (const char* name : {"cpu", "cpuacct", "cpu,cpuacct", "cpuacct,cpu"}) {
    cgroup_entry e = sample();
    apply_roots(e, {{name, "/runc/ctr"}});
    EXPECT_EQ(e.sets(0).ctls(2).path(), "/runc/ctr") << name;
    EXPECT_EQ(e.sets(0).ctls(1).path(), "/ctr/sub") << name;
  }
}

TEST(CgroupMap, RuncV2LineWithEmptyControllerActsAsGlobal) {
  // runc sends cg_root{ctrl:"", path} for the 0:: line next to one per v1 controller.
  cgroup_entry e = sample();
  apply_roots(e, {{"memory", "/m"}, {"cpu,cpuacct", "/c"}, {"", "/v2"}});
  EXPECT_EQ(e.sets(0).ctls(0).path(), "/v2");
  EXPECT_EQ(e.sets(0).ctls(1).path(), "/m/sub");
  EXPECT_EQ(e.sets(0).ctls(2).path(), "/c");
}

TEST(CgroupMap, NoRootsLeavesPaths) {
  cgroup_entry e = sample();
  cgroup_entry before = e;
  apply_roots(e, {});
  EXPECT_EQ(e.SerializeAsString(), before.SerializeAsString());
}

TEST(CgroupCollect, OwnSetComesFirstAndEqualSetsShareAnId) {
  Collector c;
  ASSERT_TRUE(c.init());
  auto id = c.add_task(getpid());  // a task in crshim's own cgroups: crshim's set
  ASSERT_TRUE(id) << id.error().render();
  EXPECT_EQ(*id, c.own_set());
  auto again = c.add_task(getpid());
  ASSERT_TRUE(again);
  EXPECT_EQ(*again, *id);
  auto self = read_task_cgroups(getpid());
  ASSERT_TRUE(self);
  cgroup_entry e = c.entry(*id);
  ASSERT_EQ(e.sets_size(), 1);
  EXPECT_EQ(e.sets(0).id(), 1u);
  ASSERT_EQ(size_t(e.sets(0).ctls_size()), self->size());
  ASSERT_EQ(size_t(e.controllers_size()), self->size());
  for (size_t i = 0; i < self->size(); i++) {
    EXPECT_EQ(e.sets(0).ctls(int(i)).name(), (*self)[i].name);
    EXPECT_EQ(e.sets(0).ctls(int(i)).path(), (*self)[i].path);
    // Each hierarchy's top directory is the root task's path, without the leading '/'.
    ASSERT_EQ(e.controllers(int(i)).dirs_size(), 1);
    EXPECT_EQ("/" + e.controllers(int(i)).dirs(0).dir_name(), (*self)[i].path);
  }
}

TEST(CgroupCollect, NoTaskNoSet) {
  Collector c;
  ASSERT_TRUE(c.init());
  EXPECT_EQ(c.entry(1).sets_size(), 0);  // crshim's own set is written only when a task uses it
  EXPECT_FALSE(c.add_task(-1));
}

TEST(CgroupMap, NamespaceRootMovesWithTheRemappedPath) {
  cgroup_entry e = sample();
  // The task sits in /ctr/sub with its cgroup namespace rooted at /ctr (prefix 4).
  e.mutable_sets(0)->mutable_ctls(1)->set_cgns_prefix(4);
  apply_roots(e, {{"memory", "/other/deep"}});
  EXPECT_EQ(e.sets(0).ctls(1).path(), "/other/deep/sub");
  EXPECT_EQ(e.sets(0).ctls(1).cgns_prefix(), uint32_t(std::string("/other/deep").size()));
}

TEST(CgroupMap, NamespaceRootAboveTheTopBecomesTheNewTop) {
  cgroup_entry e = sample();
  // Rooted at "/" (prefix 0) while the dumped top is /ctr: the new top is the best root left.
  e.mutable_sets(0)->mutable_ctls(1)->set_cgns_prefix(0);
  apply_roots(e, {{"memory", "/other"}});
  EXPECT_EQ(e.sets(0).ctls(1).path(), "/other/sub");
  EXPECT_EQ(e.sets(0).ctls(1).cgns_prefix(), uint32_t(std::string("/other").size()));
}

}  // namespace
}  // namespace crshim::cgroup
