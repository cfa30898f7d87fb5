#include <gtest/gtest.h>
#include <sys/mount.h>

#include <filesystem>
#include <string>
#include <vector>

#include "checkpoint/base/sys.h"
#include "checkpoint/image/catalog.h"
#include "checkpoint/image/image.h"
#include "checkpoint/mnt/mounts.h"

namespace crshim::mnt {
namespace {

namespace fs = std::filesystem;

// A container after pivot_root: rootfs bind, proc (+ a proc subtree bind), a tmpfs (+ a part of it
// bound elsewhere), a host directory, a read-only bind of the rootfs, devpts.
const char* kContainer =
    "100 50 254:0 /tmp/ct/rootfs / rw,relatime - ext4 /dev/vda rw,discard\n"
    "101 100 0:60 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw\n"
    "102 100 0:61 / /tmp rw,nosuid,nodev - tmpfs tmpfs rw,size=1024k,inode64\n"
    "103 100 254:0 /tmp/ct/hostdata /data rw,relatime - ext4 /dev/vda rw,discard\n"
    "104 100 254:0 /tmp/ct/rootfs/etc /mnt/ro ro,relatime - ext4 /dev/vda rw,discard\n"
    "105 100 0:62 / /dev/pts rw,nosuid,noexec,relatime - devpts devpts rw,gid=5,mode=620,ptmxmode=666\n"
    "106 101 0:60 /sys /proc/sys ro,nosuid,nodev,noexec,relatime - proc proc rw\n"
    "107 100 0:61 /sub /mnt/sub rw,nosuid,nodev - tmpfs tmpfs rw,size=1024k,inode64\n";

std::vector<proc::MountInfo> parse(const char* text) {
  auto m = proc::parse_mountinfo(text);
  EXPECT_TRUE(m.has_value()) << (m ? "" : m.error().render());
  return m ? *m : std::vector<proc::MountInfo>{};
}

const mnt_entry& at(const Table& t, const std::string& mountpoint) {
  for (const auto& e : t.entries)
    if (e.mountpoint() == mountpoint) return e;
  ADD_FAILURE() << "no entry for " << mountpoint;
  return t.entries.front();
}

std::string render(const Plan& p) {
  std::string out;
  for (const auto& s : p.steps) {
    switch (s.op) {
      case Step::Op::fresh: out += "fresh " + s.fstype + " " + s.target; break;
      case Step::Op::extract: out += "extract " + s.tar_image + " " + s.target; break;
      case Step::Op::bind: out += "bind " + s.source + " " + s.target; break;
      case Step::Op::propagate:
        out += std::string(s.flags == MS_SHARED ? "shared " : s.flags == MS_SLAVE ? "slave " : "private ") + s.target;
        break;
      case Step::Op::remount: out += "remount " + std::to_string(s.flags) + " " + s.target; break;
      case Step::Op::detach: out += "detach " + s.target; break;
      case Step::Op::seal: out += "seal " + std::to_string(s.flags) + " " + s.target; break;
    }
    out += "\n";
  }
  return out;
}

TEST(MntTable, ContainerMountinfoBecomesCriuEntries) {
  Table t = build_table(parse(kContainer), {{"/data", "data"}});
  EXPECT_TRUE(t.problems.empty()) << t.problems.front();
  ASSERT_EQ(t.entries.size(), 8u);
  const auto& root = t.entries[0];
  EXPECT_EQ(root.mountpoint(), "/");
  EXPECT_EQ(root.root(), "/tmp/ct/rootfs");
  EXPECT_EQ(root.fstype(), uint32_t(UNSUPPORTED));  // ext4, as CRIU writes it
  EXPECT_EQ(root.root_dev(), (254u << 20) | 0u);
  EXPECT_EQ(root.parent_mnt_id(), 50u);
  EXPECT_EQ(root.flags(), uint32_t(MS_RELATIME));
  EXPECT_EQ(root.options(), "discard");
  EXPECT_FALSE(root.has_ext_key());

  const auto& proc = at(t, "/proc");
  EXPECT_EQ(proc.fstype(), uint32_t(PROC));
  EXPECT_EQ(proc.flags(), uint32_t(MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RELATIME));
  EXPECT_EQ(proc.options(), "");
  EXPECT_EQ(proc.sb_flags(), 0u);
  EXPECT_EQ(at(t, "/proc/sys").root(), "/sys");
  EXPECT_EQ(at(t, "/proc/sys").flags() & MS_RDONLY, uint32_t(MS_RDONLY));

  const auto& tmp = at(t, "/tmp");
  EXPECT_EQ(tmp.fstype(), uint32_t(TMPFS));
  EXPECT_EQ(tmp.flags(), uint32_t(MS_NOSUID | MS_NODEV | MS_STRICTATIME));  // no atime option shown
  EXPECT_EQ(tmp.options(), "size=1024k,inode64");
  EXPECT_EQ(tmp.root_dev(), 61u);
  ASSERT_EQ(t.tmpfs.size(), 1u);
  EXPECT_EQ(t.tmpfs.at(61), "/tmp");

  EXPECT_EQ(at(t, "/data").ext_key(), "data");
  EXPECT_EQ(at(t, "/mnt/ro").flags(), uint32_t(MS_RDONLY | MS_RELATIME));
  EXPECT_EQ(at(t, "/mnt/ro").root(), "/tmp/ct/rootfs/etc");
  EXPECT_EQ(at(t, "/dev/pts").fstype(), uint32_t(DEVPTS));
  EXPECT_EQ(at(t, "/dev/pts").options(), "gid=5,mode=620,ptmxmode=666,newinstance");
}

TEST(MntTable, HostBindWithoutExternalIsAProblemNamingTheMountAndTheOption) {
  Table t = build_table(parse(kContainer), {});
  ASSERT_EQ(t.problems.size(), 1u);
  EXPECT_NE(t.problems[0].find("mount /data"), std::string::npos) << t.problems[0];
  EXPECT_NE(t.problems[0].find("--external mnt[/data]:KEY"), std::string::npos) << t.problems[0];
}

TEST(MntTable, OtherFilesystemsAndOutsideMastersAreProblems) {
  std::string text = std::string(kContainer) +
                     "108 100 8:16 / /disk rw,relatime - ext4 /dev/sdb rw\n"
                     "109 100 0:61 / /slave rw master:7 - tmpfs tmpfs rw\n";
  Table t = build_table(parse(text.c_str()), {{"/data", "data"}});
  ASSERT_EQ(t.problems.size(), 2u);
  EXPECT_NE(t.problems[0].find("ext4 mounts cannot be restored"), std::string::npos) << t.problems[0];
  EXPECT_NE(t.problems[1].find("peer group 7"), std::string::npos) << t.problems[1];
}

TEST(MntTable, SuperOptionsSplitIntoFlagsAndData) {
  auto [flags, rest] = super_flags("ro,sync,size=4k,mode=755,lazytime");
  EXPECT_EQ(flags, uint32_t(MS_RDONLY | MS_SYNCHRONOUS | MS_LAZYTIME));
  EXPECT_EQ(rest, "size=4k,mode=755");
  EXPECT_EQ(mount_flags("rw,noatime,nodiratime"), uint32_t(MS_NOATIME | MS_NODIRATIME));
  EXPECT_EQ(fstype_code("cgroup2"), uint32_t(CGROUP2));
  EXPECT_EQ(fstype_code("fuse.sshfs"), uint32_t(FUSE));
  EXPECT_EQ(fstype_name(MQUEUE), "mqueue");
  EXPECT_EQ(fstype_name(DEVTMPFS), "");
  EXPECT_EQ(tmpfs_file(41), "tmpfs-dev-41.tar.gz.img");
}

TEST(MntExternal, MergesExternalOptionsAndMapPairs) {
  auto m = external_map({"file[1:2]", "mnt[/data]:data", "mnt[]", "mnt[x]:/a:b"}, {{"/etc/hosts", "/etc/hosts"}});
  ASSERT_TRUE(m.has_value()) << m.error().render();
  EXPECT_EQ(m->size(), 3u);
  EXPECT_EQ(m->at("/data"), "data");
  EXPECT_EQ(m->at("x"), "/a:b");  // only the first ':' after ']' separates
  EXPECT_EQ(m->at("/etc/hosts"), "/etc/hosts");
  EXPECT_FALSE(external_map({"mnt[/data]"}, {}).has_value());
  EXPECT_FALSE(external_map({}, {{"k", ""}}).has_value());
}

TEST(MntPlan, RebuildsParentFirstFromYardsRootAndHost) {
  Table t = build_table(parse(kContainer), {{"/data", "data"}});
  auto plan = plan_restore(t.entries, "/new", "/y", {{"data", "/host/data"}});
  ASSERT_TRUE(plan.has_value()) << plan.error().render();
  const std::string ro = std::to_string(MS_RDONLY | MS_RELATIME);
  EXPECT_EQ(render(*plan),
            "fresh proc /y/0\n"
            "bind /y/0 /new/proc\n"
            "fresh tmpfs /y/1\n"
            "extract tmpfs-dev-61.tar.gz.img /y/1\n"
            "bind /y/1 /new/tmp\n"
            "bind /host/data /new/data\n"
            "bind /new/etc /new/mnt/ro\n"
            "fresh devpts /y/2\n"
            "bind /y/2 /new/dev/pts\n"
            "bind /y/1/sub /new/mnt/sub\n"
            "bind /y/0/sys /new/proc/sys\n"
            "remount " + std::to_string(MS_RELATIME) + " /new\n"
            "remount " + std::to_string(MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RELATIME) + " /new/proc\n"
            "remount " + std::to_string(MS_NOSUID | MS_NODEV | MS_STRICTATIME) + " /new/tmp\n"
            "remount " + std::to_string(MS_RELATIME) + " /new/data\n"
            "remount " + ro + " /new/mnt/ro\n"
            "remount " + std::to_string(MS_NOSUID | MS_NOEXEC | MS_RELATIME) + " /new/dev/pts\n"
            "remount " + std::to_string(MS_NOSUID | MS_NODEV | MS_STRICTATIME) + " /new/mnt/sub\n"
            "remount " + std::to_string(MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RELATIME) + " /new/proc/sys\n"
            "detach /y/0\n"
            "detach /y/1\n"
            "detach /y/2\n");
  EXPECT_EQ(plan->tar_images, std::set<std::string>{"tmpfs-dev-61.tar.gz.img"});
  EXPECT_EQ(plan->yards, (std::vector<std::string>{"/y/0", "/y/1", "/y/2"}));
  // The same dev for the devpts step: a fresh superblock gets the image's options and sb flags.
  for (const auto& s : plan->steps)
    if (s.op == Step::Op::fresh && s.fstype == "devpts") {
      EXPECT_EQ(s.data, "gid=5,mode=620,ptmxmode=666,newinstance");
    }
}

// runc masks paths with a read-only tmpfs: it must be filled while writable and sealed afterwards.
TEST(MntPlan, ReadOnlyTmpfsIsFilledThenSealed) {
  const char* text =
      "100 50 254:0 /tmp/ct/rootfs / rw,relatime - ext4 /dev/vda rw\n"
      "101 100 0:60 / /proc rw,relatime - proc proc rw\n"
      "102 101 0:70 / /proc/acpi ro,relatime - tmpfs tmpfs ro,inode64\n";
  Table t = build_table(parse(text), {});
  auto plan = plan_restore(t.entries, "/new", "/y", {});
  ASSERT_TRUE(plan.has_value()) << plan.error().render();
  std::vector<std::string> ops;
  for (const auto& s : plan->steps) {
    if (s.target != "/y/1") continue;
    if (s.op == Step::Op::fresh) {
      EXPECT_EQ(s.flags & MS_RDONLY, 0u);
      ops.push_back("fresh");
    } else if (s.op == Step::Op::extract) {
      ops.push_back("extract");
    } else if (s.op == Step::Op::seal) {
      EXPECT_NE(s.flags & MS_RDONLY, 0u);
      ops.push_back("seal");
    }
  }
  EXPECT_EQ(ops, (std::vector<std::string>{"fresh", "extract", "seal"}));
}

// A block device's file system named with --external dev[MAJ/MIN]:NAME travels as fstype AUTO with its
// type in fsname and "dev[NAME]" as source, and is mounted again from the device given for NAME.
TEST(MntPlan, ExternalDeviceMountIsMountedFromTheGivenDevice) {
  const char* text =
      "100 50 254:0 /tmp/ct/rootfs / rw,relatime - ext4 /dev/vda rw\n"
      "101 100 7:3 /sub /disk rw,relatime - ext4 /dev/loop3 rw,errors=remount-ro\n";
  Table refused = build_table(parse(text), {});
  ASSERT_EQ(refused.problems.size(), 1u);
  EXPECT_NE(refused.problems[0].find("--external dev[7/3]:NAME"), std::string::npos) << refused.problems[0];

  auto devices = device_map({"mnt[/x]:y", "dev[7/3]:disk"});
  ASSERT_TRUE(devices.has_value());
  Table t = build_table(parse(text), {}, *devices);
  EXPECT_TRUE(t.problems.empty()) << t.problems.front();
  const auto& e = at(t, "/disk");
  EXPECT_EQ(e.fstype(), uint32_t(AUTO));
  EXPECT_EQ(e.fsname(), "ext4");
  EXPECT_EQ(e.source(), "dev[disk]");

  auto missing = plan_restore(t.entries, "/new", "/y", {});
  ASSERT_FALSE(missing.has_value());
  EXPECT_NE(missing.error().render().find("--external dev[disk]:DEVICE_PATH"), std::string::npos);

  auto plan = plan_restore(t.entries, "/new", "/y", {}, {{"disk", "/dev/loop9"}});
  ASSERT_TRUE(plan.has_value()) << plan.error().render();
  bool fresh = false;
  for (const auto& s : plan->steps)
    if (s.op == Step::Op::fresh) {
      EXPECT_EQ(s.source, "/dev/loop9");
      EXPECT_EQ(s.fstype, "ext4");
      EXPECT_EQ(s.data, "errors=remount-ro");
      fresh = true;
    }
  EXPECT_TRUE(fresh);
  EXPECT_NE(render(*plan).find("bind /y/0/sub /new/disk"), std::string::npos) << render(*plan);

  EXPECT_FALSE(device_map({"dev[7/3]"}).has_value());
  EXPECT_FALSE(device_map({"dev[]:x"}).has_value());
}

// runc binds the console's pty slave (root /0 of the container's devpts) on /dev/console.
TEST(MntPlan, BindOfADevptsPtyFileIsMarkedWithItsIndex) {
  const char* text =
      "100 50 254:0 /tmp/ct/rootfs / rw,relatime - ext4 /dev/vda rw\n"
      "101 100 0:70 / /dev rw,nosuid - tmpfs tmpfs rw,mode=755\n"
      "102 101 0:71 / /dev/pts rw,nosuid,noexec - devpts devpts rw,mode=620,ptmxmode=666\n"
      "103 101 0:71 /0 /dev/console rw,nosuid,noexec - devpts devpts rw,mode=620,ptmxmode=666\n";
  Table t = build_table(parse(text), {});
  auto plan = plan_restore(t.entries, "/new", "/y", {});
  ASSERT_TRUE(plan.has_value()) << plan.error().render();
  int console = -2, pts = -2;
  for (const auto& s : plan->steps) {
    if (s.op != Step::Op::bind) continue;
    if (s.target == "/new/dev/console") console = s.pts_index;
    if (s.target == "/new/dev/pts") pts = s.pts_index;
  }
  EXPECT_EQ(console, 0);
  EXPECT_EQ(pts, -1);
}

TEST(MntPlan, MissingExternalPathIsAnErrorWithTheOptionToGive) {
  Table t = build_table(parse(kContainer), {{"/data", "data"}});
  auto plan = plan_restore(t.entries, "/new", "/y", {});
  ASSERT_FALSE(plan.has_value());
  EXPECT_NE(plan.error().render().find("mount /data"), std::string::npos) << plan.error().render();
  EXPECT_NE(plan.error().hint.find("--external mnt[data]:HOST_PATH"), std::string::npos) << plan.error().hint;
}

TEST(MntPlan, PeersBindFromTheirGroupAndSlavesFromTheirMaster) {
  const char* text =
      "10 1 254:0 /r / rw,relatime shared:1 - ext4 /dev/vda rw\n"
      "11 10 0:70 / /a rw,relatime shared:2 - tmpfs tmpfs rw\n"
      "12 10 0:70 /d /b rw,relatime shared:2 - tmpfs tmpfs rw\n"
      "13 10 0:70 /d /c rw,relatime master:2 - tmpfs tmpfs rw\n";
  Table t = build_table(parse(text), {});
  ASSERT_TRUE(t.problems.empty()) << t.problems.front();
  auto plan = plan_restore(t.entries, "/new", "/y", {});
  ASSERT_TRUE(plan.has_value()) << plan.error().render();
  std::string r = render(*plan);
  EXPECT_EQ(r.substr(0, r.find("remount")),
            "shared /new\n"
            "fresh tmpfs /y/0\n"
            "extract tmpfs-dev-70.tar.gz.img /y/0\n"
            "bind /y/0 /new/a\n"
            "shared /new/a\n"
            "bind /new/a/d /new/b\n"  // a peer of /a: no propagation change of its own
            "bind /new/a/d /new/c\n"
            "slave /new/c\n");
}

TEST(MntPlan, RefusesBrokenTrees) {
  mnt_entry root;
  root.set_fstype(0);
  root.set_mnt_id(1);
  root.set_root_dev(1);
  root.set_parent_mnt_id(0);
  root.set_flags(0);
  root.set_root("/");
  root.set_mountpoint("/");
  root.set_source("x");
  root.set_options("");
  mnt_entry evil = root;
  evil.set_mnt_id(2);
  evil.set_parent_mnt_id(1);
  evil.set_mountpoint("/../etc");
  EXPECT_FALSE(plan_restore({root, evil}, "/new", "/y", {}).has_value());
  mnt_entry orphan = root;
  orphan.set_mnt_id(3);
  orphan.set_parent_mnt_id(99);
  orphan.set_mountpoint("/x");
  EXPECT_FALSE(plan_restore({root, orphan}, "/new", "/y", {}).has_value());
  mnt_entry alien = root;
  alien.set_mnt_id(4);
  alien.set_parent_mnt_id(1);
  alien.set_root_dev(5);
  alien.set_fstype(17);  // overlayfs: cannot be made afresh
  alien.set_mountpoint("/o");
  EXPECT_FALSE(plan_restore({root, alien}, "/new", "/y", {}).has_value());
}

// CRIU 4.2's image of a runc container: every mount is planned, external ones from their keys, and
// the tmpfs contents asked for are exactly the tar images CRIU wrote.
TEST(MntPlan, PlansCriuRuncImage) {
  fs::path d = fs::path(CRSHIM_FIXTURES_DIR) / "criu-4.2" / "runc-busybox-ticker";
  auto dir = sys::open(d.string(), O_RDONLY | O_DIRECTORY);
  ASSERT_TRUE(dir.has_value());
  auto r = image::Reader::open(dir->get(), "mountpoints-13.img", image::kind(image::Type::mnts));
  ASSERT_TRUE(r.has_value()) << r.error().render();
  std::vector<mnt_entry> entries;
  std::map<std::string, std::string> ext;
  for (;;) {
    mnt_entry e;
    auto more = r->read(e);
    ASSERT_TRUE(more.has_value());
    if (!*more) break;
    if (e.has_ext_key()) ext[e.ext_key()] = "/host" + e.ext_key();
    entries.push_back(e);
  }
  ASSERT_EQ(entries.size(), 25u);
  auto plan = plan_restore(entries, "/new", "/y", ext);
  ASSERT_TRUE(plan.has_value()) << plan.error().render();
  std::set<std::string> want;
  for (const auto& e : fs::directory_iterator(d))
    if (e.path().filename().string().rfind("tmpfs-dev-", 0) == 0) want.insert(e.path().filename().string());
  EXPECT_EQ(plan->tar_images, want);
  std::vector<std::string> binds;
  for (const auto& s : plan->steps)
    if (s.op == Step::Op::bind) binds.push_back(s.target);
  ASSERT_EQ(binds.size(), 24u);
  EXPECT_EQ(binds[0], "/new/proc");  // parent-first: / children in mount id order
  auto pos = [&](const std::string& t) { return std::find(binds.begin(), binds.end(), t) - binds.begin(); };
  EXPECT_LT(pos("/new/sys"), pos("/new/sys/fs/cgroup"));
  EXPECT_LT(pos("/new/sys/fs/cgroup"), pos("/new/sys/fs/cgroup/cpu"));
  EXPECT_LT(pos("/new/dev"), pos("/new/proc/keys"));
  for (const auto& s : plan->steps)
    if (s.op == Step::Op::bind && s.target == "/new/proc/keys") {
      EXPECT_EQ(s.source, "/host/dev/null");
    }
}

}  // namespace
}  // namespace crshim::mnt
