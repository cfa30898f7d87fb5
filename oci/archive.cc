#include "oci/archive.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <filesystem>
#include <vector>

#include "checkpoint/base/sys.h"
#include "checkpoint/base/unique_fd.h"

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

}  // namespace

Status export_archive(const std::string& archive, const std::string& images_dir, const std::string& bundle) {
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
    return run_tar({"--create", "--auto-compress", "--dereference", "--file", archive, "--directory", stage, "checkpoint",
                    "spec.dump"},
                   "export " + archive);
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
