// Checkpoint archives' rootfs changes: the overlay upper dir found from mountinfo, the upper dir walked
// into files and whiteouts, deleted.files as podman writes it, and the changes applied to a new rootfs.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "checkpoint/base/log.h"
#include "checkpoint/base/unique_fd.h"
#include "oci/archive.h"

namespace crshim::oci {
namespace {

namespace fs = std::filesystem;

class OciArchiveTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/crshim-oci-archive.XXXXXX";
    dir_ = mkdtemp(tmpl);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& rel) const { return dir_ + "/" + rel; }
  void write(const std::string& rel, const std::string& text) {
    fs::create_directories(fs::path(path(rel)).parent_path());
    std::ofstream(path(rel)) << text;
  }
  std::string read(const std::string& rel) const {
    std::ifstream in(path(rel));
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  // An overlay whiteout, as the kernel makes one in the upper dir.
  bool whiteout(const std::string& rel) { return ::mknod(path(rel).c_str(), S_IFCHR | 0, makedev(0, 0)) == 0; }

  std::string dir_;
  Logger log_{4};
};

TEST(OverlayUpperdir, FindsTheTopmostMountAtTheRootfs) {
  const std::string mi =
      "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
      "40 22 0:50 / /b/rootfs rw,relatime - tmpfs tmpfs rw\n"
      "41 40 0:51 / /b/rootfs rw,relatime - overlay overlay rw,lowerdir=/l1:/l2,upperdir=/up\\040dir,workdir=/work\n"
      "42 22 0:52 / /other rw - overlay overlay rw,lowerdir=/x,upperdir=/y,workdir=/z\n";
  auto up = overlay_upperdir(mi, "/b/rootfs");
  ASSERT_TRUE(up) << up.error().render();
  EXPECT_EQ(*up, "/up dir");
  // Not an overlay, or nothing mounted there: no diff to take.
  EXPECT_EQ(*overlay_upperdir("40 22 0:50 / /b/rootfs rw - tmpfs tmpfs rw\n", "/b/rootfs"), "");
  EXPECT_EQ(*overlay_upperdir(mi, "/b"), "");
  // A read-only overlay has nothing to export; a metacopy one has no data in its upper files.
  auto ro = overlay_upperdir("41 22 0:51 / /r ro - overlay overlay ro,lowerdir=/a:/b\n", "/r");
  ASSERT_FALSE(ro);
  EXPECT_EQ(ro.error().message, "the overlay rootfs has no upper directory to export");
  auto meta = overlay_upperdir("41 22 0:51 / /r rw - overlay overlay rw,lowerdir=/a,upperdir=/u,workdir=/w,metacopy=on\n", "/r");
  ASSERT_FALSE(meta);
  EXPECT_EQ(meta.error().code, Errc::unsupported);
}

TEST(DeletedFiles, IsPodmansJsonListOfPaths) {
  EXPECT_EQ(deleted_files_json({"/etc/motd", "/a b/\"q\""}), R"(["/etc/motd","/a b/\"q\""])");
  auto back = parse_deleted_files(R"(["/etc/motd","/a b/\"q\""])");
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, (std::vector<std::string>{"/etc/motd", "/a b/\"q\""}));
  EXPECT_TRUE(parse_deleted_files("null")->empty());
  EXPECT_EQ(parse_deleted_files("{}").error().render(), "parse deleted.files: expected an array of paths");
  EXPECT_FALSE(parse_deleted_files("[1]"));
  EXPECT_FALSE(parse_deleted_files("[\"a\""));
}

TEST(PodmanConfigDump, ComesFromTheBundlesImageAnnotation) {
  const std::string id(64, 'a');
  // No image named: nothing for podman.
  auto none = podman_config_dump(R"({"process":{"args":["sh"]}})", "/b/ctr", id);
  ASSERT_TRUE(none) << none.error().render();
  EXPECT_EQ(*none, "");
  auto dump = podman_config_dump(
      R"({"process":{"args":["sh","-c","x"]},"annotations":{"io.crshim.export.image":"localhost/bb:latest"}})", "/b/ctr/",
      id);
  ASSERT_TRUE(dump) << dump.error().render();
  auto c = nlohmann::json::parse(*dump);
  EXPECT_EQ(c["id"], id);
  EXPECT_EQ(c["name"], "ctr");  // the bundle directory's name
  EXPECT_EQ(c["rootfsImageName"], "localhost/bb:latest");
  EXPECT_EQ(c["rootfsImageID"], "localhost/bb:latest");
  EXPECT_EQ(c["runtime"], "runc");
  EXPECT_EQ(c["command"], nlohmann::json::array({"sh", "-c", "x"}));
  // CRI-O's image annotation, an explicit ID, name and runtime; a bundle name podman refuses.
  c = nlohmann::json::parse(*podman_config_dump(
      R"({"annotations":{"io.kubernetes.cri-o.ImageName":"img","io.crshim.export.image-id":"5dee","io.crshim.export.runtime":"crun"}})",
      "/b/.ctr", id));
  EXPECT_EQ(c["rootfsImageName"], "img");
  EXPECT_EQ(c["rootfsImageID"], "5dee");
  EXPECT_EQ(c["runtime"], "crun");
  EXPECT_EQ(c["name"], "crshim-aaaaaaaaaaaa");
  c = nlohmann::json::parse(*podman_config_dump(
      R"({"annotations":{"io.crshim.export.image":"img","io.crshim.export.name":"web-1"}})", "/b/ctr", id));
  EXPECT_EQ(c["name"], "web-1");
  auto bad = podman_config_dump(R"({"annotations":{"io.crshim.export.image":"img","io.crshim.export.name":"a b"}})",
                                "/b/ctr", id);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().message, "io.crshim.export.name 'a b' is no valid podman container name");
  EXPECT_EQ(bad.error().hint, "use letters, digits, '_', '.' and '-', starting with a letter or digit");
  EXPECT_FALSE(podman_config_dump("[", "/b/ctr", id));
}

TEST_F(OciArchiveTest, MissingTarIsNamedWithAHint) {
  write("a.tar", "x");
  fs::create_directories(path("nobin"));
  std::string saved = std::getenv("PATH") ? std::getenv("PATH") : "";
  ::setenv("PATH", path("nobin").c_str(), 1);  // posix_spawnp looks tar up there only
  auto r = import_archive(path("a.tar"), path("out"));
  ::setenv("PATH", saved.c_str(), 1);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().op, "posix_spawn");
  EXPECT_EQ(r.error().object, "tar");
  EXPECT_EQ(r.error().err, ENOENT);
  EXPECT_EQ(r.error().hint, "install tar");
}

TEST_F(OciArchiveTest, UpperDirWalkSeparatesFilesFromWhiteouts) {
  write("up/etc/new.conf", "x");
  write("up/top", "t");
  fs::create_directories(path("up/emptydir"));
  fs::create_symlink("top", path("up/link"));
  if (!whiteout("up/etc/gone") || !whiteout("up/alsogone")) GTEST_SKIP() << "mknod 0:0 needs CAP_MKNOD";
  auto diff = scan_upperdir(path("up"));
  ASSERT_TRUE(diff) << diff.error().render();
  std::vector<std::string> files = diff->files, deleted = diff->deleted;
  std::sort(files.begin(), files.end());
  std::sort(deleted.begin(), deleted.end());
  EXPECT_EQ(files, (std::vector<std::string>{"emptydir", "etc", "etc/new.conf", "link", "top"}));
  EXPECT_EQ(deleted, (std::vector<std::string>{"/alsogone", "/etc/gone"}));
  // Parents come before their children, so tar makes the directory first.
  auto etc = std::find(diff->files.begin(), diff->files.end(), "etc");
  auto conf = std::find(diff->files.begin(), diff->files.end(), "etc/new.conf");
  EXPECT_LT(etc, conf);
  EXPECT_TRUE(diff->unsupported.empty());
}

TEST_F(OciArchiveTest, RemoveInRootStaysInsideTheRoot) {
  write("root/a/file", "1");
  write("root/dir/sub/f", "2");
  write("outside/keep", "3");
  fs::create_symlink(path("outside"), path("root/escape"));
  UniqueFd root(::open(path("root").c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  ASSERT_TRUE(remove_in_root(root.get(), "/a/file"));
  EXPECT_FALSE(fs::exists(path("root/a/file")));
  ASSERT_TRUE(remove_in_root(root.get(), "dir"));  // recursive, relative spelling
  EXPECT_FALSE(fs::exists(path("root/dir")));
  EXPECT_TRUE(remove_in_root(root.get(), "/not/there"));
  // An absolute symlink is resolved inside the root, so it cannot reach the outside directory.
  EXPECT_TRUE(remove_in_root(root.get(), "/escape/keep"));
  EXPECT_TRUE(fs::exists(path("outside/keep")));
  auto up = remove_in_root(root.get(), "/a/../../outside/keep");
  ASSERT_FALSE(up);
  EXPECT_EQ(up.error().message, "the path leaves the rootfs");
  EXPECT_FALSE(remove_in_root(root.get(), "/"));
  EXPECT_TRUE(fs::exists(path("outside/keep")));
  // The symlink itself is removable: unlink does not follow it.
  ASSERT_TRUE(remove_in_root(root.get(), "/escape"));
  EXPECT_FALSE(fs::is_symlink(path("root/escape")));
  EXPECT_TRUE(fs::exists(path("outside/keep")));
}

TEST_F(OciArchiveTest, DiffAppliesToAFreshCopyOfTheLowerRootfs) {
  // Lower layer and the container's changes as an upper dir would hold them.
  write("lower/etc/motd", "hello");
  write("lower/etc/keep", "keep");
  write("lower/data/old/x", "old");
  write("up/etc/new.conf", "new");
  write("up/etc/keep", "changed");
  if (!whiteout("up/etc/motd")) GTEST_SKIP() << "mknod 0:0 needs CAP_MKNOD";
  fs::create_directories(path("up/data"));
  ASSERT_TRUE(whiteout("up/data/old"));
  auto diff = scan_upperdir(path("up"));
  ASSERT_TRUE(diff);
  // What export stages: the tar of the upper dir without whiteouts, and deleted.files.
  fs::create_directories(path("unpacked"));
  std::string list;
  for (const auto& f : diff->files) list += f + "\n";
  write("files.list", list);
  ASSERT_EQ(std::system(("tar -cf " + path("unpacked/rootfs-diff.tar") + " -C " + path("up") + " --no-recursion -T " +
                         path("files.list"))
                            .c_str()),
            0);
  write("unpacked/deleted.files", deleted_files_json(diff->deleted));
  fs::copy(path("lower"), path("fresh"), fs::copy_options::recursive);
  ASSERT_TRUE(apply_rootfs_diff(path("unpacked"), path("fresh"), log_));
  EXPECT_EQ(read("fresh/etc/new.conf"), "new");
  EXPECT_EQ(read("fresh/etc/keep"), "changed");
  EXPECT_FALSE(fs::exists(path("fresh/etc/motd")));
  EXPECT_FALSE(fs::exists(path("fresh/data/old")));
  EXPECT_TRUE(fs::is_directory(path("fresh/data")));
  // No char 0:0 devices came across.
  for (auto& e : fs::recursive_directory_iterator(path("fresh"))) EXPECT_FALSE(e.is_character_file()) << e.path();

  // An archive without rootfs changes leaves the rootfs alone; a broken deleted.files is an error.
  fs::create_directories(path("plain"));
  EXPECT_TRUE(apply_rootfs_diff(path("plain"), path("fresh"), log_));
  write("plain/deleted.files", "{");
  auto bad = apply_rootfs_diff(path("plain"), path("fresh"), log_);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, Errc::corrupt_image);
}

}  // namespace
}  // namespace crshim::oci
