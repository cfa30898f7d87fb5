// Mount namespaces: dump of the mount table and tmpfs contents; the mount helper of restore.
#include "checkpoint/mnt/mnt_ns.h"

#include <fcntl.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/openat2.h>
#include <string.h>

#include <climits>
#include <utility>

#include "checkpoint/base/sys.h"
#include "checkpoint/image/catalog.h"
#include "checkpoint/image/image.h"
#include "checkpoint/kernel/proc.h"

namespace crshim::mnt {

namespace {

Result<std::string> find_tar() {
  for (const char* p : {"/usr/bin/tar", "/bin/tar"})
    if (::access(p, X_OK) == 0) return std::string(p);
  return fail(make_error(Errc::not_found, "find", "tar", "GNU tar is needed for tmpfs contents")
                  .with_hint("install the tar package"));
}

const char* const kTarEnv[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C", nullptr};

// Runs tar with `argv`, stdin/stdout from `in`/`out` (-1: keep), and waits for it.
Status run_tar(const std::string& tar, const std::vector<std::string>& args, int in, int out, const std::string& what) {
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t child = ::fork();
  if (child < 0) return fail(sys_error("fork", "tar for " + what));
  if (child == 0) {
    if (in >= 0 && ::dup2(in, 0) < 0) ::_exit(127);
    if (out >= 0 && ::dup2(out, 1) < 0) ::_exit(127);
    ::execve(tar.c_str(), argv.data(), const_cast<char* const*>(kTarEnv));
    ::_exit(127);
  }
  int status = 0;
  while (::waitpid(child, &status, 0) < 0)
    if (errno != EINTR) return fail(sys_error("waitpid", "tar for " + what));
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    return fail(make_error(Errc::system, "tar", what,
                           WIFEXITED(status) ? "exited with " + std::to_string(WEXITSTATUS(status))
                                             : "killed by signal " + std::to_string(WTERMSIG(status))));
  return {};
}



}  // namespace

Result<bool> own_mount_namespace(pid_t pid) {
  auto mine = CR_TRY(sys::read_link("/proc/self/ns/mnt"));
  auto theirs = CR_TRY(sys::read_link(proc::proc_dir(pid) + "/ns/mnt"));
  return mine != theirs;
}

Result<std::vector<std::string>> check_dumpable(pid_t pid, const DumpRequest& req) {
  if (!CR_TRY(own_mount_namespace(pid))) return std::vector<std::string>{};
  auto ext = CR_TRY(external_map(req.external, req.ext_mounts));
  auto devices = CR_TRY(device_map(req.external));
  auto mounts = CR_TRY(proc::read_mountinfo(pid));
  auto problems = build_table(mounts, ext, devices).problems;
  // A namespace copied from the host's can have hundreds: the first few tell what is wrong.
  constexpr size_t kShown = 5;
  if (problems.size() > kShown) {
    size_t more = problems.size() - kShown;
    problems.resize(kShown);
    problems.push_back("and " + std::to_string(more) + " more mounts that cannot be restored");
  }
  return problems;
}

Status dump_mounts(pid_t pid, uint32_t ns_id, const DumpRequest& req, int images_dir, Logger& log) {
  auto ext = CR_TRY(external_map(req.external, req.ext_mounts));
  auto devices = CR_TRY(device_map(req.external));
  auto mounts = CR_TRY(proc::read_mountinfo(pid));
  Table t = build_table(mounts, ext, devices);
  if (!t.problems.empty())
    return fail(make_error(Errc::unsupported, "dump", "pid " + std::to_string(pid), t.problems.front())
                    .with_hint("mark the mount external: --external mnt[MOUNTPOINT]:KEY"));
  {
    auto w = CR_TRY(image::Writer::create(images_dir, "mountpoints-" + std::to_string(ns_id) + ".img",
                                          image::kind(image::Type::mnts)));
    for (const auto& e : t.entries) CR_OK(w.write(e));
    CR_OK(w.close());
  }
  LOG_INFO(log, "Dumped %zu mounts of mount namespace %u", t.entries.size(), ns_id);
  if (t.tmpfs.empty()) return {};
  std::string tar = CR_TRY(find_tar());
  for (const auto& [dev, mountpoint] : t.tmpfs) {
    std::string name = tmpfs_file(dev);
    auto out = CR_TRY(sys::open_at(images_dir, name, O_WRONLY | O_CREAT | O_TRUNC, 0600));
    // Read from outside through the task's root: the tree stays frozen, nothing runs inside it.
    std::string dir = proc::proc_dir(pid) + "/root" + mountpoint;
    CR_OK(run_tar(tar,
                  {"tar", "--create", "--gzip", "--numeric-owner", "--preserve-permissions", "--sparse",
                   "--one-file-system", "--file=-", "--directory=" + dir, "."},
                  -1, out.get(), "tmpfs at " + mountpoint));
    if (::fsync(out.get()) < 0 && errno != EINVAL) return fail(sys_error("fsync", name));
    LOG_INFO(log, "Dumped tmpfs contents of %s into %s", mountpoint.c_str(), name.c_str());
  }
  return {};
}

// ---- restore ------------------------------------------------------------------------------------

TreeBuilder::TreeBuilder(TreeBuilder&& o) noexcept
    : root_(std::move(o.root_)),
      yard_(std::exchange(o.yard_, std::string())),
      plan_(std::move(o.plan_)),
      tars_(std::move(o.tars_)),
      tar_path_(std::move(o.tar_path_)) {}

TreeBuilder::~TreeBuilder() {
  // Only an empty directory on the host: every mount on it was made in the task's namespace.
  if (!yard_.empty()) ::rmdir(yard_.c_str());
}

Result<TreeBuilder> TreeBuilder::prepare(int images_dir, uint32_t ns_id, const RestoreRequest& req) {
  std::string name = "mountpoints-" + std::to_string(ns_id) + ".img";
  if (req.root.empty())
    return fail(make_error(Errc::invalid_argument, "restore", name, "the image holds a mount namespace")
                    .with_hint("give the directory of its root file system with --root DIR"));
  char real[PATH_MAX];
  if (!::realpath(req.root.c_str(), real)) return fail(sys_error("realpath", "--root " + req.root));
  struct stat st;
  if (::stat(real, &st) < 0 || !S_ISDIR(st.st_mode))
    return fail(make_error(Errc::invalid_argument, "restore", "--root " + req.root, "not a directory"));
  if (std::string(real) == "/")
    return fail(make_error(Errc::invalid_argument, "restore", "--root " + req.root, "the new root cannot be /"));
  std::vector<mnt_entry> entries;
  {
    auto r = CR_TRY(image::Reader::open(images_dir, name, image::kind(image::Type::mnts)));
    for (;;) {
      mnt_entry e;
      if (!CR_TRY(r.read(e))) break;
      entries.push_back(std::move(e));
    }
  }
  auto ext = CR_TRY(external_map(req.external, req.ext_mounts));
  auto devices = CR_TRY(device_map(req.external));
  TreeBuilder b;
  b.root_ = real;
  char yard[] = "/tmp/crshim-yard-XXXXXX";
  if (!::mkdtemp(yard)) return fail(sys_error("mkdtemp", yard));
  b.yard_ = yard;
  b.plan_ = CR_TRY(plan_restore(entries, b.root_, b.yard_, ext, devices));
  for (const auto& s : b.plan_.steps)
    if (s.op == Step::Op::bind && s.source.rfind(b.root_, 0) != 0 && s.source.rfind(b.yard_, 0) != 0 &&
        ::access(s.source.c_str(), F_OK) < 0)
      return fail(sys_error("access", s.source).within("external mount " + s.mountpoint));
  if (!b.plan_.tar_images.empty()) b.tar_path_ = CR_TRY(find_tar());
  for (const auto& tar : b.plan_.tar_images)
    b.tars_[tar] = CR_TRY(sys::open_at(images_dir, tar, O_RDONLY));
  return b;
}

namespace {

// What the helper reports back when a step fails.
struct HelperError {
  int step;  // index into the plan; -1..-9: the fixed steps around it
  int err;
};

enum : int {
  kSetnsPid = -1,
  kFork = -2,
  kSetnsIpc = -3,
  kSetnsMnt = -4,
  kPrivate = -5,
  kRootBind = -6,
  kYard = -7,
  kPivot = -8,
  kHelperDied = -9,
};

const char* fixed_step(int step) {
  switch (step) {
    case kSetnsPid: return "setns into the pid namespace";
    case kFork: return "fork in the pid namespace";
    case kSetnsIpc: return "setns into the IPC namespace";
    case kSetnsMnt: return "setns into the mount namespace";
    case kPrivate: return "making the copied mounts private";
    case kRootBind: return "bind-mounting the new root onto itself";
    case kYard: return "mounting the yard";
    case kPivot: return "pivot_root into the new root";
    default: return "the mount helper";
  }
}

// Paths inside the new root are resolved as if it were "/": a symlink in the restored file system
// (which its owner controls) can never send a mount point or a bind source outside of it. Raw
// syscalls only, on buffers made before fork(): this runs in a forked child.
int open_in_root(int rootfd, const char* rel) {
  open_how how{};
  how.flags = O_PATH | O_CLOEXEC;
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  long fd = ::syscall(SYS_openat2, rootfd, rel[0] ? rel : "/", &how, sizeof how);
  return fd < 0 ? -errno : int(fd);
}

// "/proc/self/fd/N" for fd N, in `buf`: mount(2) follows it to what the fd resolved to.
const char* fd_path(char (&buf)[32], int fd) {
  char digits[12];
  int n = 0;
  do digits[n++] = char('0' + fd % 10), fd /= 10;
  while (fd > 0);
  const char prefix[] = "/proc/self/fd/";
  size_t i = 0;
  for (; prefix[i]; i++) buf[i] = prefix[i];
  while (n > 0) buf[i++] = digits[--n];
  buf[i] = 0;
  return buf;
}

// mkdir -p of `rel` (edited in place and put back) below the root, the last component a directory
// or, when `source_is_dir` is false, an empty file. Returns 0 or an errno.
int make_mount_point(int rootfd, char* rel, bool source_is_dir) {
  int fd = open_in_root(rootfd, rel);
  if (fd >= 0) return ::close(fd), 0;
  if (fd != -ENOENT) return -fd;
  char* end = rel + ::strlen(rel);
  for (char* p = rel + 1; p <= end; p++) {
    if (*p != '/' && *p != 0) continue;
    char saved = *p;
    *p = 0;
    int have = open_in_root(rootfd, rel);
    if (have >= 0) {
      ::close(have);
    } else if (have == -ENOENT) {
      char* slash = ::strrchr(rel, '/');
      *slash = 0;
      int parent = open_in_root(rootfd, rel);
      *slash = '/';
      if (parent < 0) return *p = saved, -parent;
      int rc = 0;
      if (saved == 0 && !source_is_dir) {
        int f = ::openat(parent, slash + 1, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
        rc = f < 0 ? errno : (::close(f), 0);
      } else {
        rc = ::mkdirat(parent, slash + 1, 0755) < 0 && errno != EEXIST ? errno : 0;
      }
      ::close(parent);
      if (rc) return *p = saved, rc;
    } else {
      return *p = saved, -have;
    }
    *p = saved;
  }
  return 0;
}

// Everything the helper needs, laid out before fork() so the child only makes syscalls.
struct HelperArgs {
  int mnt_fd = -1, ipc_fd = -1, pid_fd = -1, report_fd = -1;
  const char* root = nullptr;
  const char* yard = nullptr;
  std::vector<const char*> yards;
  struct Op {
    Step::Op op;
    const char* target;
    const char* source;
    const char* fstype;
    const char* data;
    unsigned long flags;
    char* target_rel;         // writable copy of the target below the root, or null (a yard dir)
    const char* source_rel;   // bind source below the root, or null (yard, host path)
    int tar_fd;
    char* const* tar_argv;
    int tree_fd;  // bind: a detached clone (open_tree) of a restored pty slave to attach instead of source
  };
  std::vector<Op> ops;
  const char* tar = nullptr;
};

[[noreturn]] void helper_fail(const HelperArgs& a, int step, int err) {
  HelperError he{step, err};
  [[maybe_unused]] auto n = ::write(a.report_fd, &he, sizeof he);
  ::_exit(1);
}

int run_extract(const HelperArgs& a, const HelperArgs::Op& op) {
  pid_t child = ::fork();
  if (child < 0) return errno;
  if (child == 0) {
    if (::dup2(op.tar_fd, 0) < 0) ::_exit(127);
    ::execve(a.tar, op.tar_argv, const_cast<char* const*>(kTarEnv));
    ::_exit(127);
  }
  int status = 0;
  while (::waitpid(child, &status, 0) < 0)
    if (errno != EINTR) return errno;
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : EIO;
}

[[noreturn]] void helper_mounts(const HelperArgs& a) {
  if (a.ipc_fd >= 0 && ::setns(a.ipc_fd, CLONE_NEWIPC) < 0) helper_fail(a, kSetnsIpc, errno);
  if (::setns(a.mnt_fd, CLONE_NEWNS) < 0) helper_fail(a, kSetnsMnt, errno);
  // The namespace is a copy of ours: nothing done here may propagate back to the host.
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) < 0) helper_fail(a, kPrivate, errno);
  if (::mount(a.root, a.root, nullptr, MS_BIND, nullptr) < 0) helper_fail(a, kRootBind, errno);
  int rootfd = ::open(a.root, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (rootfd < 0) helper_fail(a, kRootBind, errno);
  if (::mount("crshim-yard", a.yard, "tmpfs", MS_NOSUID | MS_NODEV, "mode=700") < 0) helper_fail(a, kYard, errno);
  for (const char* y : a.yards)
    if (::mkdir(y, 0700) < 0) helper_fail(a, kYard, errno);
  for (size_t i = 0; i < a.ops.size(); i++) {
    const auto& op = a.ops[i];
    int rc = 0;
    // Targets and sources below the root are reached through fds resolved inside it.
    char target_buf[32], source_buf[32];
    int target_fd = -1, source_fd = -1;
    const char* target = op.target;
    const char* source = op.source;
    if (op.source_rel) {
      source_fd = open_in_root(rootfd, op.source_rel);
      if (source_fd < 0) helper_fail(a, int(i), -source_fd);
      source = fd_path(source_buf, source_fd);
    }
    if (op.target_rel) {
      if (op.op == Step::Op::bind) {
        struct stat st;
        bool dir = op.tree_fd >= 0  ? false
                   : source_fd >= 0 ? ::fstatat(source_fd, "", &st, AT_EMPTY_PATH) < 0 || S_ISDIR(st.st_mode)
                                    : ::stat(source, &st) < 0 || S_ISDIR(st.st_mode);
        int e = make_mount_point(rootfd, op.target_rel, dir);
        if (e) helper_fail(a, int(i), e);
      }
      target_fd = open_in_root(rootfd, op.target_rel);
      if (target_fd < 0) helper_fail(a, int(i), -target_fd);
      target = fd_path(target_buf, target_fd);
    }
    switch (op.op) {
      case Step::Op::fresh:
        rc = ::mount(source, target, op.fstype, op.flags, op.data[0] ? op.data : nullptr);
        break;
      case Step::Op::extract: {
        int e = run_extract(a, op);
        if (e) helper_fail(a, int(i), e);
        break;
      }
      case Step::Op::bind:
        if (op.tree_fd >= 0)
          rc = target_fd >= 0 ? ::move_mount(op.tree_fd, "", target_fd, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH)
                              : ::move_mount(op.tree_fd, "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH);
        else
          rc = ::mount(source, target, nullptr, MS_BIND, nullptr);
        break;
      case Step::Op::propagate:
        rc = ::mount(nullptr, target, nullptr, op.flags, nullptr);
        break;
      case Step::Op::remount:
        rc = ::mount(nullptr, target, nullptr, MS_REMOUNT | MS_BIND | op.flags, nullptr);
        break;
      case Step::Op::detach:
        rc = ::umount2(target, MNT_DETACH);
        break;
      case Step::Op::seal:
        rc = ::mount(nullptr, target, nullptr, MS_REMOUNT | op.flags, nullptr);
        break;
    }
    if (rc < 0) helper_fail(a, int(i), errno);
    if (target_fd >= 0) ::close(target_fd);
    if (source_fd >= 0) ::close(source_fd);
  }
  if (::umount2(a.yard, MNT_DETACH) < 0) helper_fail(a, kYard, errno);
  // The old root is stacked under the new one and then dropped: every task of the namespace whose
  // root was the old one (the restored root task) now has the new root.
  if (::chdir(a.root) < 0 || ::syscall(SYS_pivot_root, ".", ".") < 0 || ::umount2(".", MNT_DETACH) < 0 ||
      ::chdir("/") < 0)
    helper_fail(a, kPivot, errno);
  ::_exit(0);
}

[[noreturn]] void helper_main(const HelperArgs& a) {
  if (a.pid_fd < 0) helper_mounts(a);
  // proc mounts belong to the mounter's pid namespace: the work is done by a child inside it.
  if (::setns(a.pid_fd, CLONE_NEWPID) < 0) helper_fail(a, kSetnsPid, errno);
  pid_t child = ::fork();
  if (child < 0) helper_fail(a, kFork, errno);
  if (child == 0) helper_mounts(a);
  int status = 0;
  while (::waitpid(child, &status, 0) < 0)
    if (errno != EINTR) helper_fail(a, kFork, errno);
  ::_exit(WIFEXITED(status) ? WEXITSTATUS(status) : 1);
}

Result<UniqueFd> ns_fd_if_own(pid_t pid, const char* ns) {
  auto mine = CR_TRY(sys::read_link(std::string("/proc/self/ns/") + ns));
  std::string path = proc::proc_dir(pid) + "/ns/" + ns;
  auto theirs = CR_TRY(sys::read_link(path));
  if (mine == theirs) return UniqueFd();
  return sys::open(path, O_RDONLY);
}

}  // namespace

Status TreeBuilder::build(pid_t root_task, Logger& log, const std::map<uint32_t, int>& pty_slaves) {
  auto mnt_fd = CR_TRY(ns_fd_if_own(root_task, "mnt"));
  if (!mnt_fd)
    return fail(make_error(Errc::internal, "restore", "pid " + std::to_string(root_task), "not in a new mount namespace"));
  auto ipc_fd = CR_TRY(ns_fd_if_own(root_task, "ipc"));
  auto pid_fd = CR_TRY(ns_fd_if_own(root_task, "pid"));
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) < 0) return fail(sys_error("pipe2", "mount helper"));
  UniqueFd rd(pipe_fds[0]), wr(pipe_fds[1]);

  HelperArgs a;
  a.mnt_fd = mnt_fd.get();
  a.ipc_fd = ipc_fd.get();
  a.pid_fd = pid_fd.get();
  a.report_fd = wr.get();
  a.root = root_.c_str();
  a.yard = yard_.c_str();
  a.tar = tar_path_.c_str();
  for (const auto& y : plan_.yards) a.yards.push_back(y.c_str());
  std::vector<std::string> buffers;
  std::vector<std::vector<std::string>> tar_args;
  std::vector<std::vector<char*>> tar_argvs;
  std::vector<UniqueFd> trees;
  buffers.reserve(plan_.steps.size());
  tar_args.reserve(plan_.steps.size());
  tar_argvs.reserve(plan_.steps.size());
  // Below the root: the path without the root's, resolved inside it ("" is the root itself).
  auto below_root = [&](const std::string& p) {
    return p.rfind(root_, 0) == 0 && (p.size() == root_.size() || p[root_.size()] == '/');
  };
  for (const auto& s : plan_.steps) {
    buffers.push_back(below_root(s.target) ? s.target.substr(root_.size()) : std::string());
    HelperArgs::Op op{s.op, s.target.c_str(), s.source.c_str(), s.fstype.c_str(), s.data.c_str(), s.flags,
                      below_root(s.target) ? buffers.back().data() : nullptr,
                      s.op == Step::Op::bind && below_root(s.source) ? s.source.c_str() + root_.size() : nullptr,
                      -1, nullptr, -1};
    // The slave is cloned here, in crshim's mount namespace; the helper attaches the clone in the new one.
    if (s.op == Step::Op::bind && s.pts_index >= 0) {
      auto slave = pty_slaves.find(uint32_t(s.pts_index));
      if (slave == pty_slaves.end())
        return fail(make_error(Errc::corrupt_image, "restore", "mount " + s.mountpoint,
                               "it binds /dev/pts/" + std::to_string(s.pts_index) + ", a pty the images do not have"));
      int fd = ::open_tree(slave->second, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH);
      if (fd < 0) return fail(sys_error("open_tree", "pty slave for " + s.mountpoint));
      trees.emplace_back(fd);
      op.tree_fd = fd;
    }
    if (s.op == Step::Op::extract) {
      op.tar_fd = tars_.at(s.tar_image).get();
      tar_args.push_back({"tar", "--extract", "--gzip", "--numeric-owner", "--preserve-permissions", "--file=-",
                          "--directory=" + s.target});
      tar_argvs.emplace_back();
      for (auto& arg : tar_args.back()) tar_argvs.back().push_back(arg.data());
      tar_argvs.back().push_back(nullptr);
      op.tar_argv = tar_argvs.back().data();
    }
    a.ops.push_back(op);
  }

  LOG_INFO(log, "Building %zu mount steps under %s for pid %d", plan_.steps.size(), root_.c_str(), root_task);
  pid_t helper = ::fork();
  if (helper < 0) return fail(sys_error("fork", "mount helper"));
  if (helper == 0) helper_main(a);
  wr.reset();
  int status = 0;
  while (::waitpid(helper, &status, 0) < 0)
    if (errno != EINTR) return fail(sys_error("waitpid", "mount helper"));
  HelperError he{kHelperDied, 0};
  bool reported = ::read(rd.get(), &he, sizeof he) == ssize_t(sizeof he);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || reported) {
    if (he.step >= 0 && size_t(he.step) < plan_.steps.size()) {
      const Step& s = plan_.steps[size_t(he.step)];
      static const char* const kOps[] = {"mount", "tar --extract", "bind mount", "set propagation", "remount",
                                         "umount", "remount read-only"};
      std::string what = s.op == Step::Op::bind ? s.source + " on " + s.target
                         : s.op == Step::Op::fresh ? s.fstype + " (" + s.data + ") on " + s.target
                                                    : s.target;
      Error e = errno_error(he.err, kOps[int(s.op)], what, "restoring mount " + s.mountpoint);
      if (s.op == Step::Op::extract) e.message = "tar failed restoring the contents of tmpfs " + s.mountpoint;
      return fail(std::move(e));
    }
    return fail(errno_error(he.err, "mount helper", root_, fixed_step(he.step)));
  }
  // pivot_root() moves the root of tasks whose root was the namespace's; check ours did move.
  struct stat want, got;
  std::string task_root = proc::proc_dir(root_task) + "/root/";
  if (::stat(root_.c_str(), &want) < 0) return fail(sys_error("stat", root_));
  if (::stat(task_root.c_str(), &got) < 0) return fail(sys_error("stat", task_root));
  if (want.st_ino != got.st_ino || want.st_dev != got.st_dev)
    return fail(make_error(Errc::internal, "restore", "pid " + std::to_string(root_task),
                           "its root did not move to " + root_ + " with pivot_root"));
  LOG_INFO(log, "Mount tree of pid %d restored under %s", root_task, root_.c_str());
  return {};
}

}  // namespace crshim::mnt
