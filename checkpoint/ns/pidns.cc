#include "checkpoint/ns/pidns.h"

#include <linux/nsfs.h>
#include <sched.h>
#include <sys/ioctl.h>

#include "checkpoint/image/catalog.h"
#include "checkpoint/image/image.h"
#include "checkpoint/kernel/proc.h"
#include "pidns.pb.h"

namespace crshim::ns {

std::string pidns_file(uint32_t ns_id) { return "pidns-" + std::to_string(ns_id) + ".img"; }

Status dump_pidns(pid_t root, pid_t vpid, uint32_t ns_id, const std::vector<std::string>& external, int images_dir,
                  Logger& log) {
  uint64_t ino = CR_TRY(proc::ns_inode(root, "pid"));
  std::string prefix = "pid[" + std::to_string(ino) + "]:";
  for (const auto& e : external) {
    if (!e.starts_with(prefix) || e.size() == prefix.size()) continue;
    pidns_entry pe;
    pe.set_ext_key(e.substr(prefix.size()));
    LOG_INFO(log, "Pid namespace %llu of pid %d is external (key %s)", (unsigned long long)ino, root, pe.ext_key().c_str());
    return image::write_single(images_dir, pidns_file(ns_id), image::kind(image::Type::pidns), pe);
  }
  if (vpid == 1) return {};  // restored as a new namespace with the same pids
  return fail(make_error(Errc::unsupported, "dump", "pid " + std::to_string(root),
                         "the tree's root is pid " + std::to_string(vpid) +
                             ", not pid 1, of a pid namespace crshim does not own (inode " + std::to_string(ino) + ")")
                  .with_hint("dump it with --external pid[" + std::to_string(ino) +
                             "]:KEY and restore it into that namespace with --inherit-fd fd[N]:KEY"));
}

Result<int> external_pidns_fd(const restorer::ImageSet& set, const RestoreRequest& req, int images_dir, Logger& log) {
  uint32_t id = set.processes[0].ids.pid_ns_id();
  if (id == set.inventory.root_ids().pid_ns_id()) return -1;
  std::string name = pidns_file(id);
  auto rd = image::Reader::open(images_dir, name, image::kind(image::Type::pidns));
  if (!rd) {
    if (rd.error().err == ENOENT) return -1;  // the tree's own namespace: made anew
    return fail(rd.error());
  }
  pidns_entry e;
  CR_OK(rd->read_one(e));
  if (!e.has_ext_key()) return -1;
  for (const auto& in : req.inherit_fds) {
    if (in.key != e.ext_key()) continue;
    std::string what = "--inherit-fd fd[" + std::to_string(in.fd) + "]:" + in.key;
    int type = ::ioctl(in.fd, NS_GET_NSTYPE);
    if (type < 0) return fail(sys_error("ioctl(NS_GET_NSTYPE)", what).with_hint("open /proc/PID/ns/pid as that descriptor"));
    if (type != CLONE_NEWPID)
      return fail(make_error(Errc::invalid_argument, "restore", what, "the descriptor is not a pid namespace")
                      .with_hint("open /proc/PID/ns/pid as that descriptor"));
    LOG_INFO(log, "Pid namespace %u is external: the tree goes into %s", id, what.c_str());
    return in.fd;
  }
  return fail(make_error(Errc::not_found, "restore", name, "the pid namespace is external (key " + e.ext_key() + ")")
                  .with_hint("give it with --inherit-fd fd[N]:" + e.ext_key() + " (N an open fd of /proc/PID/ns/pid)"));
}

}  // namespace crshim::ns
