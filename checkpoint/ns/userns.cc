#include "checkpoint/ns/userns.h"

#include <fcntl.h>
#include <linux/nsfs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include "checkpoint/base/sys.h"
#include "checkpoint/image/catalog.h"
#include "checkpoint/image/image.h"

namespace crshim::ns {

namespace {

constexpr uint32_t kOverflowId = 65534;
constexpr int kMaxExtents = 340;  // the kernel's limit per map

std::string image_name(uint32_t id) { return "userns-" + std::to_string(id) + ".img"; }

Status parse_map(const std::string& text, const std::string& path, google::protobuf::RepeatedPtrField<uid_gid_extent>& out) {
  for (auto line : sys::split(text, '\n')) {
    if (sys::trim(line).empty()) continue;
    unsigned first = 0, lower = 0, count = 0;
    if (std::sscanf(std::string(line).c_str(), "%u %u %u", &first, &lower, &count) != 3)
      return fail(make_error(Errc::internal, "parse", path, "unexpected line '" + std::string(line) + "'"));
    auto* e = out.Add();
    e->set_first(first);
    e->set_lower_first(lower);
    e->set_count(count);
  }
  return {};
}

Status validate_map(const google::protobuf::RepeatedPtrField<uid_gid_extent>& map, const std::string& what) {
  if (map.size() > kMaxExtents) return fail(make_error(Errc::corrupt_image, "validate", what, "more than 340 extents"));
  for (const auto& e : map)
    if (e.count() == 0 || uint64_t(e.first()) + e.count() > (1ull << 32) || uint64_t(e.lower_first()) + e.count() > (1ull << 32))
      return fail(make_error(Errc::corrupt_image, "validate", what, "an extent is empty or runs past 2^32"));
  return {};
}

Result<uint64_t> ns_inode(int fd, const std::string& what) {
  struct stat st{};
  if (::fstat(fd, &st) < 0) return fail(sys_error("fstat", what));
  return uint64_t(st.st_ino);
}

}  // namespace

bool in_other_userns(pid_t pid) {
  auto mine = sys::read_link("/proc/self/ns/user");
  auto theirs = sys::read_link("/proc/" + std::to_string(pid) + "/ns/user");
  return mine && theirs && *mine != *theirs;
}

Result<UserNs> UserNs::of_task(pid_t pid) {
  std::string dir = "/proc/" + std::to_string(pid);
  // Ids are translated through one level of maps: a namespace nested deeper is refused.
  auto own = CR_TRY(sys::open("/proc/self/ns/user", O_RDONLY));
  auto task_ns = CR_TRY(sys::open(dir + "/ns/user", O_RDONLY));
  UniqueFd parent(::ioctl(task_ns.get(), NS_GET_PARENT));
  if (!parent) return fail(sys_error("ioctl(NS_GET_PARENT)", dir + "/ns/user"));
  if (CR_TRY(ns_inode(parent.get(), "parent user namespace")) != CR_TRY(ns_inode(own.get(), "crshim's user namespace")))
    return fail(make_error(Errc::unsupported, "dump", "pid " + std::to_string(pid),
                           "its user namespace is nested in another one than crshim's; only one level is supported")
                    .with_hint("run crshim in the parent of the tree's user namespace"));
  UserNs ns;
  CR_OK(parse_map(CR_TRY(sys::read_file(dir + "/uid_map")), dir + "/uid_map", *ns.entry_.mutable_uid_map()));
  CR_OK(parse_map(CR_TRY(sys::read_file(dir + "/gid_map")), dir + "/gid_map", *ns.entry_.mutable_gid_map()));
  return ns;
}

Result<UserNs> UserNs::of_ns_fd(int ns_fd, const std::string& what) {
  // A namespace has no maps of its own in /proc: a child of ours joins it and shows them there.
  int sync[2];
  if (::pipe2(sync, O_CLOEXEC) < 0) return fail(sys_error("pipe2", what));
  UniqueFd rd(sync[0]), wr(sync[1]);
  pid_t child = ::fork();
  if (child < 0) return fail(sys_error("fork", what));
  if (child == 0) {
    // Only system calls here: the parent may have other threads.
    char ok = ::setns(ns_fd, CLONE_NEWUSER) == 0 ? '1' : '0';
    ::close(sync[0]);
    if (::write(sync[1], &ok, 1) != 1) ::_exit(1);
    ::close(sync[1]);
    ::pause();  // until the parent has read the maps and kills it
    ::_exit(0);
  }
  wr.reset();
  char ok = 0;
  ssize_t got = ::read(rd.get(), &ok, 1);
  int saved = errno;
  UserNs ns;
  auto read_maps = [&]() -> Status {
    if (got != 1 || ok != '1') {
      errno = got < 0 ? saved : (got == 1 ? EPERM : EIO);
      return fail(sys_error("setns(CLONE_NEWUSER)", what).with_hint("it must be a user namespace crshim may enter"));
    }
    std::string dir = "/proc/" + std::to_string(child);
    CR_OK(parse_map(CR_TRY(sys::read_file(dir + "/uid_map")), dir + "/uid_map", *ns.entry_.mutable_uid_map()));
    return parse_map(CR_TRY(sys::read_file(dir + "/gid_map")), dir + "/gid_map", *ns.entry_.mutable_gid_map());
  };
  Status st = read_maps();
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  if (!st) return fail(st.error());
  return ns;
}

Result<UserNs> UserNs::load(int images_dir, uint32_t id) {
  std::string name = image_name(id);
  auto rd = CR_TRY(image::Reader::open(images_dir, name, image::kind(image::Type::userns)));
  UserNs ns;
  CR_OK(rd.read_one(ns.entry_));
  CR_OK(validate_map(ns.entry_.uid_map(), name + " uid_map"));
  CR_OK(validate_map(ns.entry_.gid_map(), name + " gid_map"));
  return ns;
}

Status UserNs::save(int images_dir, uint32_t id) const {
  return image::write_single(images_dir, image_name(id), image::kind(image::Type::userns), entry_);
}

Status UserNs::apply(pid_t pid) const {
  auto write_map = [&](const google::protobuf::RepeatedPtrField<uid_gid_extent>& map, const char* file) -> Status {
    if (map.empty()) return {};
    std::string text;
    for (const auto& e : map)
      text += std::to_string(e.first()) + " " + std::to_string(e.lower_first()) + " " + std::to_string(e.count()) + "\n";
    std::string path = "/proc/" + std::to_string(pid) + "/" + file;
    auto fd = CR_TRY(sys::open(path, O_WRONLY));
    // The kernel takes a map in one write only.
    if (::write(fd.get(), text.data(), text.size()) != ssize_t(text.size()))
      return fail(sys_error("write", path).with_hint("the ids of the map must exist in crshim's user namespace"));
    return {};
  };
  CR_OK(write_map(entry_.uid_map(), "uid_map"));
  return write_map(entry_.gid_map(), "gid_map");
}

Status UserNs::become_root(kernel::Remote& r) const {
  auto maps_zero = [](const google::protobuf::RepeatedPtrField<uid_gid_extent>& map) {
    for (const auto& e : map)
      if (e.first() == 0) return true;
    return false;
  };
  if (!maps_zero(entry_.uid_map()) || !maps_zero(entry_.gid_map())) return {};
  return become(r, 0, 0);
}

Status become(kernel::Remote& r, uint32_t uid, uint32_t gid) {
  CR_OK(r.call(SYS_setgroups, 0, 0));
  CR_OK_IN(r.call(SYS_setresgid, gid, gid, gid), "gid " + std::to_string(gid));
  CR_OK_IN(r.call(SYS_setresuid, uid, uid, uid), "uid " + std::to_string(uid));
  return {};
}

uint32_t UserNs::inside(const google::protobuf::RepeatedPtrField<uid_gid_extent>& map, uint32_t outside) {
  for (const auto& e : map)
    if (outside >= e.lower_first() && uint64_t(outside) < uint64_t(e.lower_first()) + e.count())
      return e.first() + (outside - e.lower_first());
  return kOverflowId;
}

std::optional<uint32_t> UserNs::outside(const google::protobuf::RepeatedPtrField<uid_gid_extent>& map, uint32_t inside) {
  for (const auto& e : map)
    if (inside >= e.first() && uint64_t(inside) < uint64_t(e.first()) + e.count())
      return e.lower_first() + (inside - e.first());
  return std::nullopt;
}

Owner owner_in_image(const UserNs* ns, Owner host) {
  if (!ns) return host;
  return {ns->uid_inside(host.uid), ns->gid_inside(host.gid)};
}

Result<Owner> owner_on_host(const UserNs* ns, Owner image, const std::string& what) {
  if (!ns) return image;
  auto uid = ns->uid_outside(image.uid);
  auto gid = ns->gid_outside(image.gid);
  if (uid && gid) return Owner{*uid, *gid};
  std::string id = uid ? "gid " + std::to_string(image.gid) : "uid " + std::to_string(image.uid);
  return fail(make_error(Errc::conflict, "restore", what, "owner " + id + " is not mapped in the user namespace restored into")
                  .with_hint("restore into a user namespace whose uid_map and gid_map cover the ids of the images"));
}

void UserNs::creds_inside(creds_entry& c) const {
  c.set_uid(uid_inside(c.uid()));
  c.set_euid(uid_inside(c.euid()));
  c.set_suid(uid_inside(c.suid()));
  c.set_fsuid(uid_inside(c.fsuid()));
  c.set_gid(gid_inside(c.gid()));
  c.set_egid(gid_inside(c.egid()));
  c.set_sgid(gid_inside(c.sgid()));
  c.set_fsgid(gid_inside(c.fsgid()));
  for (int i = 0; i < c.groups_size(); i++) c.set_groups(i, gid_inside(c.groups(i)));
}

}  // namespace crshim::ns
