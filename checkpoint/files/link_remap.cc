#include "checkpoint/files/link_remap.h"

#include <fcntl.h>
#include <unistd.h>

#include "checkpoint/base/fault.h"
#include "checkpoint/base/sys.h"
#include "checkpoint/image/catalog.h"

namespace crshim::files {

namespace {

constexpr int kMaxNameTries = 100;

}  // namespace

std::pair<std::string, std::string> split_path(const std::string& path) {
  auto slash = path.rfind('/');
  if (slash == std::string::npos) return {".", path};
  return {slash == 0 ? "/" : path.substr(0, slash), path.substr(slash + 1)};
}

Result<uint32_t> link_remap(int fd, const struct stat& st, const std::string& path, pid_t pid, int mnt_id,
                            DumpFiles& files) {
  auto [dir, base] = split_path(path);
  std::string what = "deleted file " + path;
  if (!path.starts_with('/'))
    return fail(make_error(Errc::unsupported, "link", what, "the path is not absolute"));
  // The directory as the task sees it: through its root, which may be a container's.
  std::string task_dir = "/proc/" + std::to_string(pid) + "/root" + (dir == "/" ? "" : dir);
  UniqueFd dfd(::open(task_dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!dfd) return fail(sys_error("open", dir, "directory of " + what));
  // The entry the link's REG record gets is the next one: its id names the link, as CRIU's do.
  uint32_t id = uint32_t(files.table().entries().size() + 1);
  std::string from = "/proc/self/fd/" + std::to_string(fd);
  std::string name;
  for (int i = 0;; i++) {
    name = "link_remap." + std::to_string(id);
    // A name left by an earlier dump (of a tree still running, say) is not ours to replace.
    if (i > 0) name += "." + std::to_string(getpid()) + "." + std::to_string(i);
    if (::linkat(AT_FDCWD, from.c_str(), dfd.get(), name.c_str(), AT_SYMLINK_FOLLOW) == 0) break;
    if (errno != EEXIST || i >= kMaxNameTries) {
      Error e = sys_error("linkat", dir + "/" + name, what);
      if (e.err == ENOENT)
        e.with_hint("the kernel links a file without links only if it is an O_TMPFILE file never linked before");
      return fail(std::move(e));
    }
  }
  files.add_link_remap(std::move(dfd), name);
  CR_OK(fault_point("dump:link-remap"));
  std::string link_path = (dir == "/" ? "" : dir) + "/" + name;
  uint32_t got = files.table().add_reg(link_path, O_RDONLY, 0, st, mnt_id, false);
  if (got != id)
    return fail(make_error(Errc::internal, "dump", what, "link entry got id " + std::to_string(got) + ", not " + std::to_string(id)));
  return id;
}

DumpFiles::~DumpFiles() {
  for (auto& [dir, name] : links_) (void)::unlinkat(dir.get(), name.c_str(), 0);
}

Status RestoreFiles::unlink_link_remaps() {
  std::string failed;
  int err = 0;
  for (uint32_t id : used_links_) {
    const std::string& path = entry(id).reg().name();
    auto [dir, base] = split_path(path);
    auto dfd = open_path(dir, O_PATH | O_DIRECTORY);
    if (!dfd) err = dfd.error().err;
    else if (::unlinkat(dfd->get(), base.c_str(), 0) < 0 && errno != ENOENT) err = errno;
    else continue;
    failed += (failed.empty() ? "" : ", ") + path;
  }
  used_links_.clear();
  if (failed.empty()) return {};
  return fail(errno_error(err, "unlink", failed, "the --link-remap link outlived the restore").with_hint("remove it by hand"));
}

}  // namespace crshim::files
