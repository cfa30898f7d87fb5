#include "oci/archive.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <vector>

#include "checkpoint/base/sys.h"
#include "checkpoint/base/unique_fd.h"
#include "checkpoint/kernel/proc.h"

extern char** environ;

namespace crshim::oci {

namespace {

// Runs tar with `args`; its stderr (first line) goes into the error.
Status run_tar(std::vector<std::string> args, const std::string& what) {
  args.insert(args.begin(), "tar");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  int p[2];
  if (::pipe2(p, O_CLOEXEC) < 0) return fail(sys_error("pipe2", what));
  UniqueFd r(p[0]), w(p[1]);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, w.get(), 1);
  posix_spawn_file_actions_adddup2(&fa, w.get(), 2);
  pid_t pid = 0;
  int rc = ::posix_spawnp(&pid, "tar", &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) return fail(errno_error(rc, "posix_spawn", "tar", what).with_hint("install tar"));
  w.reset();
  auto out = sys::read_all(r.get(), "tar output", 1u << 20);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return {};
  std::string first = out ? std::string(sys::trim(out->substr(0, out->find('\n')))) : std::string();
  return fail(make_error(Errc::system, "tar", what,
                         (WIFEXITED(status) ? "exit status " + std::to_string(WEXITSTATUS(status)) : std::string("killed")) +
                             (first.empty() ? "" : ": " + first)));
}

// The value of `key`=... among comma-separated mount options, "" when absent.
std::string mount_option(std::string_view options, std::string_view key) {
  for (auto opt : sys::split(options, ','))
    if (opt.size() > key.size() && opt.substr(0, key.size()) == key && opt[key.size()] == '=')
      return std::string(opt.substr(key.size() + 1));
  return {};
}

bool has_xattr(const std::string& path, const char* name) {
  char value[256];
  return ::lgetxattr(path.c_str(), name, value, sizeof value) > 0;
}

// Writes the diff of an overlay rootfs into `stage`: rootfs-diff.tar always, deleted.files when
// something was deleted.
Status stage_rootfs_diff(const std::string& stage, const std::string& upper, const RootfsDiff& diff) {
  std::string list;
  for (const auto& f : diff.files) list += f + '\0';
  std::string list_path = stage + "/.rootfs-diff.list";
  CR_OK(sys::write_file(list_path, list));
  Status st = run_tar({"--create", "--file", stage + "/" + kRootfsDiffFile, "--directory", upper, "--no-recursion",
                       "--null", "--files-from", list_path},
                      "rootfs diff of " + upper);
  ::unlink(list_path.c_str());
  CR_OK(st);
  if (!diff.deleted.empty()) CR_OK(sys::write_file(stage + "/" + kDeletedFilesFile, deleted_files_json(diff.deleted)));
  return {};
}

// podman's rule for container names.
bool valid_podman_name(std::string_view name) {
  auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); };
  if (name.empty() || !alnum(name[0])) return false;
  for (char c : name)
    if (!alnum(c) && c != '_' && c != '.' && c != '-') return false;
  return true;
}

// A new container ID as podman makes them: 32 random bytes in hex.
Result<std::string> random_container_id() {
  unsigned char bytes[32];
  for (size_t got = 0; got < sizeof bytes;) {
    ssize_t n = ::getrandom(bytes + got, sizeof bytes - got, 0);
    if (n < 0 && errno != EINTR) return fail(sys_error("getrandom", "container ID"));
    if (n > 0) got += n;
  }
  static const char hex[] = "0123456789abcdef";
  std::string id;
  for (unsigned char b : bytes) {
    id += hex[b >> 4];
    id += hex[b & 15];
  }
  return id;
}

}  // namespace

Result<std::string> podman_config_dump(std::string_view spec_json, const std::string& bundle, const std::string& id) {
  const std::string object = bundle + "/config.json";
  auto doc = nlohmann::json::parse(spec_json.begin(), spec_json.end(), nullptr, false);
  if (doc.is_discarded() || !doc.is_object())
    return fail(make_error(Errc::invalid_argument, "export", object, "not a JSON object"));
  auto annotation = [&](const char* key) {
    auto all = doc.find("annotations");
    if (all == doc.end() || !all->is_object()) return std::string();
    auto v = all->find(key);
    return v != all->end() && v->is_string() ? v->get<std::string>() : std::string();
  };
  std::string image;
  for (const char* key : kExportImageAnnotations)
    if (image.empty()) image = annotation(key);
  if (image.empty()) return std::string();

  std::string name = annotation(kExportNameAnnotation);
  if (!name.empty() && !valid_podman_name(name))
    return fail(make_error(Errc::invalid_argument, "export", object,
                           std::string(kExportNameAnnotation) + " '" + name + "' is no valid podman container name")
                    .with_hint("use letters, digits, '_', '.' and '-', starting with a letter or digit"));
  if (name.empty()) {
    std::filesystem::path dir = std::filesystem::path(bundle).lexically_normal();
    name = (dir.has_filename() ? dir : dir.parent_path()).filename().string();  // "/b/ctr/" too
  }
  if (name.empty() || !valid_podman_name(name)) name = "crshim-" + id.substr(0, 12);
  std::string image_id = annotation(kExportImageIdAnnotation);
  std::string runtime = annotation(kExportRuntimeAnnotation);

  // The fields podman's restore reads; it keeps the rest (storage, lock, log, network, shm) its own.
  nlohmann::json c = {{"id", id},
                      {"name", name},
                      {"rootfsImageName", image},
                      {"rootfsImageID", image_id.empty() ? image : image_id},
                      {"runtime", runtime.empty() ? "runc" : runtime},
                      {"stopSignal", 15}};
  // What `podman ps` shows as COMMAND.
  auto process = doc.find("process");
  if (process != doc.end() && process->is_object()) {
    auto args = process->find("args");
    if (args != process->end() && args->is_array() &&
        std::all_of(args->begin(), args->end(), [](const nlohmann::json& a) { return a.is_string(); }))
      c["command"] = *args;
  }
  return c.dump(2, ' ', false, nlohmann::json::error_handler_t::replace);
}

Result<std::string> overlay_upperdir(std::string_view mountinfo, const std::string& rootfs) {
  auto mounts = CR_TRY(proc::parse_mountinfo(mountinfo));
  const proc::MountInfo* top = nullptr;
  for (const auto& m : mounts)
    if (m.mount_point == rootfs) top = &m;  // later entries are mounted on top
  if (!top || top->fstype != "overlay") return std::string();
  std::string upper = mount_option(top->super_options, "upperdir");
  if (upper.empty())
    return fail(make_error(Errc::unsupported, "export", rootfs, "the overlay rootfs has no upper directory to export"));
  if (mount_option(top->super_options, "metacopy") == "on")
    return fail(make_error(Errc::unsupported, "export", rootfs,
                           "the overlay rootfs uses metacopy: its upper files do not hold their data"));
  return upper;
}

Result<RootfsDiff> scan_upperdir(const std::string& upper) {
  namespace fs = std::filesystem;
  RootfsDiff diff;
  std::error_code ec;
  fs::recursive_directory_iterator it(upper, fs::directory_options::none, ec), end;
  if (ec) return fail(errno_error(ec.value(), "open", upper, "overlay upper directory"));
  for (; it != end; it.increment(ec)) {
    if (ec) return fail(errno_error(ec.value(), "read", upper, "overlay upper directory"));
    const std::string path = it->path().string();
    const std::string rel = path.substr(upper.size() + (upper.back() == '/' ? 0 : 1));
    struct stat st;
    if (::lstat(path.c_str(), &st) < 0) return fail(sys_error("lstat", path));
    if (S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0)) {
      diff.deleted.push_back("/" + rel);
      continue;
    }
    if (S_ISSOCK(st.st_mode)) continue;
    if (S_ISDIR(st.st_mode)) {
      if (has_xattr(path, "trusted.overlay.opaque")) diff.unsupported.push_back("/" + rel + " (opaque)");
      if (has_xattr(path, "trusted.overlay.redirect")) diff.unsupported.push_back("/" + rel + " (redirected)");
    }
    diff.files.push_back(rel);
  }
  return diff;
}

std::string deleted_files_json(const std::vector<std::string>& paths) {
  return nlohmann::json(paths).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

Result<std::vector<std::string>> parse_deleted_files(std::string_view text) {
  auto bad = [](const std::string& why) { return fail(make_error(Errc::corrupt_image, "parse", kDeletedFilesFile, why)); };
  auto doc = nlohmann::json::parse(text.begin(), text.end(), nullptr, false);
  if (doc.is_discarded()) return bad("not valid JSON");
  // podman writes null for a container that deleted nothing.
  if (doc.is_null()) return std::vector<std::string>();
  if (!doc.is_array()) return bad("expected an array of paths");
  std::vector<std::string> out;
  for (const auto& e : doc) {
    if (!e.is_string()) return bad("expected an array of paths");
    out.push_back(e.get<std::string>());
  }
  return out;
}

Status remove_in_root(int root_fd, const std::string& path) {
  std::vector<std::string_view> parts;
  for (auto p : sys::split(path, '/'))
    if (!p.empty() && p != ".") parts.push_back(p);
  for (auto p : parts)
    if (p == "..") return fail(make_error(Errc::invalid_argument, "remove", path, "the path leaves the rootfs"));
  if (parts.empty()) return fail(make_error(Errc::invalid_argument, "remove", path, "refusing to remove the rootfs itself"));
  std::string parent = "/";
  for (size_t i = 0; i + 1 < parts.size(); i++) parent += std::string(parts[i]) + "/";
  const std::string name(parts.back());
  auto dir = sys::open_in_root(root_fd, parent, O_PATH | O_DIRECTORY);
  if (!dir) {
    if (dir.error().err == ENOENT || dir.error().err == ENOTDIR) return {};
    return fail(dir.error());
  }
  if (::unlinkat(dir->get(), name.c_str(), 0) == 0 || errno == ENOENT) return {};
  if (errno != EISDIR) return fail(sys_error("unlink", path, "in the rootfs"));
  // A directory: its parent is pinned by the fd, and remove_all does not follow symlinks below it.
  std::error_code ec;
  std::filesystem::remove_all("/proc/self/fd/" + std::to_string(dir->get()) + "/" + name, ec);
  if (ec) return fail(errno_error(ec.value(), "remove", path, "in the rootfs"));
  return {};
}

Status apply_rootfs_diff(const std::string& dir, const std::string& rootfs, Logger& log) {
  const std::string tar = dir + "/" + kRootfsDiffFile;
  const std::string deleted = dir + "/" + kDeletedFilesFile;
  if (::access(tar.c_str(), F_OK) == 0) {
    // As root, tar keeps the owners and modes the container gave its files.
    CR_OK(run_tar({"--extract", "--same-owner", "--same-permissions", "--file", tar, "--directory", rootfs},
                  "rootfs changes into " + rootfs));
    LOG_INFO(log, "Applied %s to %s", kRootfsDiffFile, rootfs.c_str());
  }
  if (::access(deleted.c_str(), F_OK) == 0) {
    auto paths = CR_TRY(parse_deleted_files(CR_TRY(sys::read_file(deleted, 16u << 20))));
    auto root = CR_TRY(sys::open(rootfs, O_PATH | O_DIRECTORY));
    for (const auto& p : paths) CR_OK_IN(remove_in_root(root.get(), p), kDeletedFilesFile);
    LOG_INFO(log, "Removed the %zu paths %s lists from %s", paths.size(), kDeletedFilesFile, rootfs.c_str());
  }
  return {};
}

Status export_archive(const std::string& archive, const std::string& images_dir, const std::string& bundle,
                      const std::string& rootfs, Logger& log) {
  // A staging directory of two symlinks, archived with --dereference: checkpoint/ and spec.dump.
  char tmpl[] = "/tmp/crshim-export-XXXXXX";
  if (!::mkdtemp(tmpl)) return fail(sys_error("mkdtemp", tmpl));
  std::string stage = tmpl;
  Status st = [&]() -> Status {
    char real[PATH_MAX];
    if (!::realpath(images_dir.c_str(), real)) return fail(sys_error("realpath", images_dir));
    if (::symlink(real, (stage + "/checkpoint").c_str()) < 0) return fail(sys_error("symlink", stage + "/checkpoint"));
    if (::symlink((bundle + "/config.json").c_str(), (stage + "/spec.dump").c_str()) < 0)
      return fail(sys_error("symlink", stage + "/spec.dump"));
    std::vector<std::string> members{"checkpoint", "spec.dump"};
    const std::string id = CR_TRY(random_container_id());
    std::string config_dump = CR_TRY(podman_config_dump(CR_TRY(sys::read_file(bundle + "/config.json")), bundle, id));
    if (!config_dump.empty()) {
      CR_OK(sys::write_file(stage + "/" + kPodmanConfigFile, config_dump));
      members.push_back(kPodmanConfigFile);
      LOG_INFO(log, "Wrote %s for podman: container %s", kPodmanConfigFile, id.c_str());
    } else {
      LOG_INFO(log, "No %s annotation in the bundle: no %s for podman in the archive", kExportImageAnnotations[0],
               kPodmanConfigFile);
    }
    std::string upper = CR_TRY(overlay_upperdir(CR_TRY(sys::read_file("/proc/self/mountinfo")), rootfs));
    if (!upper.empty()) {
      RootfsDiff diff = CR_TRY(scan_upperdir(upper));
      for (const auto& u : diff.unsupported)
        LOG_WARN(log, "Rootfs diff: %s: the lower layers' entries below it are not recorded as deleted", u.c_str());
      CR_OK(stage_rootfs_diff(stage, upper, diff));
      members.push_back(kRootfsDiffFile);
      if (!diff.deleted.empty()) members.push_back(kDeletedFilesFile);
      LOG_INFO(log, "Rootfs diff of %s (upper %s): %zu entries, %zu deleted", rootfs.c_str(), upper.c_str(),
               diff.files.size(), diff.deleted.size());
    }
    std::vector<std::string> args{"--create", "--auto-compress", "--dereference", "--file", archive, "--directory", stage};
    args.insert(args.end(), members.begin(), members.end());
    return run_tar(std::move(args), "export " + archive);
  }();
  std::error_code ec;
  std::filesystem::remove_all(stage, ec);
  return st;
}

Result<std::string> import_archive(const std::string& archive, const std::string& dir) {
  if (::access(archive.c_str(), R_OK) < 0) return fail(sys_error("access", archive, "checkpoint archive"));
  // tar detects the compression itself when extracting.
  CR_OK(run_tar({"--extract", "--no-same-owner", "--file", archive, "--directory", dir}, "import " + archive));
  std::string images = dir + "/checkpoint";
  struct stat st;
  if (::stat(images.c_str(), &st) < 0 || !S_ISDIR(st.st_mode))
    return fail(make_error(Errc::corrupt_image, "import", archive, "the archive has no checkpoint/ directory"));
  return images;
}

}  // namespace crshim::oci
