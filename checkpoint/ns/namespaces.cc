#include "checkpoint/ns/namespaces.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "checkpoint/base/sys.h"
#include "checkpoint/image/catalog.h"
#include "checkpoint/image/image.h"
#include "checkpoint/ns/ipc_objects.h"
#include "checkpoint/ns/time_ns.h"
#include "ipc-var.pb.h"
#include "utsns.pb.h"

namespace crshim::ns {

namespace {

// The sysctl files of an IPC namespace, in ipc_var_entry order (sem is four numbers).
const char* const kIpcFiles[] = {
    "/proc/sys/kernel/sem",          "/proc/sys/kernel/msgmax",        "/proc/sys/kernel/msgmnb",
    "/proc/sys/kernel/msgmni",       "/proc/sys/kernel/auto_msgmni",   "/proc/sys/kernel/shmmax",
    "/proc/sys/kernel/shmall",       "/proc/sys/kernel/shmmni",        "/proc/sys/kernel/shm_rmid_forced",
    "/proc/sys/fs/mqueue/queues_max", "/proc/sys/fs/mqueue/msg_max",   "/proc/sys/fs/mqueue/msgsize_max",
    "/proc/sys/fs/mqueue/msg_default", "/proc/sys/fs/mqueue/msgsize_default",
    "/proc/sysvipc/shm",             "/proc/sysvipc/sem",              "/proc/sysvipc/msg",
};
constexpr size_t kIpcFileCount = sizeof kIpcFiles / sizeof kIpcFiles[0];
const char* const kUtsFiles[] = {"/proc/sys/kernel/hostname", "/proc/sys/kernel/domainname"};

// Reads `files` as seen from inside namespace `nstype` of `pid`: a child joins it and sends each
// file back ("\0"-separated; a missing file sends nothing). The child only makes raw syscalls.
Result<std::vector<std::string>> read_in_namespace(pid_t pid, const char* ns, int nstype, const char* const* files,
                                                   size_t count) {
  std::string ns_path = "/proc/" + std::to_string(pid) + "/ns/" + ns;
  auto ns_fd = CR_TRY(sys::open(ns_path, O_RDONLY));
  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) < 0) return fail(sys_error("pipe2", ns_path));
  pid_t child = ::fork();
  if (child < 0) return fail(sys_error("fork", ns_path));
  if (child == 0) {
    ::close(pipefd[0]);
    if (::setns(ns_fd.get(), nstype) < 0) ::_exit(2);
    static char buf[1 << 16];
    for (size_t i = 0; i < count; i++) {
      int fd = ::open(files[i], O_RDONLY | O_CLOEXEC);
      if (fd >= 0) {
        ssize_t n;
        while ((n = ::read(fd, buf, sizeof buf)) > 0)
          if (::write(pipefd[1], buf, size_t(n)) != n) ::_exit(3);
        ::close(fd);
      }
      if (::write(pipefd[1], "", 1) != 1) ::_exit(3);
    }
    ::_exit(0);
  }
  ::close(pipefd[1]);
  UniqueFd rd(pipefd[0]);
  auto all = sys::read_all(rd.get(), ns_path, 4u << 20);
  int status = 0;
  ::waitpid(child, &status, 0);
  if (!all) return fail(all.error());
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    return fail(make_error(Errc::system, "read", ns_path, "the helper joining the namespace failed (status " +
                                                              std::to_string(status) + ")"));
  std::vector<std::string> out;
  size_t at = 0;
  for (size_t i = 0; i < count; i++) {
    size_t end = all->find('\0', at);
    if (end == std::string::npos) return fail(make_error(Errc::internal, "read", ns_path, "short answer"));
    out.push_back(all->substr(at, end - at));
    at = end + 1;
  }
  return out;
}

uint64_t number(const std::string& s) { return std::strtoull(s.c_str(), nullptr, 10); }

// A remote open+write+close of a /proc/sys file in the task (its namespaces decide what it sets).
Status remote_write_file(kernel::Remote& r, const std::string& path, const std::string& value) {
  uint64_t p = CR_TRY(r.put_string(path));
  uint64_t v = CR_TRY(r.put(value.data(), value.size(), true));
  long fd = CR_TRY(r.call(SYS_openat, AT_FDCWD, long(p), O_WRONLY | O_CLOEXEC));
  auto wrote = r.call(SYS_write, fd, long(v), long(value.size()));
  CR_OK(r.call(SYS_close, fd));
  if (!wrote) return fail(wrote.error().within(path));
  return {};
}

}  // namespace

int owned_namespaces(const task_kobj_ids_entry& t, const task_kobj_ids_entry& d) {
  int flags = 0;
  if (t.uts_ns_id() != d.uts_ns_id()) flags |= CLONE_NEWUTS;
  if (t.ipc_ns_id() != d.ipc_ns_id()) flags |= CLONE_NEWIPC;
  if (t.mnt_ns_id() != d.mnt_ns_id()) flags |= CLONE_NEWNS;
  if (t.net_ns_id() != d.net_ns_id()) flags |= CLONE_NEWNET;
  if (t.user_ns_id() != d.user_ns_id()) flags |= CLONE_NEWUSER;
  if (t.cgroup_ns_id() != d.cgroup_ns_id()) flags |= CLONE_NEWCGROUP;
  if (t.has_time_ns_id() && t.time_ns_id() != d.time_ns_id()) flags |= CLONE_NEWTIME;
  return flags;
}

Status dump_namespaces(pid_t pid, const task_kobj_ids_entry& task, const task_kobj_ids_entry& dumper, int dir,
                       const UserNs* userns) {
  int flags = owned_namespaces(task, dumper);
  std::string who = "pid " + std::to_string(pid);
  // A cgroup namespace needs no image of its own: cgroup.img records where it is rooted. Mount,
  // network and user namespaces have dumpers of their own; the caller passes crshim's ids for them.
  if (int other = flags & ~(CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWCGROUP | CLONE_NEWTIME)) {
    std::string names;
    for (auto [f, n] : {std::pair{CLONE_NEWNS, "mount"}, {CLONE_NEWNET, "network"}, {CLONE_NEWUSER, "user"}})
      if (other & f) names += std::string(names.empty() ? "" : ", ") + n;
    return fail(make_error(Errc::internal, "dump", who, "the " + names + " namespace reached the UTS/IPC/time dumper"));
  }
  if (flags & CLONE_NEWTIME) CR_OK(dump_time_ns(pid, task.time_ns_id(), dir));
  if (flags & CLONE_NEWUTS) {
    auto v = CR_TRY(read_in_namespace(pid, "uts", CLONE_NEWUTS, kUtsFiles, 2));
    utsns_entry e;
    e.set_nodename(std::string(sys::trim(v[0])));
    e.set_domainname(std::string(sys::trim(v[1])));
    CR_OK(image::write_single(dir, "utsns-" + std::to_string(task.uts_ns_id()) + ".img", image::kind(image::Type::utsns), e));
  }
  if (flags & CLONE_NEWIPC) {
    auto v = CR_TRY(read_in_namespace(pid, "ipc", CLONE_NEWIPC, kIpcFiles, kIpcFileCount));
    CR_OK_IN(dump_ipc_objects(pid, task.ipc_ns_id(), dir, userns), "IPC namespace of " + who);
    ipc_var_entry e;
    for (auto part : sys::split(sys::trim(v[0]), '\t')) e.add_sem_ctls(uint32_t(number(std::string(sys::trim(part)))));
    e.set_msg_ctlmax(uint32_t(number(v[1])));
    e.set_msg_ctlmnb(uint32_t(number(v[2])));
    e.set_msg_ctlmni(uint32_t(number(v[3])));
    e.set_auto_msgmni(uint32_t(number(v[4])));
    e.set_shm_ctlmax(number(v[5]));
    e.set_shm_ctlall(number(v[6]));
    e.set_shm_ctlmni(uint32_t(number(v[7])));
    e.set_shm_rmid_forced(uint32_t(number(v[8])));
    e.set_mq_queues_max(uint32_t(number(v[9])));
    e.set_mq_msg_max(uint32_t(number(v[10])));
    e.set_mq_msgsize_max(uint32_t(number(v[11])));
    if (!v[12].empty()) e.set_mq_msg_default(uint32_t(number(v[12])));
    if (!v[13].empty()) e.set_mq_msgsize_default(uint32_t(number(v[13])));
    CR_OK(image::write_single(dir, "ipcns-var-" + std::to_string(task.ipc_ns_id()) + ".img", image::kind(image::Type::ipc_var), e));
  }
  return {};
}

Status restore_namespaces(kernel::Remote& r, int flags, const task_kobj_ids_entry& task, int dir,
                          const UserNs* userns) {
  if (flags & CLONE_NEWUTS) {
    std::string name = "utsns-" + std::to_string(task.uts_ns_id()) + ".img";
    auto rd = CR_TRY(image::Reader::open(dir, name, image::kind(image::Type::utsns)));
    utsns_entry e;
    CR_OK(rd.read_one(e));
    if (e.nodename().size() > 64 || e.domainname().size() > 64)
      return fail(make_error(Errc::corrupt_image, "validate", name, "host or domain name longer than 64 bytes"));
    uint64_t n = CR_TRY(r.put(e.nodename().data(), e.nodename().size()));
    CR_OK(r.call(SYS_sethostname, long(n), long(e.nodename().size())));
    uint64_t d = CR_TRY(r.put(e.domainname().data(), e.domainname().size()));
    CR_OK(r.call(SYS_setdomainname, long(d), long(e.domainname().size())));
  }
  if (flags & CLONE_NEWIPC) {
    std::string name = "ipcns-var-" + std::to_string(task.ipc_ns_id()) + ".img";
    auto rd = CR_TRY(image::Reader::open(dir, name, image::kind(image::Type::ipc_var)));
    ipc_var_entry e;
    CR_OK(rd.read_one(e));
    std::string sem;
    for (uint32_t v : e.sem_ctls()) sem += (sem.empty() ? "" : " ") + std::to_string(v);
    std::pair<const char*, std::string> values[] = {
        {"/proc/sys/kernel/sem", sem},
        {"/proc/sys/kernel/msgmax", std::to_string(e.msg_ctlmax())},
        {"/proc/sys/kernel/msgmnb", std::to_string(e.msg_ctlmnb())},
        {"/proc/sys/kernel/msgmni", std::to_string(e.msg_ctlmni())},
        {"/proc/sys/kernel/shmmax", std::to_string(e.shm_ctlmax())},
        {"/proc/sys/kernel/shmall", std::to_string(e.shm_ctlall())},
        {"/proc/sys/kernel/shmmni", std::to_string(e.shm_ctlmni())},
        {"/proc/sys/kernel/shm_rmid_forced", std::to_string(e.shm_rmid_forced())},
        {"/proc/sys/fs/mqueue/queues_max", std::to_string(e.mq_queues_max())},
        {"/proc/sys/fs/mqueue/msg_max", std::to_string(e.mq_msg_max())},
        {"/proc/sys/fs/mqueue/msgsize_max", std::to_string(e.mq_msgsize_max())},
    };
    for (const auto& [path, value] : values)
      if (!value.empty()) CR_OK(remote_write_file(r, path, value));
    if (e.has_mq_msg_default()) CR_OK(remote_write_file(r, "/proc/sys/fs/mqueue/msg_default", std::to_string(e.mq_msg_default())));
    if (e.has_mq_msgsize_default())
      CR_OK(remote_write_file(r, "/proc/sys/fs/mqueue/msgsize_default", std::to_string(e.mq_msgsize_default())));
    // The objects after the limits they must fit in.
    CR_OK_IN(restore_ipc_objects(r.pid(), task.ipc_ns_id(), dir, userns), "IPC namespace");
  }
  return {};
}

}  // namespace crshim::ns
