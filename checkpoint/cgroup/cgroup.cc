#include "checkpoint/cgroup/cgroup.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <set>
#include <thread>

#include "checkpoint/base/sys.h"
#include "checkpoint/image/catalog.h"
#include "checkpoint/image/image.h"
#include "checkpoint/kernel/proc.h"

namespace crshim::cgroup {

namespace {

// Super options of a v1 cgroup mount that are flags, not controllers.
bool is_mount_flag(std::string_view opt) {
  static const char* const kFlags[] = {"rw", "ro", "noprefix", "xattr", "clone_children", "cpuset_v2_mode",
                                       "favordynmods", "sane_behavior", "nsdelegate"};
  for (const char* f : kFlags)
    if (opt == f) return true;
  return opt.find('=') != std::string_view::npos && !opt.starts_with("name=");
}

std::vector<std::string> sorted(std::vector<std::string> v) {
  std::sort(v.begin(), v.end());
  return v;
}

bool member_of(const cg_controller_entry& c, const std::string& name) {
  std::vector<std::string> cn(c.cnames().begin(), c.cnames().end());
  if (std::find(cn.begin(), cn.end(), name) != cn.end()) return true;
  return sorted(cn) == controllers_of(name);
}

// `path` (absolute, "/a/b") as a directory tree node below `node`, one level per component.
cgroup_dir_entry* child_named(cgroup_dir_entry& node, std::string_view name) {
  for (auto& c : *node.mutable_children())
    if (c.dir_name() == name) return &c;
  auto* c = node.add_children();
  c->set_dir_name(std::string(name));
  return c;
}

void set_perms(cgroup_dir_entry& d, const std::string& mount, const std::string& path) {
  if (mount.empty()) return;
  struct stat st;
  if (::stat((mount + path).c_str(), &st) < 0) return;
  auto* p = d.mutable_dir_perms();
  p->set_mode(st.st_mode);
  p->set_uid(st.st_uid);
  p->set_gid(st.st_gid);
}

bool below(const std::string& path, const std::string& top) {
  if (top == "/") return true;
  return path == top || (path.starts_with(top) && path[top.size()] == '/');
}

}  // namespace

Result<Set> parse_proc_cgroup(std::string_view text, std::string_view source) {
  Set out;
  for (auto line : sys::split(text, '\n')) {
    auto c1 = line.find(':');
    auto c2 = c1 == std::string_view::npos ? c1 : line.find(':', c1 + 1);
    if (c2 == std::string_view::npos || c2 + 1 >= line.size() || line[c2 + 1] != '/')
      return fail(make_error(Errc::corrupt_image, "parse", std::string(source),
                             "bad cgroup line '" + std::string(line) + "'"));
    Member m{std::string(line.substr(c1 + 1, c2 - c1 - 1)), std::string(line.substr(c2 + 1))};
    for (const auto& o : out)
      if (o.name == m.name)
        return fail(make_error(Errc::corrupt_image, "parse", std::string(source), "hierarchy '" + m.name + "' twice"));
    out.push_back(std::move(m));
  }
  std::sort(out.begin(), out.end());
  return out;
}

Result<Set> read_task_cgroups(pid_t pid) {
  std::string path = "/proc/" + std::to_string(pid) + "/cgroup";
  auto text = CR_TRY(sys::read_file(path));
  return parse_proc_cgroup(text, path);
}

std::vector<std::string> controllers_of(std::string_view name) {
  if (name.empty()) return {""};
  std::vector<std::string> out;
  for (auto part : sys::split(name, ',')) out.emplace_back(part);
  return sorted(std::move(out));
}

Result<std::vector<Hierarchy>> parse_hierarchies(std::string_view mountinfo) {
  auto mounts = CR_TRY(proc::parse_mountinfo(mountinfo));
  std::vector<Hierarchy> out;
  for (const auto& m : mounts) {
    if (m.root != "/" || (m.fstype != "cgroup" && m.fstype != "cgroup2")) continue;
    Hierarchy h;
    h.mount_point = m.mount_point;
    if (m.fstype == "cgroup2") {
      h.controllers = {""};
    } else {
      for (auto opt : sys::split(m.super_options, ','))
        if (!is_mount_flag(opt)) h.controllers.emplace_back(opt);
      h.controllers = sorted(std::move(h.controllers));
    }
    bool seen = false;
    for (const auto& o : out) seen |= o.controllers == h.controllers;
    if (!seen && !h.controllers.empty()) out.push_back(std::move(h));
  }
  return out;
}

std::string find_mount(const std::vector<Hierarchy>& all, std::string_view name) {
  auto want = controllers_of(name);
  for (const auto& h : all)
    if (h.controllers == want) return h.mount_point;
  return "";
}

std::optional<std::string> remap_path(std::string_view path, std::string_view from, std::string_view to) {
  std::string top = "/" + std::string(from);
  std::string p(path);
  if (!below(p, top)) return std::nullopt;
  std::string rest = top == "/" ? (p == "/" ? "" : p) : p.substr(top.size());
  std::string base(to);
  while (base.size() > 1 && base.back() == '/') base.pop_back();
  if (base == "/") return rest.empty() ? "/" : rest;
  return base + rest;
}

void apply_roots(cgroup_entry& entry, const std::vector<CgroupRootRemap>& roots) {
  if (roots.empty()) return;
  const std::string* global = nullptr;
  for (const auto& r : roots)
    if (r.controller.empty()) global = &r.path;
  // Against the image's own paths: a path already rewritten is never rewritten again.
  const cgroup_entry original = entry;
  for (const auto& c : original.controllers()) {
    const std::string* to = global;
    for (const auto& r : roots)
      if (!r.controller.empty() && member_of(c, r.controller)) to = &r.path;
    if (!to) continue;
    for (int s = 0; s < original.sets_size(); s++)
      for (int m = 0; m < original.sets(s).ctls_size(); m++) {
        const auto& mem = original.sets(s).ctls(m);
        if (!member_of(c, mem.name())) continue;
        for (const auto& d : c.dirs()) {
          auto mapped = remap_path(mem.path(), d.dir_name(), *to);
          if (!mapped) continue;
          auto* out = entry.mutable_sets(s)->mutable_ctls(m);
          out->set_path(*mapped);
          if (mem.has_cgns_prefix()) {
            // The namespace root moves along; one above the remapped directory becomes its new top.
            std::string ns_root = mem.cgns_prefix() ? mem.path().substr(0, mem.cgns_prefix()) : "/";
            auto root = remap_path(ns_root, d.dir_name(), *to);
            if (!root) root = remap_path("/" + d.dir_name(), d.dir_name(), *to);
            out->set_cgns_prefix(*root == "/" ? 0 : uint32_t(root->size()));
          }
          break;
        }
      }
  }
}

// ---- dump ----------------------------------------------------------------------------------------

Status Collector::init() {
  auto mi = CR_TRY(sys::read_file("/proc/self/mountinfo"));
  hierarchies_ = CR_TRY(parse_hierarchies(mi));
  sets_.push_back(CR_TRY(read_task_cgroups(getpid())));
  used_.push_back(false);
  return {};
}

namespace {

// /proc/PID/cgroup as the task's own cgroup namespace shows it, read by a thread that joins that
// namespace (it is per thread: crshim itself stays where it is).
Result<Set> read_cgroups_in_own_ns(pid_t pid) {
  std::string ns = "/proc/" + std::to_string(pid) + "/ns/cgroup";
  UniqueFd fd = CR_TRY(sys::open(ns, O_RDONLY));
  Result<Set> out = Set{};
  std::thread reader([&] {
    if (::setns(fd.get(), CLONE_NEWCGROUP) < 0) out = fail(sys_error("setns", ns));
    else out = read_task_cgroups(pid);
  });
  reader.join();
  return out;
}

Result<bool> own_cgroup_ns(pid_t pid) {
  auto theirs = CR_TRY(sys::read_link("/proc/" + std::to_string(pid) + "/ns/cgroup"));
  auto ours = CR_TRY(sys::read_link("/proc/self/ns/cgroup"));
  return theirs != ours;
}

// Records in `s` where `pid`'s cgroup namespace is rooted: each path seen from inside the namespace
// is the tail of the path seen from here.
Status record_ns_roots(pid_t pid, Set& s) {
  Set inside = CR_TRY(read_cgroups_in_own_ns(pid));
  std::string who = "pid " + std::to_string(pid);
  for (auto& m : s) {
    auto in = std::find_if(inside.begin(), inside.end(), [&](const Member& i) { return i.name == m.name; });
    if (in == inside.end()) continue;
    std::string tail = in->path == "/" ? "" : in->path;
    if (tail.starts_with("/..") || !m.path.ends_with(tail) || (m.path.size() > tail.size() && !tail.empty() &&
                                                                m.path[m.path.size() - tail.size()] != '/'))
      return fail(make_error(Errc::unsupported, "dump", who,
                             "cgroup '" + m.path + "' (" + (m.name.empty() ? "v2" : m.name) + ") lies outside the task's cgroup namespace root '" +
                                 in->path + "'"));
    size_t prefix = m.path.size() - tail.size();
    m.ns_prefix = m.path == "/" || prefix <= 1 ? 0 : uint32_t(prefix);
  }
  return {};
}

}  // namespace

Result<uint32_t> Collector::add_task(pid_t pid) {
  Set s = CR_TRY(read_task_cgroups(pid));
  if (CR_TRY(own_cgroup_ns(pid))) CR_OK(record_ns_roots(pid, s));
  for (size_t i = 0; i < sets_.size(); i++)
    if (sets_[i] == s) {
      used_[i] = true;
      return uint32_t(i + 1);
    }
  sets_.push_back(std::move(s));
  used_.push_back(true);
  return uint32_t(sets_.size());
}

cgroup_entry Collector::entry(uint32_t root_set) const {
  cgroup_entry e;
  std::map<std::string, std::set<std::string>> paths;  // hierarchy -> every path a task uses
  for (size_t i = 0; i < sets_.size(); i++) {
    if (!used_[i]) continue;
    auto* se = e.add_sets();
    se->set_id(uint32_t(i + 1));
    for (const auto& m : sets_[i]) {
      auto* me = se->add_ctls();
      me->set_name(m.name);
      me->set_path(m.path);
      if (m.ns_prefix) me->set_cgns_prefix(m.ns_prefix);
      paths[m.name].insert(m.path);
    }
  }
  const Set* root = root_set >= 1 && root_set <= sets_.size() ? &sets_[root_set - 1] : nullptr;
  for (const auto& [name, all] : paths) {
    auto* c = e.add_controllers();
    for (const auto& n : controllers_of(name)) c->add_cnames(n);
    std::string mount = find_mount(hierarchies_, name);
    // Top directories: the root task's, then every path outside it not below another top.
    std::vector<std::string> tops;
    if (root)
      for (const auto& m : *root)
        if (m.name == name) tops.push_back(m.path);
    for (const auto& p : all) {
      bool covered = false;
      for (const auto& t : tops) covered |= below(p, t);
      if (!covered) tops.push_back(p);
    }
    for (const auto& t : tops) {
      auto* d = c->add_dirs();
      d->set_dir_name(t.substr(1));
      set_perms(*d, mount, t);
      for (const auto& p : all) {
        if (p == t || !below(p, t)) continue;
        cgroup_dir_entry* node = d;
        std::string at = t == "/" ? "" : t;
        for (auto part : sys::split(std::string_view(p).substr(at.size()), '/')) {
          at += "/" + std::string(part);
          node = child_named(*node, part);
          if (!node->has_dir_perms()) set_perms(*node, mount, at);
        }
      }
    }
  }
  return e;
}

Status Collector::write(int images_dir, uint32_t root_set) const {
  return image::write_single(images_dir, kCgroupFile, image::kind(image::Type::cgroup), entry(root_set));
}

// ---- freezer --------------------------------------------------------------------------------------

namespace {

// The freezer's state file and its frozen/thawed values, v1 or v2.
struct FreezerFile {
  std::string path;
  const char* frozen;
  const char* thawed;
};

std::optional<FreezerFile> freezer_file(const std::string& dir) {
  if (::access((dir + "/freezer.state").c_str(), F_OK) == 0) return FreezerFile{dir + "/freezer.state", "FROZEN", "THAWED"};
  if (::access((dir + "/cgroup.freeze").c_str(), F_OK) == 0) return FreezerFile{dir + "/cgroup.freeze", "1", "0"};
  return std::nullopt;
}

// Writes `want` and waits (up to 5 s) until the state file reads it back: v1 passes through FREEZING.
Status set_freezer(const FreezerFile& f, const char* want) {
  CR_OK(sys::write_file(f.path, want));
  std::string_view w(want);
  for (int i = 0; i < 500; i++) {
    auto now = CR_TRY(sys::read_file(f.path));
    if (sys::trim(now) == w) return {};
    ::usleep(10000);
  }
  return fail(make_error(Errc::timeout, "freeze", f.path, "the freezer did not reach " + std::string(want)));
}

}  // namespace

Result<PausedFreezer> PausedFreezer::thaw_if_frozen(const std::string& path, Logger& log) {
  PausedFreezer p(log);
  if (path.empty()) return p;
  auto f = freezer_file(path);
  if (!f)
    return fail(make_error(Errc::not_found, "dump", "--freeze-cgroup " + path, "no freezer.state or cgroup.freeze there")
                    .with_hint("name the tree's freezer cgroup directory"));
  auto state = CR_TRY(sys::read_file(f->path));
  if (sys::trim(state) != f->frozen) return p;
  // ptrace cannot stop a frozen task: thawed for the moment it takes to seize the tree.
  LOG_INFO(log, "%s is frozen: thawing it for the dump, frozen again if the tasks run on", path.c_str());
  CR_OK(set_freezer(*f, f->thawed));
  p.state_file_ = f->path;
  return p;
}

PausedFreezer::~PausedFreezer() {
  if (state_file_.empty()) return;
  auto f = freezer_file(state_file_.substr(0, state_file_.rfind('/')));
  if (Status st = f ? set_freezer(*f, f->frozen) : Status{}; !st && log_)
    LOG_ERROR(*log_, "Freezing %s again: %s", state_file_.c_str(), st.error().render().c_str());
}

// ---- restore -------------------------------------------------------------------------------------

Placement::~Placement() {
  for (auto it = created_.rbegin(); it != created_.rend(); ++it)
    if (::rmdir(it->c_str()) < 0 && log_)
      LOG_WARN(*log_, "Can't remove cgroup %s made for the failed restore: %s", it->c_str(), strerror(errno));
}

Result<Placement> Placement::prepare(int images_dir, uint32_t root_cg_set, CgroupsMode mode,
                                     const std::vector<CgroupRootRemap>& roots, Logger& log) {
  Placement p;
  p.log_ = &log;
  if (mode == CgroupsMode::ignore || mode == CgroupsMode::none) {
    LOG_INFO(log, "Cgroups: mode %s, tasks stay in crshim's cgroups", mode == CgroupsMode::ignore ? "ignore" : "none");
    return p;
  }
  if (mode != CgroupsMode::soft)
    LOG_INFO(log, "Cgroups: properties are not restored; mode taken as soft (missing cgroups are made)");
  auto rd = image::Reader::open(images_dir, kCgroupFile, image::kind(image::Type::cgroup));
  if (!rd) {
    if (rd.error().err == ENOENT) return p;  // dumped without cgroups: tasks stay in ours
    return fail(rd.error());
  }
  cgroup_entry e;
  bool got = CR_TRY(rd->read(e));
  if (!got) return p;
  for (const auto& s : e.sets()) {
    if (s.id() == 0 || p.sets_.count(s.id()))
      return fail(make_error(Errc::corrupt_image, "validate", kCgroupFile, "bad or repeated set id " + std::to_string(s.id())));
    for (const auto& m : s.ctls())
      if (m.path().empty() || m.path()[0] != '/' || m.path().find("/../") != std::string::npos ||
          m.path().ends_with("/.."))
        return fail(make_error(Errc::corrupt_image, "validate", kCgroupFile, "bad cgroup path '" + m.path() + "'"));
      else if (m.cgns_prefix() > m.path().size())
        return fail(make_error(Errc::corrupt_image, "validate", kCgroupFile,
                               "cgroup namespace prefix " + std::to_string(m.cgns_prefix()) + " is longer than '" +
                                   m.path() + "'"));
  }
  apply_roots(e, roots);
  for (const auto& s : e.sets()) p.sets_[s.id()] = s;
  auto mi = CR_TRY(sys::read_file("/proc/self/mountinfo"));
  p.hierarchies_ = CR_TRY(parse_hierarchies(mi));
  p.root_cg_set_ = root_cg_set;
  p.active_ = true;
  return p;
}

std::vector<std::string> Placement::paths_of(uint32_t cg_set) const {
  std::vector<std::string> out;
  auto it = sets_.find(cg_set);
  if (it == sets_.end()) return out;
  for (const auto& m : it->second.ctls()) out.push_back(m.name() + ":" + m.path());
  return out;
}

Result<std::string> Placement::dir_for(const cg_member_entry& m) {
  std::string mount = find_mount(hierarchies_, m.name());
  if (mount.empty())
    return fail(make_error(Errc::not_found, "restore", "cgroup hierarchy '" + m.name() + "'", "not mounted on this host")
                    .with_hint("mount it, or restore with --manage-cgroups=ignore"));
  std::string at = mount;
  for (auto part : sys::split(m.path(), '/')) {
    std::string parent = at;
    at += "/" + std::string(part);
    if (::mkdir(at.c_str(), 0755) == 0) {
      created_.push_back(at);
      LOG_INFO(*log_, "Cgroups: made %s", at.c_str());
      // A new cpuset has no cpus or mems: it gets its parent's, as clone_children would give it.
      for (const auto* f : {"cpuset.cpus", "cpuset.mems"}) {
        auto v = sys::read_file(parent + "/" + f);
        if (v) (void)sys::write_file(at + "/" + f, *v);
      }
    } else if (errno != EEXIST) {
      return fail(sys_error("mkdir", at));
    }
  }
  return at;
}

Status Placement::move(pid_t pid, const cg_set_entry& set) {
  std::string who = std::to_string(pid);
  for (const auto& m : set.ctls()) {
    std::string dir = CR_TRY(dir_for(m));
    std::string procs = dir + "/cgroup.procs";
    auto fd = CR_TRY(sys::open(procs, O_WRONLY));
    if (Status st = sys::write_all(fd.get(), who, procs); !st)
      return fail(st.error().within("move pid " + who + " into its cgroup"));
    LOG_DEBUG(*log_, "Cgroups: pid %d -> %s", pid, dir.c_str());
  }
  return {};
}

Status Placement::place(pid_t real_pid, uint32_t vpid, uint32_t vppid, uint32_t cg_set) {
  if (!active_) return {};
  uint32_t current = root_cg_set_;
  if (vppid) {
    auto it = effective_.find(vppid);
    if (it != effective_.end()) current = it->second;
  }
  uint32_t want = cg_set ? cg_set : current;
  effective_[vpid] = want;
  // Inherited from its parent (the root: crshim's own set), unless it was moved to a namespace root.
  if (want == current && !displaced_.erase(vpid)) return {};
  auto it = sets_.find(want);
  if (it == sets_.end())
    return fail(make_error(Errc::corrupt_image, "restore", kCgroupFile,
                           "no cgroup set " + std::to_string(want) + " for pid " + std::to_string(vpid)));
  LOG_INFO(*log_, "Cgroups: moving pid %u (real %d) into set %u", vpid, real_pid, want);
  return move(real_pid, it->second);
}

Status Placement::enter_ns_root(pid_t real_pid, uint32_t vpid, uint32_t cg_set) {
  if (!active_) return {};
  auto it = sets_.find(cg_set ? cg_set : root_cg_set_);
  if (it == sets_.end()) return {};  // no set recorded: the namespace is rooted where crshim is
  cg_set_entry roots = it->second;
  for (auto& m : *roots.mutable_ctls()) m.set_path(m.cgns_prefix() ? m.path().substr(0, m.cgns_prefix()) : "/");
  LOG_INFO(*log_, "Cgroups: pid %u (real %d) to its cgroup namespace root", vpid, real_pid);
  displaced_.insert(vpid);
  return move(real_pid, roots);
}

}  // namespace crshim::cgroup
