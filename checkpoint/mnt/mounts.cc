// Mount namespaces, pure part: mountinfo -> mnt_entry, external maps, restore plans.
#include "checkpoint/mnt/mounts.h"

#include <sys/mount.h>

#include <algorithm>
#include <deque>
#include <optional>

namespace crshim::mnt {

namespace {

std::vector<std::string_view> split_commas(std::string_view s) {
  std::vector<std::string_view> out;
  while (!s.empty()) {
    size_t c = s.find(',');
    out.push_back(s.substr(0, c));
    if (c == std::string_view::npos) break;
    s.remove_prefix(c + 1);
  }
  return out;
}

// `path` relative to `base` ("/" when equal), or nothing when path is not below base.
std::optional<std::string> below(const std::string& base, const std::string& path) {
  if (base == "/") return path;
  if (path == base) return std::string("/");
  if (path.size() > base.size() && path.compare(0, base.size(), base) == 0 && path[base.size()] == '/')
    return path.substr(base.size());
  return std::nullopt;
}

// An absolute path without ".." components: it cannot leave the directory it is joined to.
bool inside_path(const std::string& p) {
  if (p.empty() || p[0] != '/') return false;
  std::string_view rest(p);
  while (!rest.empty()) {
    size_t slash = rest.find('/');
    if (rest.substr(0, slash) == "..") return false;
    if (slash == std::string_view::npos) break;
    rest.remove_prefix(slash + 1);
  }
  return true;
}

std::string join(const std::string& dir, const std::string& rel) { return rel == "/" ? dir : dir + rel; }

std::string describe(const proc::MountInfo& m) {
  return "mount " + m.mount_point + " (" + m.fstype + " " + m.source + ", root " + m.root + ")";
}

struct FsName {
  const char* name;
  uint32_t code;
  bool mountable;  // we can make a fresh one at restore
};
constexpr FsName kFs[] = {
    {"proc", PROC, true},        {"sysfs", SYSFS, true},          {"devtmpfs", DEVTMPFS, false},
    {"binfmt_misc", BINFMT_MISC, false}, {"tmpfs", TMPFS, true}, {"devpts", DEVPTS, true},
    {"simfs", SIMFS, false},     {"pstore", PSTORE, false},       {"securityfs", SECURITYFS, false},
    {"fusectl", FUSECTL, false}, {"debugfs", DEBUGFS, false},     {"cgroup", CGROUP, true},
    {"aufs", AUFS, false},       {"mqueue", MQUEUE, true},        {"fuse", FUSE, false},
    {"overlay", OVERLAYFS, false}, {"autofs", AUTOFS, false},     {"tracefs", TRACEFS, false},
    {"cgroup2", CGROUP2, true},
};

}  // namespace

Result<std::map<std::string, std::string>> device_map(const std::vector<std::string>& external) {
  std::map<std::string, std::string> out;
  for (const auto& e : external) {
    if (e.rfind("dev[", 0) != 0) continue;
    size_t close = e.find(']');
    if (close == std::string::npos || close == 4 || close + 2 >= e.size() || e[close + 1] != ':')
      return fail(make_error(Errc::invalid_argument, "options", "--external " + e,
                             "expected dev[MAJOR/MINOR]:NAME at dump, dev[NAME]:DEVICE at restore"));
    out[e.substr(4, close - 4)] = e.substr(close + 2);
  }
  return out;
}

Result<std::map<std::string, std::string>> external_map(const std::vector<std::string>& external,
                                                        const std::vector<std::pair<std::string, std::string>>& pairs) {
  std::map<std::string, std::string> out;
  for (const auto& e : external) {
    if (e.rfind("mnt[", 0) != 0) continue;
    size_t close = e.find(']');
    if (close == std::string::npos)
      return fail(make_error(Errc::invalid_argument, "options", "--external " + e, "expected mnt[KEY]:VALUE"));
    std::string key = e.substr(4, close - 4);
    if (key.empty()) continue;  // mnt[]: auto-detection is not done; unnamed host mounts stay refused
    if (close + 1 >= e.size() || e[close + 1] != ':' || close + 2 >= e.size())
      return fail(make_error(Errc::invalid_argument, "options", "--external " + e, "expected mnt[KEY]:VALUE"));
    out[key] = e.substr(close + 2);
  }
  for (const auto& [k, v] : pairs) {
    if (k.empty() || v.empty())
      return fail(make_error(Errc::invalid_argument, "options", "ext-mount-map " + k + ":" + v, "expected KEY:VALUE"));
    out[k] = v;
  }
  return out;
}

uint32_t fstype_code(std::string_view fstype) {
  for (const auto& f : kFs)
    if (fstype == f.name) return f.code;
  if (fstype.rfind("fuse.", 0) == 0) return FUSE;
  return UNSUPPORTED;
}

std::string fstype_name(uint32_t code) {
  for (const auto& f : kFs)
    if (f.code == code && f.mountable) return f.name;
  return {};
}

uint32_t mount_flags(std::string_view options) {
  uint32_t flags = 0;
  bool atime_given = false;
  for (auto o : split_commas(options)) {
    if (o == "ro") flags |= MS_RDONLY;
    else if (o == "nosuid") flags |= MS_NOSUID;
    else if (o == "nodev") flags |= MS_NODEV;
    else if (o == "noexec") flags |= MS_NOEXEC;
    else if (o == "nosymfollow") flags |= MS_NOSYMFOLLOW;
    else if (o == "nodiratime") flags |= MS_NODIRATIME;
    else if (o == "noatime") flags |= MS_NOATIME, atime_given = true;
    else if (o == "relatime") flags |= MS_RELATIME, atime_given = true;
  }
  if (!atime_given) flags |= MS_STRICTATIME;  // mountinfo prints nothing for strictatime
  return flags;
}

std::pair<uint32_t, std::string> super_flags(std::string_view super_options) {
  uint32_t flags = 0;
  std::string rest;
  for (auto o : split_commas(super_options)) {
    if (o == "ro") flags |= MS_RDONLY;
    else if (o == "rw" || o.empty()) continue;
    else if (o == "sync") flags |= MS_SYNCHRONOUS;
    else if (o == "dirsync") flags |= MS_DIRSYNC;
    else if (o == "mand") flags |= MS_MANDLOCK;
    else if (o == "lazytime") flags |= MS_LAZYTIME;
    else rest += (rest.empty() ? "" : ",") + std::string(o);
  }
  return {flags, rest};
}

std::string tmpfs_file(uint32_t s_dev) { return "tmpfs-dev-" + std::to_string(s_dev) + ".tar.gz.img"; }

Table build_table(const std::vector<proc::MountInfo>& mounts, const std::map<std::string, std::string>& ext,
                  const std::map<std::string, std::string>& devices) {
  Table t;
  std::map<int, const proc::MountInfo*> by_id;
  for (const auto& m : mounts) by_id[m.mnt_id] = &m;
  const proc::MountInfo* root = nullptr;
  for (const auto& m : mounts) {
    if (by_id.count(m.parent_id) && m.mount_point != "/") continue;
    if (m.mount_point != "/") {
      t.problems.push_back(describe(m) + ": its parent mount is not visible from the task's root");
    } else if (root) {
      t.problems.push_back(describe(m) + ": several mounts are stacked on /");
    } else {
      root = &m;
    }
  }
  if (!root) {
    t.problems.push_back("no root mount in the task's mountinfo");
    return t;
  }
  std::set<int> shared_groups;
  for (const auto& m : mounts)
    if (m.shared) shared_groups.insert(m.shared);
  auto add = [&](const proc::MountInfo& m) {
    mnt_entry e;
    e.set_fstype(fstype_code(m.fstype));
    e.set_mnt_id(uint32_t(m.mnt_id));
    e.set_root_dev(kernel_dev(m.major, m.minor));
    e.set_parent_mnt_id(uint32_t(m.parent_id));
    e.set_flags(mount_flags(m.options));
    e.set_root(m.root);
    e.set_mountpoint(m.mount_point);
    e.set_source(m.source);
    auto [sb, opts] = super_flags(m.super_options);
    // Every devpts we make is a new instance; say so, as CRIU does.
    if (e.fstype() == DEVPTS && opts.find("newinstance") == std::string::npos)
      opts += opts.empty() ? "newinstance" : ",newinstance";
    e.set_options(opts);
    e.set_shared_id(uint32_t(m.shared));
    e.set_master_id(uint32_t(m.master));
    e.set_sb_flags(sb);
    return e;
  };
  t.entries.push_back(add(*root));
  for (const auto& m : mounts) {
    if (&m == root) continue;
    mnt_entry e = add(m);
    auto ext_it = ext.find(m.mount_point);
    if (ext_it != ext.end()) {
      e.set_ext_key(ext_it->second);
      t.entries.push_back(std::move(e));
      continue;
    }
    const std::string hint_key = " (mark it external: --external mnt[" + m.mount_point + "]:KEY)";
    if (m.master && !shared_groups.count(m.master))
      t.problems.push_back(describe(m) + ": a slave of peer group " + std::to_string(m.master) +
                           ", which has no mount in the tree" + hint_key);
    if (m.major == root->major && m.minor == root->minor) {
      if (!below(root->root, m.root))
        t.problems.push_back(describe(m) + ": a bind mount of a path outside the root file system" + hint_key);
    } else if (auto dev = devices.find(std::to_string(m.major) + "/" + std::to_string(m.minor)); dev != devices.end()) {
      e.set_fstype(AUTO);
      e.set_fsname(m.fstype);
      e.set_source("dev[" + dev->second + "]");
    } else if (fstype_name(e.fstype()).empty()) {
      std::string hint = "mark it external: --external mnt[" + m.mount_point + "]:KEY";
      // Major 0 is an anonymous superblock (tmpfs, overlay, ...): only real block devices can be named.
      if (m.major) hint += ", or its device: --external dev[" + std::to_string(m.major) + "/" + std::to_string(m.minor) + "]:NAME";
      t.problems.push_back(describe(m) + ": " + m.fstype + " mounts cannot be restored (" + hint + ")");
    } else if (e.fstype() == TMPFS) {
      uint32_t dev = e.root_dev();
      if (!t.tmpfs.count(dev)) {
        for (const auto& o : mounts)
          if (o.major == m.major && o.minor == m.minor && o.root == "/" && !ext.count(o.mount_point)) {
            t.tmpfs[dev] = o.mount_point;
            break;
          }
        if (!t.tmpfs.count(dev))
          t.problems.push_back(describe(m) + ": a bind mount of part of a tmpfs whose root is not mounted in the tree" +
                               hint_key);
      }
    }
    t.entries.push_back(std::move(e));
  }
  return t;
}

Result<Plan> plan_restore(const std::vector<mnt_entry>& entries, const std::string& root, const std::string& yard,
                          const std::map<std::string, std::string>& ext,
                          const std::map<std::string, std::string>& devices) {
  auto bad = [](const mnt_entry& e, const std::string& why) {
    return fail(make_error(Errc::corrupt_image, "restore", "mount " + e.mountpoint(), why));
  };
  std::map<uint32_t, const mnt_entry*> by_id;
  for (const auto& e : entries)
    if (!by_id.emplace(e.mnt_id(), &e).second) return bad(e, "mount id " + std::to_string(e.mnt_id()) + " appears twice");
  const mnt_entry* top = nullptr;
  std::map<uint32_t, std::vector<const mnt_entry*>> children;
  for (const auto& e : entries) {
    if (!inside_path(e.mountpoint())) return bad(e, "the mount point is not an absolute path below the root");
    if (by_id.count(e.parent_mnt_id()) && e.mnt_id() != e.parent_mnt_id()) {
      if (e.mountpoint() == "/") return bad(e, "a mount stacked on / cannot be restored");
      children[e.parent_mnt_id()].push_back(&e);
      continue;
    }
    if (top || e.mountpoint() != "/") return bad(e, "the image has more than one root mount");
    top = &e;
  }
  if (!top) return fail(make_error(Errc::corrupt_image, "restore", "mountpoints", "no root mount"));

  Plan plan;
  struct Group {
    std::string target;
    std::string root;
  };
  std::map<uint32_t, Group> groups;  // peer group id -> its first restored mount
  std::map<uint32_t, std::string> holders;  // s_dev -> yard dir with a fresh superblock
  std::vector<std::pair<std::string, const mnt_entry*>> remounts{{root, top}};
  if (top->shared_id()) {
    plan.steps.push_back({Step::Op::propagate, root, {}, {}, {}, MS_SHARED, {}, "/"});
    groups[top->shared_id()] = {root, top->root()};
  }
  // Parent-first; siblings (and mounts stacked on one mount point) in the order they were made.
  std::deque<const mnt_entry*> queue{top};
  size_t seen = 0;
  while (!queue.empty()) {
    const mnt_entry* parent = queue.front();
    queue.pop_front();
    auto kids = children[parent->mnt_id()];
    std::sort(kids.begin(), kids.end(), [](auto* a, auto* b) { return a->mnt_id() < b->mnt_id(); });
    for (const mnt_entry* m : kids) {
      seen++;
      queue.push_back(m);
      std::string target = root + m->mountpoint();
      std::string source;
      uint32_t from_group = 0;
      auto from = [&](uint32_t id) {
        auto g = groups.find(id);
        if (!id || g == groups.end()) return false;
        auto rel = below(g->second.root, m->root());
        if (!rel) return false;
        source = join(g->second.target, *rel);
        from_group = id;
        return true;
      };
      if (m->has_ext_key() && !m->ext_key().empty()) {
        auto it = ext.find(m->ext_key());
        if (it == ext.end())
          return fail(make_error(Errc::invalid_argument, "restore", "mount " + m->mountpoint(),
                                 "the image has it as the external mount '" + m->ext_key() + "', and no path was given for it")
                          .with_hint("give --external mnt[" + m->ext_key() + "]:HOST_PATH (or --ext-mount-map " +
                                     m->ext_key() + ":HOST_PATH)"));
        source = it->second;
      } else if (from(m->master_id()) || from(m->shared_id())) {
      } else if (m->root_dev() == top->root_dev()) {
        auto rel = below(top->root(), m->root());
        if (!rel) return bad(*m, "a bind mount of " + m->root() + ", outside the root file system");
        source = join(root, *rel);
      } else {
        std::string fs = fstype_name(m->fstype());
        std::string device = m->source();
        if (m->fstype() == AUTO && m->source().starts_with("dev[") && m->source().ends_with("]")) {
          // An external block device: its file system is mounted again from the device named for it.
          std::string name = m->source().substr(4, m->source().size() - 5);
          auto d = devices.find(name);
          if (d == devices.end())
            return fail(make_error(Errc::invalid_argument, "restore", "mount " + m->mountpoint(),
                                   "the image has it on the external device '" + name + "', and no device was given for it")
                            .with_hint("give --external dev[" + name + "]:DEVICE_PATH"));
          if (m->fsname().empty() || m->fsname().find_first_of(",/ ") != std::string::npos)
            return bad(*m, "an external device mount without a valid file system type");
          fs = m->fsname();
          device = d->second;
        }
        if (fs.empty()) return bad(*m, "its file system type (" + std::to_string(m->fstype()) + ") cannot be mounted");
        auto h = holders.find(m->root_dev());
        if (h == holders.end()) {
          std::string dir = yard + "/" + std::to_string(plan.yards.size());
          plan.yards.push_back(dir);
          // A read-only tmpfs (runc masks paths with one) is filled while writable, then sealed.
          const bool fill = m->fstype() == TMPFS;
          const bool seal = fill && (m->sb_flags() & MS_RDONLY);
          plan.steps.push_back({Step::Op::fresh, dir, device, fs, m->options(),
                                seal ? m->sb_flags() & ~uint32_t(MS_RDONLY) : m->sb_flags(), {}, m->mountpoint()});
          if (fill) {
            std::string tar = tmpfs_file(m->root_dev());
            plan.steps.push_back({Step::Op::extract, dir, {}, {}, {}, 0, tar, m->mountpoint()});
            plan.tar_images.insert(tar);
          }
          if (seal) plan.steps.push_back({Step::Op::seal, dir, {}, {}, {}, m->sb_flags(), {}, m->mountpoint()});
          h = holders.emplace(m->root_dev(), dir).first;
        }
        source = join(h->second, m->root());
      }
      plan.steps.push_back({Step::Op::bind, target, source, {}, {}, 0, {}, m->mountpoint()});
      // A pty file of a devpts (runc binds the console slave on /dev/console) does not exist in the
      // fresh devpts: the restored pty is bound in its place.
      if (m->fstype() == DEVPTS && m->root().size() > 1 && m->root().size() < 8 &&
          m->root().find_first_not_of("0123456789", 1) == std::string::npos)
        plan.steps.back().pts_index = std::stoi(m->root().substr(1));
      bool slave = from_group && from_group == m->master_id();
      if (slave) plan.steps.push_back({Step::Op::propagate, target, {}, {}, {}, MS_SLAVE, {}, m->mountpoint()});
      if (m->shared_id() && (slave || from_group != m->shared_id())) {
        plan.steps.push_back({Step::Op::propagate, target, {}, {}, {}, MS_SHARED, {}, m->mountpoint()});
        groups.try_emplace(m->shared_id(), Group{target, m->root()});
      }
      remounts.push_back({target, m});
    }
  }
  if (seen + 1 != entries.size())
    return fail(make_error(Errc::corrupt_image, "restore", "mountpoints", "some mounts are not below the root mount"));
  // Per-mount flags last: a read-only mount must not stop mount points below it from being made.
  for (const auto& [target, m] : remounts)
    plan.steps.push_back({Step::Op::remount, target, {}, {}, {}, m->flags(), {}, m->mountpoint()});
  for (const auto& dir : plan.yards) plan.steps.push_back({Step::Op::detach, dir, {}, {}, {}, 0, {}, "(yard)"});
  return plan;
}

}  // namespace crshim::mnt
