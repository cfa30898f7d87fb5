#include "checkpoint/net/netns.h"

#include <fcntl.h>
#include <linux/nsfs.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>

#include "checkpoint/base/sys.h"
#include "checkpoint/image/catalog.h"
#include "checkpoint/image/image.h"
#include "checkpoint/kernel/proc.h"
#include "netdev.pb.h"

namespace crshim::net {

std::string netns_file(uint32_t ns_id) { return "netns-" + std::to_string(ns_id) + ".img"; }

std::optional<std::string> external_key(const std::vector<std::string>& external, uint64_t ino) {
  std::string prefix = "net[" + std::to_string(ino) + "]:";
  for (const auto& e : external)
    if (e.starts_with(prefix) && e.size() > prefix.size()) return e.substr(prefix.size());
  return std::nullopt;
}

std::string preflight_problem(pid_t pid, const DumpRequest& req) {
  auto mine = proc::ns_inode(getpid(), "net");
  auto theirs = proc::ns_inode(pid, "net");
  if (!mine || !theirs || *mine == *theirs) return "";
  if (external_key(req.external, *theirs) || (req.empty_ns & CLONE_NEWNET)) return "";
  std::string problems = full_dump_problems(pid);
  if (problems.empty()) return "";
  return "it has its own net namespace (inode " + std::to_string(*theirs) + ") that cannot be dumped: " + problems +
         "; dump it with --external net[" + std::to_string(*theirs) + "]:KEY or --empty-ns net";
}

Result<bool> own_netns(pid_t pid) {
  uint64_t mine = CR_TRY(proc::ns_inode(getpid(), "net"));
  uint64_t theirs = CR_TRY(proc::ns_inode(pid, "net"));
  return mine != theirs;
}

Status dump_netns(const DumpRequest& req, const std::vector<std::pair<pid_t, task_kobj_ids_entry>>& ids,
                  const task_kobj_ids_entry& dumper, int images_dir, Logger& log) {
  if (ids.empty()) return {};
  uint32_t id = ids[0].second.net_ns_id();
  for (const auto& [pid, t] : ids)
    if (t.net_ns_id() != id)
      return fail(make_error(Errc::unsupported, "dump", "pid " + std::to_string(pid),
                             "the task is in another network namespace than the root; not supported yet"));
  if (id == dumper.net_ns_id()) return {};
  pid_t root = ids[0].first;
  uint64_t ino = CR_TRY(proc::ns_inode(root, "net"));
  if (auto key = external_key(req.external, ino)) {
    LOG_INFO(log, "Network namespace %llu of pid %d is external (key %s)", (unsigned long long)ino, root, key->c_str());
    netns_entry e;
    e.set_ext_key(*key);
    return image::write_single(images_dir, netns_file(id), image::kind(image::Type::netns), e);
  }
  if (req.empty_ns & CLONE_NEWNET) {
    LOG_INFO(log, "Network namespace %llu of pid %d is not dumped (--empty-ns net)", (unsigned long long)ino, root);
    return {};
  }
  return dump_full(root, id, dumper.net_ns_id(), images_dir, log)
      .map_error([&](Error e) {
        if (e.hint.empty()) e.with_hint("use --external net[" + std::to_string(ino) + "]:KEY or --empty-ns net");
        return e;
      });
}

Result<RestorePlan> plan_restore(const restorer::ImageSet& set, const RestoreRequest& req, int images_dir, Logger& log) {
  RestorePlan plan;
  uint32_t id = set.processes[0].ids.net_ns_id();
  if (id == set.inventory.root_ids().net_ns_id()) return plan;  // the tree used the dumper's: ours
  for (const auto& j : req.join_ns)
    if (j.ns == "net") {
      LOG_INFO(log, "Network namespace: joining %s (--join-ns)", j.target.c_str());
      return plan;
    }
  std::string name = netns_file(id);
  auto rd = image::Reader::open(images_dir, name, image::kind(image::Type::netns));
  if (!rd) {
    if (rd.error().err != ENOENT) return fail(rd.error());
    // Not dumped (--empty-ns net at dump): a fresh namespace with only lo, the rest is the runtime's.
    if (!(req.empty_ns & CLONE_NEWNET))
      LOG_INFO(log, "Network namespace %u was not dumped: the tree gets an empty one", id);
    plan.clone_flags = CLONE_NEWNET;
    plan.what = "a new network namespace";
    return plan;
  }
  netns_entry e;
  CR_OK(rd->read_one(e));
  if (!e.has_ext_key()) {
    LOG_INFO(log, "Network namespace %u was dumped: the tree gets a new one rebuilt from the images", id);
    plan.clone_flags = CLONE_NEWNET;
    plan.full = true;
    plan.ns_id = id;
    plan.what = "a new network namespace (dumped " + std::to_string(id) + ")";
    return plan;
  }
  for (const auto& in : req.inherit_fds) {
    if (in.key != e.ext_key()) continue;
    int type = ::ioctl(in.fd, NS_GET_NSTYPE);
    if (type != CLONE_NEWNET)
      return fail(make_error(Errc::invalid_argument, "restore", "--inherit-fd fd[" + std::to_string(in.fd) + "]:" + in.key,
                             "the descriptor is not a network namespace")
                      .with_hint("open /run/netns/NAME or /proc/PID/ns/net as that descriptor"));
    plan.join_fd = in.fd;
    plan.what = "network namespace " + in.key + " (fd " + std::to_string(in.fd) + ")";
    LOG_INFO(log, "Network namespace %u is external: joining %s", id, plan.what.c_str());
    return plan;
  }
  return fail(make_error(Errc::not_found, "restore", name, "the network namespace is external (key " + e.ext_key() + ")")
                  .with_hint("give it with --inherit-fd fd[N]:" + e.ext_key() + " (N an open fd of that namespace)"));
}

Status bring_up_loopback(pid_t pid) {
  std::string path = "/proc/" + std::to_string(pid) + "/ns/net";
  auto ns = CR_TRY(sys::open(path, O_RDONLY));
  pid_t child = ::fork();
  if (child < 0) return fail(sys_error("fork", "helper for " + path));
  if (child == 0) {
    // Raw calls only: this is a fork of a possibly multi-threaded process.
    if (::setns(ns.get(), CLONE_NEWNET) < 0) ::_exit(2);
    int sk = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (sk < 0) ::_exit(3);
    ifreq ifr{};
    memcpy(ifr.ifr_name, "lo", 3);
    if (::ioctl(sk, SIOCGIFFLAGS, &ifr) < 0) ::_exit(4);
    ifr.ifr_flags = short(ifr.ifr_flags | IFF_UP);
    if (::ioctl(sk, SIOCSIFFLAGS, &ifr) < 0) ::_exit(5);
    ::_exit(0);
  }
  int status = 0;
  while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    return fail(make_error(Errc::system, "bring up lo", path,
                           "the helper in the namespace failed (status " + std::to_string(status) + ")"));
  return {};
}

Result<NetGuard> restore_netns(const RestorePlan& plan, pid_t pid, const RestoreRequest& req, int images_dir,
                               Logger& log) {
  if (!(plan.clone_flags & CLONE_NEWNET)) return NetGuard{};
  if (plan.full) return restore_full(pid, plan.ns_id, req.external, images_dir, log);
  CR_OK(bring_up_loopback(pid));
  return NetGuard{};
}

}  // namespace crshim::net
