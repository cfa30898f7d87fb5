#include "shim/options.h"

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <utility>

#include "checkpoint/base/sys.h"

namespace crshim {
namespace {

constexpr const char* kOp = "parse options";

// How an option takes its value, as getopt_long understands it.
enum class Arg { none, required, optional };

struct OptionSpec;

// One occurrence of an option, from the command line or a config file line.
struct Use {
  const OptionSpec* spec = nullptr;
  std::string spelled;               // "--tree", "-t", "--no-shell-job"
  std::optional<std::string> value;  // the argument, if any
  bool negated = false;              // --no-NAME
  std::string origin;                // "" for the command line, "FILE:LINE" for config files
};

using Apply = Status (*)(Options&, const Use&);

struct OptionSpec {
  std::string_view name;  // long name without dashes
  char short_name = 0;
  Arg arg = Arg::none;
  bool negatable = false;    // CRIU also accepts --no-NAME
  bool bundle_only = false;  // only for checkpoint / restore --bundle
  bool cli_only = false;     // meaningless inside a config file
  // Exactly one of these is set.
  bool Options::*flag = nullptr;
  std::optional<std::string> Options::*str = nullptr;
  std::vector<std::string> Options::*list = nullptr;
  Apply apply = nullptr;
};

Error option_error(const std::string& origin, std::string message) {
  return make_error(Errc::invalid_argument, kOp, origin, std::move(message));
}

Error bad_value(const Use& u, const std::string& why) {
  return option_error(u.origin, "invalid value '" + u.value.value_or("") + "' for " + u.spelled + ": " + why);
}

bool parse_int_in(std::string_view s, int64_t lo, int64_t hi, int64_t& out) {
  return sys::parse_i64(s, out, 10) && out >= lo && out <= hi;
}

Result<int> fd_value(const Use& u) {
  int64_t v;
  if (!parse_int_in(*u.value, 0, INT_MAX, v)) return fail(bad_value(u, "expected a file descriptor number"));
  return static_cast<int>(v);
}

// SIZE[K|M|G], as CRIU's --ghost-limit (lower-case suffixes accepted too).
bool parse_size(std::string_view s, uint64_t& out) {
  if (s.empty()) return false;
  unsigned shift = 0;
  switch (s.back()) {
    case 'K': case 'k': shift = 10; break;
    case 'M': case 'm': shift = 20; break;
    case 'G': case 'g': shift = 30; break;
    default: break;
  }
  if (shift) s.remove_suffix(1);
  uint64_t n;
  if (!sys::parse_u64(s, n, 10)) return false;
  if (shift && n > (UINT64_MAX >> shift)) return false;
  out = n << shift;
  return true;
}

// Every word of a comma-separated CRIU --cpu-cap list, each optionally inverted with '^'.
bool valid_cpu_cap(std::string_view caps) {
  for (auto word : sys::split(caps, ',', false)) {
    while (!word.empty() && word.front() == '^') word.remove_prefix(1);
    if (word != "fpu" && word != "all" && word != "none" && word != "cpu" && word != "ins") return false;
  }
  return true;
}

template <class E, size_t N>
bool pick(std::string_view v, const std::pair<std::string_view, E> (&table)[N], E& out) {
  for (const auto& [name, value] : table) {
    if (v == name) {
      out = value;
      return true;
    }
  }
  return false;
}

const std::pair<std::string_view, CgroupMode> kCgroupModes[] = {
    {"ignore", CgroupMode::ignore}, {"none", CgroupMode::none}, {"props", CgroupMode::props},
    {"soft", CgroupMode::soft},     {"full", CgroupMode::full}, {"strict", CgroupMode::strict},
};

// --- handlers for options that need more than a flag or a string ---

Status set_tree(Options& o, const Use& u) {
  int64_t v;
  if (!parse_int_in(*u.value, 1, INT_MAX, v)) return fail(bad_value(u, "expected a process id > 0"));
  o.tree_pid = static_cast<pid_t>(v);
  return {};
}

Status set_images_dir(Options& o, const Use& u) {
  if (u.value->empty()) return fail(bad_value(u, "expected a directory"));
  o.images_dir = *u.value;
  return {};
}

Status set_leave_running(Options& o, const Use&) {
  o.leave_running = true;
  o.leave_stopped = false;
  return {};
}

Status set_leave_stopped(Options& o, const Use&) {
  o.leave_stopped = true;
  o.leave_running = false;
  return {};
}

Status set_verbosity(Options& o, const Use& u) {
  int level = o.verbosity;
  if (!u.value) {
    ++level;
  } else if (!u.value->empty() && u.value->find_first_not_of('v') == std::string::npos) {
    level += static_cast<int>(u.value->size()) + 1;  // -vvv: the first v is the option itself
  } else {
    int64_t v;
    if (!parse_int_in(*u.value, 0, INT_MAX, v)) return fail(bad_value(u, "expected a level 0..4 or more v's"));
    level = static_cast<int>(v);
  }
  o.verbosity = level > 4 ? 4 : level;  // levels above 4 log nothing more
  return {};
}

Status set_log_format(Options& o, const Use& u) {
  static const std::pair<std::string_view, LogFormat> kFormats[] = {{"text", LogFormat::text},
                                                                     {"json", LogFormat::json}};
  if (!pick(*u.value, kFormats, o.log_format)) return fail(bad_value(u, "expected 'text' or 'json'"));
  return {};
}

Status set_ext_unix_sk(Options& o, const Use& u) {
  if (u.value) {
    for (auto piece : sys::split(*u.value, ',', false)) {
      uint64_t ino;
      if (!sys::parse_u64(piece, ino, 10)) return fail(bad_value(u, "expected a comma-separated list of socket inodes"));
      o.ext_unix_sk_ids.push_back(ino);
    }
  }
  o.ext_unix_sk = true;
  return {};
}

Status set_ghost_limit(Options& o, const Use& u) {
  if (!parse_size(*u.value, o.ghost_limit)) return fail(bad_value(u, "expected a size like 1048576, 512K, 16M or 1G"));
  return {};
}

Status set_manage_cgroups(Options& o, const Use& u) {
  CgroupMode mode = CgroupMode::soft;
  if (u.value && !pick(*u.value, kCgroupModes, mode))
    return fail(bad_value(u, "expected one of none, props, soft, full, strict, ignore"));
  o.manage_cgroups = mode;
  return {};
}

Status add_cgroup_root(Options& o, const Use& u) {
  const std::string& v = *u.value;
  CgroupRoot root;
  auto colon = v.find(':');
  if (colon == std::string::npos) {
    root.path = v;
  } else {
    root.controller = v.substr(0, colon);
    root.path = v.substr(colon + 1);
    if (root.controller.empty()) return fail(bad_value(u, "empty controller name before ':'"));
  }
  if (root.path.empty() || root.path[0] != '/') return fail(bad_value(u, "expected [CONTROLLER:]/PATH with an absolute path"));
  o.cgroup_roots.push_back(std::move(root));
  return {};
}

Status add_ext_mount(Options& o, const Use& u) {
  const std::string& v = *u.value;
  if (v == "auto") {
    o.ext_mount_auto = true;
    return {};
  }
  auto colon = v.find(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == v.size())
    return fail(bad_value(u, "expected KEY:VALUE or 'auto'"));
  o.ext_mounts.push_back({v.substr(0, colon), v.substr(colon + 1)});
  return {};
}

Status add_inherit_fd(Options& o, const Use& u) {
  const std::string& v = *u.value;
  const auto why = "expected fd[N]:KEY with N a decimal file descriptor";
  if (v.rfind("fd[", 0) != 0) return fail(bad_value(u, why));
  auto close = v.find(']');
  if (close == std::string::npos || close + 1 >= v.size() || v[close + 1] != ':') return fail(bad_value(u, why));
  int64_t fd;
  if (!parse_int_in(std::string_view(v).substr(3, close - 3), 0, INT_MAX, fd)) return fail(bad_value(u, why));
  std::string key = v.substr(close + 2);
  if (key.empty()) return fail(bad_value(u, "empty KEY after 'fd[N]:'"));
  o.inherit_fds.push_back({static_cast<int>(fd), std::move(key)});
  return {};
}

Status add_join_ns(Options& o, const Use& u) {
  const std::string& v = *u.value;
  auto colon = v.find(':');
  if (colon == std::string::npos) return fail(bad_value(u, "expected NS:PID|PATH[,EXTRA]"));
  JoinNs j;
  j.ns = v.substr(0, colon);
  std::string rest = v.substr(colon + 1);
  if (j.ns == "pid")
    return fail(option_error(u.origin, "join-ns pid is not supported: '" + v +
                                           "'; restore into an existing pid namespace with --external "
                                           "pid[INODE]:KEY and --inherit-fd instead"));
  if (j.ns != "ipc" && j.ns != "net" && j.ns != "time" && j.ns != "user" && j.ns != "uts")
    return fail(bad_value(u, "namespace must be one of ipc, net, time, user, uts"));
  auto comma = rest.find(',');
  if (comma != std::string::npos) {
    j.extra = rest.substr(comma + 1);
    rest.resize(comma);
  }
  j.target = std::move(rest);
  if (j.target.empty()) return fail(bad_value(u, "missing PID or namespace file after '" + j.ns + ":'"));
  if (!j.extra.empty() || comma != std::string::npos) {
    if (j.ns != "user") return fail(bad_value(u, "extra options are only accepted for the user namespace"));
    auto ids = sys::split(j.extra, ',', false);
    uint64_t id;
    if (ids.size() != 2 || !sys::parse_u64(ids[0], id, 10) || !sys::parse_u64(ids[1], id, 10))
      return fail(bad_value(u, "user namespace extra options must be UID,GID"));
  }
  o.join_ns.push_back(std::move(j));
  return {};
}

Status set_empty_ns(Options& o, const Use& u) {
  if (*u.value != "net") return fail(bad_value(u, "only 'net' is supported"));
  o.empty_ns_net = true;
  return {};
}

Status add_veth_pair(Options& o, const Use& u) {
  const std::string& v = *u.value;
  auto eq = v.find('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 == v.size()) return fail(bad_value(u, "expected IN=OUT[@BRIDGE]"));
  VethPair p;
  p.inner = v.substr(0, eq);
  p.outer = v.substr(eq + 1);
  auto at = p.outer.find('@');
  if (at != std::string::npos) {
    p.bridge = p.outer.substr(at + 1);
    p.outer.resize(at);
    if (p.outer.empty() || p.bridge.empty()) return fail(bad_value(u, "expected IN=OUT[@BRIDGE]"));
  }
  o.veth_pairs.push_back(std::move(p));
  return {};
}

Status add_enable_fs(Options& o, const Use& u) {
  auto names = sys::split(*u.value, ',', true);
  if (names.empty()) return fail(bad_value(u, "expected FS[,FS...] or 'all'"));
  for (auto n : names) o.enable_fs.emplace_back(n);
  return {};
}

Status set_cpu_cap(Options& o, const Use& u) {
  std::string caps = u.value && !u.value->empty() ? *u.value : "all";
  if (!valid_cpu_cap(caps)) return fail(bad_value(u, "expected a comma-separated list of cpu, fpu, ins, all, none (^ inverts)"));
  o.cpu_cap = std::move(caps);
  return {};
}

Status set_network_lock(Options& o, const Use& u) {
  static const std::pair<std::string_view, NetworkLock> kModes[] = {
      {"iptables", NetworkLock::iptables}, {"nftables", NetworkLock::nftables}, {"skip", NetworkLock::skip}};
  if (!pick(*u.value, kModes, o.network_lock)) return fail(bad_value(u, "expected iptables, nftables or skip"));
  return {};
}

Status set_file_validation(Options& o, const Use& u) {
  static const std::pair<std::string_view, FileValidation> kModes[] = {{"buildid", FileValidation::buildid},
                                                                       {"filesize", FileValidation::filesize}};
  if (!pick(*u.value, kModes, o.file_validation)) return fail(bad_value(u, "expected buildid or filesize"));
  return {};
}

Status set_pre_dump_mode(Options& o, const Use& u) {
  static const std::pair<std::string_view, PreDumpMode> kModes[] = {{"splice", PreDumpMode::splice},
                                                                    {"read", PreDumpMode::read}};
  if (!pick(*u.value, kModes, o.pre_dump_mode)) return fail(bad_value(u, "expected splice or read"));
  return {};
}

Status set_timeout(Options& o, const Use& u) {
  int64_t v;
  if (!parse_int_in(*u.value, 0, INT_MAX, v)) return fail(bad_value(u, "expected a number of seconds"));
  o.timeout = static_cast<unsigned>(v);
  return {};
}

Status set_port(Options& o, const Use& u) {
  int64_t v;
  if (!parse_int_in(*u.value, 0, 65535, v)) return fail(bad_value(u, "expected a port number 0..65535"));
  o.port = static_cast<uint16_t>(v);
  return {};
}

Status set_ps_socket(Options& o, const Use& u) {
  o.ps_socket = CR_TRY(fd_value(u));
  return {};
}

Status set_status_fd(Options& o, const Use& u) {
  o.status_fd = CR_TRY(fd_value(u));
  return {};
}

Status add_close_fd(Options& o, const Use& u) {
  o.close_fds.push_back(CR_TRY(fd_value(u)));
  return {};
}

Status set_check_all(Options& o, const Use&) {
  o.check_extra = o.check_experimental = true;
  return {};
}

Status set_help(Options& o, const Use&) {
  o.help = true;
  return {};
}

Status set_version(Options& o, const Use&) {
  o.version = true;
  return {};
}

Status set_config(Options& o, const Use& u) {
  o.config_file = *u.value;
  return {};
}

Status set_no_default_config(Options& o, const Use&) {
  o.no_default_config = true;
  return {};
}

Status set_bundle_dir(Options& o, const Use& u) {
  if (u.value->empty()) return fail(bad_value(u, "expected a bundle directory"));
  o.bundle.dir = *u.value;
  return {};
}
Status set_bundle_image_path(Options& o, const Use& u) { o.bundle.image_path = *u.value; return {}; }
Status set_bundle_work_path(Options& o, const Use& u) { o.bundle.work_path = *u.value; return {}; }
Status set_bundle_console_socket(Options& o, const Use& u) { o.bundle.console_socket = *u.value; return {}; }
Status set_bundle_pid_file(Options& o, const Use& u) { o.bundle.pid_file = *u.value; return {}; }
Status set_bundle_export(Options& o, const Use& u) { o.bundle.export_path = *u.value; return {}; }
Status set_bundle_import(Options& o, const Use& u) { o.bundle.import_path = *u.value; return {}; }
Status set_bundle_detach(Options& o, const Use&) { o.bundle.detach = true; return {}; }

// --- the option table ---

OptionSpec flag(std::string_view name, char s, bool Options::*m, bool negatable = true) {
  OptionSpec spec;
  spec.name = name;
  spec.short_name = s;
  spec.negatable = negatable;
  spec.flag = m;
  return spec;
}

OptionSpec str(std::string_view name, char s, std::optional<std::string> Options::*m) {
  OptionSpec spec;
  spec.name = name;
  spec.short_name = s;
  spec.arg = Arg::required;
  spec.str = m;
  return spec;
}

OptionSpec list(std::string_view name, std::vector<std::string> Options::*m) {
  OptionSpec spec;
  spec.name = name;
  spec.arg = Arg::required;
  spec.list = m;
  return spec;
}

OptionSpec custom(std::string_view name, char s, Arg arg, Apply fn) {
  OptionSpec spec;
  spec.name = name;
  spec.short_name = s;
  spec.arg = arg;
  spec.apply = fn;
  return spec;
}

OptionSpec bundle(std::string_view name, Arg arg, Apply fn) {
  OptionSpec spec = custom(name, 0, arg, fn);
  spec.bundle_only = true;
  return spec;
}

OptionSpec cli_only(OptionSpec spec) {
  spec.cli_only = true;
  return spec;
}

// CRIU's option set (getopt short string "dSsRt:hD:o:v::x::Vr:jJ:lW:L:M:") plus crshim's extensions.
const std::vector<OptionSpec>& option_table() {
  static const std::vector<OptionSpec> table = {
      custom("tree", 't', Arg::required, set_tree),
      custom("leave-stopped", 's', Arg::none, set_leave_stopped),
      custom("leave-running", 'R', Arg::none, set_leave_running),
      flag("restore-detached", 'd', &Options::restore_detached),
      flag("restore-sibling", 'S', &Options::restore_sibling),
      flag("daemon", 0, &Options::restore_detached),
      custom("images-dir", 'D', Arg::required, set_images_dir),
      str("work-dir", 'W', &Options::work_dir),
      str("log-file", 'o', &Options::log_file),
      custom("join-ns", 'J', Arg::required, add_join_ns),
      str("root", 'r', &Options::root),
      custom("ext-unix-sk", 'x', Arg::optional, set_ext_unix_sk),
      cli_only(custom("help", 'h', Arg::none, set_help)),
      flag("tcp-established", 0, &Options::tcp_established),
      custom("close", 0, Arg::required, add_close_fd),
      flag("log-pid", 0, &Options::log_pid),
      cli_only(custom("version", 'V', Arg::none, set_version)),
      flag("evasive-devices", 0, &Options::evasive_devices),
      str("pidfile", 0, &Options::pidfile),
      custom("veth-pair", 0, Arg::required, add_veth_pair),
      list("action-script", &Options::action_scripts),
      flag("link-remap", 0, &Options::link_remap),
      flag("shell-job", 'j', &Options::shell_job),
      flag("file-locks", 'l', &Options::file_locks),
      flag("orphan-pts-master", 0, &Options::orphan_pts_master),
      flag("page-server", 0, &Options::page_server),
      str("address", 0, &Options::address),
      str("allow-group", 0, &Options::allow_group),
      custom("port", 0, Arg::required, set_port),
      str("prev-images-dir", 0, &Options::prev_images_dir),
      flag("track-mem", 0, &Options::track_mem),
      flag("auto-dedup", 0, &Options::auto_dedup),
      str("libdir", 'L', &Options::libdir),
      custom("cpu-cap", 0, Arg::optional, set_cpu_cap),
      flag("force-irmap", 0, &Options::force_irmap),
      custom("ext-mount-map", 'M', Arg::required, add_ext_mount),
      flag("exec-cmd", 0, &Options::exec_cmd, false),
      custom("manage-cgroups", 0, Arg::optional, set_manage_cgroups),
      custom("cgroup-root", 0, Arg::required, add_cgroup_root),
      custom("inherit-fd", 0, Arg::required, add_inherit_fd),
      list("feature", &Options::features),
      list("skip-mnt", &Options::skip_mnt),
      custom("enable-fs", 0, Arg::required, add_enable_fs),
      flag("enable-external-sharing", 0, &Options::enable_external_sharing, false),
      flag("enable-external-masters", 0, &Options::enable_external_masters, false),
      str("freeze-cgroup", 0, &Options::freeze_cgroup),
      custom("ghost-limit", 0, Arg::required, set_ghost_limit),
      list("irmap-scan-path", &Options::irmap_scan_paths),
      str("lsm-profile", 0, &Options::lsm_profile),
      custom("timeout", 0, Arg::required, set_timeout),
      list("external", &Options::external),
      custom("empty-ns", 0, Arg::required, set_empty_ns),
      flag("lazy-pages", 0, &Options::lazy_pages, false),
      flag("extra", 0, &Options::check_extra),
      flag("experimental", 0, &Options::check_experimental),
      custom("all", 0, Arg::none, set_check_all),
      str("cgroup-props", 0, &Options::cgroup_props),
      str("cgroup-props-file", 0, &Options::cgroup_props_file),
      list("cgroup-dump-controller", &Options::cgroup_dump_controllers),
      flag("skip-in-flight", 0, &Options::skip_in_flight),
      flag("deprecated", 0, &Options::deprecated),
      flag("display-stats", 0, &Options::display_stats),
      flag("weak-sysctls", 0, &Options::weak_sysctls),
      custom("status-fd", 0, Arg::required, set_status_fd),
      flag("tcp-close", 0, &Options::tcp_close),
      custom("verbosity", 'v', Arg::optional, set_verbosity),
      custom("ps-socket", 0, Arg::required, set_ps_socket),
      flag("stream", 0, &Options::stream),
      cli_only(custom("config", 0, Arg::required, set_config)),
      cli_only(custom("no-default-config", 0, Arg::none, set_no_default_config)),
      str("tls-cacert", 0, &Options::tls_cacert),
      str("tls-cacrl", 0, &Options::tls_cacrl),
      str("tls-cert", 0, &Options::tls_cert),
      str("tls-key", 0, &Options::tls_key),
      flag("tls", 0, &Options::tls),
      flag("tls-no-cn-verify", 0, &Options::tls_no_cn_verify, false),
      str("cgroup-yard", 0, &Options::cgroup_yard),
      custom("pre-dump-mode", 0, Arg::required, set_pre_dump_mode),
      custom("file-validation", 0, Arg::required, set_file_validation),
      flag("skip-file-rwx-check", 0, &Options::skip_file_rwx_check),
      str("lsm-mount-context", 0, &Options::lsm_mount_context),
      custom("network-lock", 0, Arg::required, set_network_lock),
      flag("mntns-compat-mode", 0, &Options::mntns_compat_mode),
      flag("unprivileged", 0, &Options::unprivileged),
      flag("ghost-fiemap", 0, &Options::ghost_fiemap),
      // crshim extensions.
      flag("compress", 0, &Options::compress),
      custom("log-format", 0, Arg::required, set_log_format),
      // OCI bundle verbs.
      bundle("bundle", Arg::required, set_bundle_dir),
      bundle("image-path", Arg::required, set_bundle_image_path),
      bundle("work-path", Arg::required, set_bundle_work_path),
      bundle("console-socket", Arg::required, set_bundle_console_socket),
      bundle("detach", Arg::none, set_bundle_detach),
      bundle("pid-file", Arg::required, set_bundle_pid_file),
      bundle("export", Arg::required, set_bundle_export),
      bundle("import", Arg::required, set_bundle_import),
  };
  return table;
}

const OptionSpec* find_short(char c) {
  for (const auto& spec : option_table())
    if (spec.short_name == c) return &spec;
  return nullptr;
}

struct LongMatch {
  const OptionSpec* spec = nullptr;
  bool negated = false;
  std::string full;  // the full name matched, without dashes
};

// getopt_long's lookup: an exact name, else a unique prefix (--no-NAME forms included).
// Returns the error message on failure; `unknown` tells an unknown name from an ambiguous one.
std::optional<LongMatch> find_long(std::string_view name, std::string& error, bool& unknown) {
  std::vector<LongMatch> prefixed;
  for (const auto& spec : option_table()) {
    std::string forms[2] = {std::string(spec.name), spec.negatable ? "no-" + std::string(spec.name) : ""};
    for (int i = 0; i < 2; ++i) {
      const std::string& form = forms[i];
      if (form.empty()) continue;
      if (form == name) return LongMatch{&spec, i == 1, form};
      if (!name.empty() && form.compare(0, name.size(), name) == 0) prefixed.push_back({&spec, i == 1, form});
    }
  }
  if (prefixed.size() == 1) return prefixed[0];
  unknown = prefixed.empty();
  if (!unknown) {
    std::string names;
    for (const auto& m : prefixed) names += (names.empty() ? "--" : ", --") + m.full;
    error = "option '--" + std::string(name) + "' is ambiguous (" + names + ")";
  }
  return std::nullopt;
}

std::string unknown_option_message(std::string_view spelled, Verb verb) {
  if (verb == Verb::none || verb == Verb::help) return "unknown option '" + std::string(spelled) + "'; see 'crshim help'";
  std::string v(verb_name(verb));
  return "unknown option '" + std::string(spelled) + "' for '" + v + "'; see 'crshim help " + v + "'";
}

Status apply_use(Options& o, const Use& u) {
  const OptionSpec& s = *u.spec;
  if (s.bundle_only && o.verb != Verb::checkpoint && o.verb != Verb::restore)
    return fail(option_error(u.origin, "option '" + u.spelled + "' is only valid for 'checkpoint' and 'restore'"));
  if (s.flag) {
    o.*s.flag = !u.negated;
    return {};
  }
  if (s.str) {
    o.*s.str = *u.value;
    return {};
  }
  if (s.list) {
    (o.*s.list).push_back(*u.value);
    return {};
  }
  return s.apply(o, u);
}

// The command line split into option uses and positionals (getopt_long with argv permutation).
struct Tokens {
  std::vector<Use> uses;
  std::vector<std::string> positionals;
  // The first problem; unknown options are worded once the verb is known.
  std::optional<std::string> error;
  std::optional<std::string> unknown;
};

Tokens tokenize(int argc, char** argv) {
  Tokens t;
  auto note = [&t](std::string msg) {
    if (!t.error && !t.unknown) t.error = std::move(msg);
  };
  auto note_unknown = [&t](std::string spelled) {
    if (!t.error && !t.unknown) t.unknown = std::move(spelled);
  };
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--") {
      for (++i; i < argc; ++i) t.positionals.emplace_back(argv[i]);
      break;
    }
    if (a.size() > 2 && a.substr(0, 2) == "--") {
      std::string_view body = a.substr(2);
      std::optional<std::string> value;
      auto eq = body.find('=');
      if (eq != std::string_view::npos) {
        value = std::string(body.substr(eq + 1));
        body = body.substr(0, eq);
      }
      std::string err;
      bool unknown = false;
      auto m = find_long(body, err, unknown);
      if (!m) {
        if (unknown) note_unknown("--" + std::string(body));
        else note(err);
        continue;
      }
      Use u{m->spec, "--" + m->full, std::move(value), m->negated, ""};
      if (m->spec->arg == Arg::none || m->negated) {
        if (u.value) {
          note("option '" + u.spelled + "' does not take a value");
          continue;
        }
      } else if (m->spec->arg == Arg::required && !u.value) {
        if (i + 1 >= argc) {
          note("option '" + u.spelled + "' requires a value");
          continue;
        }
        u.value = std::string(argv[++i]);
      }
      t.uses.push_back(std::move(u));
      continue;
    }
    if (a.size() > 1 && a[0] == '-') {
      for (size_t j = 1; j < a.size(); ++j) {
        const OptionSpec* spec = find_short(a[j]);
        std::string spelled = std::string("-") + a[j];
        if (!spec) {
          note_unknown(spelled);
          continue;
        }
        Use u{spec, spelled, std::nullopt, false, ""};
        std::string_view rest = a.substr(j + 1);
        if (spec->arg == Arg::required) {
          if (!rest.empty()) u.value = std::string(rest);
          else if (i + 1 < argc) u.value = std::string(argv[++i]);
          else {
            note("option '" + spelled + "' requires a value");
            break;
          }
        } else if (spec->arg == Arg::optional && !rest.empty()) {
          u.value = std::string(rest);
        }
        t.uses.push_back(std::move(u));
        if (spec->arg != Arg::none) break;  // the rest of the word was the value
      }
      continue;
    }
    t.positionals.emplace_back(a);
  }
  return t;
}

// One config line split into words: whitespace separated, "quoted" with \" escapes, '#' starts a comment.
Result<std::vector<std::string>> split_config_line(std::string_view line, const std::string& where) {
  std::vector<std::string> words;
  size_t i = 0, n = line.size();
  auto space = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f'; };
  while (true) {
    while (i < n && space(line[i])) ++i;
    if (i >= n || line[i] == '#') break;
    std::string w;
    if (line[i] == '"') {
      bool closed = false;
      for (++i; i < n; ++i) {
        if (line[i] == '\\' && i + 1 < n && line[i + 1] == '"') {
          w += '"';
          ++i;
        } else if (line[i] == '"') {
          closed = true;
          ++i;
          break;
        } else {
          w += line[i];
        }
      }
      if (!closed) return fail(option_error(where, "unterminated quoted value"));
      if (i < n && !space(line[i]) && line[i] != '#')
        return fail(option_error(where, "unexpected text after a closing quote"));
    } else {
      while (i < n && !space(line[i])) w += line[i++];
    }
    words.push_back(std::move(w));
  }
  return words;
}

Status apply_config_line(Options& o, std::string_view line, const std::string& where) {
  auto words = CR_TRY(split_config_line(line, where));
  if (words.empty()) return {};
  if (words.size() > 2)
    return fail(option_error(where, "one option and at most one value per line; got '" + words[2] + "' after '" +
                                        words[1] + "' (quote values that contain spaces)"));
  std::string name = words[0];
  std::optional<std::string> value;
  if (words.size() == 2) value = words[1];
  if (auto eq = name.find('='); eq != std::string::npos) {
    if (value) return fail(option_error(where, "value given twice for '" + name.substr(0, eq) + "'"));
    value = name.substr(eq + 1);
    name.resize(eq);
  }
  if (name.empty() || name[0] == '-')
    return fail(option_error(where, "config options are written without leading dashes: '" + name + "'"));
  std::string err;
  bool unknown = false;
  auto m = find_long(name, err, unknown);
  if (!m) return fail(option_error(where, unknown ? unknown_option_message(name, o.verb) : err));
  Use u{m->spec, "--" + m->full, std::move(value), m->negated, where};
  if (m->spec->cli_only)
    return fail(option_error(where, "option '" + m->full + "' is not allowed in a configuration file"));
  if ((m->spec->arg == Arg::none || m->negated) && u.value)
    return fail(option_error(where, "option '" + m->full + "' does not take a value"));
  if (m->spec->arg == Arg::required && !u.value)
    return fail(option_error(where, "option '" + m->full + "' requires a value"));
  return apply_use(o, u);
}

// Positionals each verb takes after its name.
Status check_positionals(const Options& o) {
  auto unexpected = [&](size_t from) {
    return fail(option_error("", "unexpected argument '" + o.args[from] + "' for '" + std::string(verb_name(o.verb)) +
                                     "'; see 'crshim help " + std::string(verb_name(o.verb)) + "'"));
  };
  switch (o.verb) {
    case Verb::show:
      if (o.args.empty()) return fail(option_error("", "show needs a FILE or DIR argument"));
      if (o.args.size() > 1) return unexpected(1);
      return {};
    case Verb::swrk:
      if (o.args.empty()) return fail(option_error("", "swrk needs a socket file descriptor argument"));
      if (o.args.size() > 1) return unexpected(1);
      return {};
    case Verb::cpuinfo:
      if (o.args.empty() || (o.args[0] != "dump" && o.args[0] != "check"))
        return fail(option_error("", "cpuinfo needs 'dump' or 'check'"));
      if (o.args.size() > 1) return unexpected(1);
      return {};
    case Verb::help:
      if (o.args.size() > 1) return unexpected(1);
      if (!o.args.empty() && !verb_from_name(o.args[0]))
        return fail(option_error("", "no help for unknown command '" + o.args[0] + "'; see 'crshim help'"));
      return {};
    case Verb::checkpoint:  // CONTAINER-PID (or --pid-file)
      if (o.args.size() > 1) return unexpected(1);
      return {};
    case Verb::restore:
      if (o.exec_cmd) return {};  // the positionals are the command
      [[fallthrough]];
    default:
      if (!o.args.empty()) return unexpected(0);
      return {};
  }
}

}  // namespace

std::string_view verb_name(Verb verb) {
  switch (verb) {
    case Verb::none: return "";
    case Verb::dump: return "dump";
    case Verb::pre_dump: return "pre-dump";
    case Verb::restore: return "restore";
    case Verb::check: return "check";
    case Verb::show: return "show";
    case Verb::page_server: return "page-server";
    case Verb::lazy_pages: return "lazy-pages";
    case Verb::service: return "service";
    case Verb::swrk: return "swrk";
    case Verb::features: return "features";
    case Verb::cpuinfo: return "cpuinfo";
    case Verb::exec: return "exec";
    case Verb::dedup: return "dedup";
    case Verb::checkpoint: return "checkpoint";
    case Verb::help: return "help";
  }
  return "";
}

std::optional<Verb> verb_from_name(std::string_view name) {
  static constexpr Verb kVerbs[] = {Verb::dump,     Verb::pre_dump, Verb::restore,    Verb::check,
                                    Verb::show,     Verb::page_server, Verb::lazy_pages, Verb::service,
                                    Verb::swrk,     Verb::features, Verb::cpuinfo,    Verb::exec,
                                    Verb::dedup,    Verb::checkpoint, Verb::help};
  for (Verb v : kVerbs)
    if (verb_name(v) == name) return v;
  return std::nullopt;
}

std::string_view cgroup_mode_name(CgroupMode mode) {
  for (const auto& [name, value] : kCgroupModes)
    if (value == mode) return name;
  return "";
}

ConfigSources config_sources_from_environment() {
  ConfigSources s;
  if (const char* home = getenv("HOME"); home && *home) s.home_default = std::string(home) + "/.criu/default.conf";
  if (const char* env = getenv("CRIU_CONFIG_FILE"); env && *env) s.env_file = env;
  return s;
}

Status apply_config_text(Options& opts, std::string_view text, const std::string& origin) {
  size_t line_no = 0;
  for (size_t pos = 0; pos <= text.size();) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    ++line_no;
    CR_OK(apply_config_line(opts, text.substr(pos, end - pos), origin + ":" + std::to_string(line_no)));
    pos = end + 1;
  }
  return {};
}

Status apply_config_file(Options& opts, const std::string& path, bool must_exist) {
  auto text = sys::read_file(path, 1u << 20);
  if (!text) {
    int err = text.error().err;
    if (!must_exist && (err == ENOENT || err == ENOTDIR)) return {};
    // Name the config file in the error; keep non-errno failures (e.g. too large) as they are.
    Error e = err ? errno_error(err, "read config file", path) : std::move(text.error());
    if (must_exist && err == ENOENT) e.with_hint("check the path given to --config");
    return fail(std::move(e));
  }
  CR_OK(apply_config_text(opts, *text, path));
  opts.config_files_read.push_back(path);
  return {};
}

Status apply_config_sources(Options& opts, const ConfigSources& sources, bool skip_defaults,
                            const std::optional<std::string>& explicit_file) {
  // As CRIU: naming a file with --config replaces the two default files; $CRIU_CONFIG_FILE still applies.
  if (!skip_defaults && !explicit_file) {
    if (!sources.etc_default.empty()) CR_OK(apply_config_file(opts, sources.etc_default, false));
    if (!sources.home_default.empty()) CR_OK(apply_config_file(opts, sources.home_default, false));
  }
  if (sources.env_file && !sources.env_file->empty()) CR_OK(apply_config_file(opts, *sources.env_file, false));
  if (explicit_file) CR_OK(apply_config_file(opts, *explicit_file, true));
  return {};
}

Status validate_options(const Options& o) {
  auto err = [](std::string msg) { return fail(option_error("", std::move(msg))); };
  if (o.help || o.version) return {};
  if (o.verb == Verb::none) return err("no command given; see 'crshim help'");
  if (o.verb == Verb::exec) {
    Error e = make_error(Errc::unsupported, kOp, "", "'exec' is not supported (it is deprecated in CRIU)");
    e.with_hint("use compel to run code in another process");
    return fail(std::move(e));
  }
  // Before the positional checks: with --exec-cmd the positionals are the command.
  if (o.exec_cmd) {
    if (o.verb != Verb::restore) return err("--exec-cmd is only valid for 'restore'");
    if (o.args.empty()) return err("--exec-cmd needs a command after '--'");
    if (o.restore_detached) return err("--exec-cmd cannot be combined with --restore-detached");
  }
  CR_OK(check_positionals(o));
  if (o.verb == Verb::swrk) {
    int64_t fd;
    if (!parse_int_in(o.args[0], 0, INT_MAX, fd))
      return err("invalid swrk socket '" + o.args[0] + "': expected a file descriptor number");
  }
  if ((o.verb == Verb::dump || o.verb == Verb::pre_dump) && !o.tree_pid)
    return err(std::string(verb_name(o.verb)) + " needs the process tree to checkpoint: -t/--tree PID");
  if (o.verb == Verb::restore && o.tree_pid)
    return err("restore does not take -t/--tree: the process tree comes from the images");
  if (o.verb == Verb::restore && o.restore_sibling && !o.restore_detached)
    return err("--restore-sibling only makes sense with --restore-detached");
  if (o.empty_ns_net) {
    for (const auto& j : o.join_ns)
      if (j.ns == "net") return err("--join-ns net:" + j.target + " conflicts with --empty-ns net");
  }
  if (o.verb == Verb::checkpoint && !o.bundle.dir) return err("checkpoint needs --bundle DIR");
  if (o.verb == Verb::restore && !o.bundle.dir) {
    const BundleOptions& b = o.bundle;
    const char* stray = b.image_path ? "--image-path" : b.work_path ? "--work-path"
                        : b.console_socket ? "--console-socket" : b.pid_file ? "--pid-file"
                        : b.export_path ? "--export" : b.import_path ? "--import" : b.detach ? "--detach" : nullptr;
    if (stray) return err(std::string(stray) + " needs --bundle DIR");
  }
  return {};
}

Result<Options> parse_options(int argc, char** argv, const ConfigSources& sources) {
  Tokens t = tokenize(argc, argv);
  Options o;
  if (!t.positionals.empty()) {
    auto verb = verb_from_name(t.positionals[0]);
    if (!verb)
      return fail(option_error("", "unknown command '" + t.positionals[0] + "'; see 'crshim help'"));
    o.verb = *verb;
    o.args.assign(t.positionals.begin() + 1, t.positionals.end());
  }
  if (t.unknown) return fail(option_error("", unknown_option_message(*t.unknown, o.verb)));
  if (t.error) return fail(option_error("", *t.error));

  // --config/--no-default-config/-h/-V decide how the rest is read, so look at them first.
  bool help_or_version = false;
  for (const Use& u : t.uses) {
    if (u.spec->cli_only) CR_OK(apply_use(o, u));
    help_or_version = help_or_version || o.help || o.version;
  }
  // As CRIU, -h/-V answer without reading config files (a broken file must not hide the help).
  if (!help_or_version) CR_OK(apply_config_sources(o, sources, o.no_default_config, o.config_file));
  for (const Use& u : t.uses)
    if (!u.spec->cli_only) CR_OK(apply_use(o, u));
  if (o.verb == Verb::swrk && !o.args.empty()) {
    int64_t fd;
    if (parse_int_in(o.args[0], 0, INT_MAX, fd)) o.swrk_fd = static_cast<int>(fd);
  }
  CR_OK(validate_options(o));
  return o;
}

Result<Options> parse_command_line(int argc, char** argv) {
  return parse_options(argc, argv, config_sources_from_environment());
}

std::string usage(const std::string& verb) {
  static const std::string common =
      "\nCommon options:\n"
      "  -D|--images-dir DIR   image directory (default: .)\n"
      "  -W|--work-dir DIR     directory for logs, pidfiles and stats (default: images dir)\n"
      "  -o|--log-file FILE    log file name\n"
      "  -v[v...]|-vNUM        verbosity 0..4 (default 2)\n"
      "  --log-format text|json, --log-pid, --display-stats\n"
      "  --config FILE         read options from FILE instead of the default config files\n"
      "  --no-default-config   skip /etc/criu/default.conf and ~/.criu/default.conf\n";
  auto v = verb_from_name(verb);
  if (!v || *v == Verb::help) {
    return "Usage: crshim COMMAND [OPTIONS]\n"
           "\nCommands:\n"
           "  dump          checkpoint a process tree: dump -t PID -D DIR\n"
           "  pre-dump      snapshot memory ahead of a dump\n"
           "  restore       restore a process tree from DIR (or --bundle DIR)\n"
           "  checkpoint    checkpoint an OCI container: checkpoint --bundle DIR --image-path DIR\n"
           "  check         check kernel support\n"
           "  features      print supported features as JSON\n"
           "  show          print an image file or directory as JSON\n"
           "  cpuinfo       dump|check CPU information\n"
           "  page-server   receive the pages of a dump over the network into DIR\n"
           "  lazy-pages    serve pages to a lazily restored tree\n"
           "  service       run the RPC service: service --address SOCKET\n"
           "  swrk          serve RPC requests on an inherited socket: swrk FD\n"
           "  help [CMD]    show help for CMD\n"
           "\nSee 'crshim help COMMAND' for the options of a command.\n"
           "Config files: /etc/criu/default.conf, ~/.criu/default.conf, $CRIU_CONFIG_FILE, --config FILE;\n"
           "one long option per line without dashes, optional value, # comments, \"quoted values\".\n";
  }
  switch (*v) {
    case Verb::dump:
    case Verb::pre_dump:
      return "Usage: crshim " + verb + " -t PID [-D DIR] [OPTIONS]\n"
             "  -t|--tree PID          root of the process tree to checkpoint\n"
             "  -R|--leave-running     keep the tree running afterwards\n"
             "  -s|--leave-stopped     leave the tree stopped afterwards\n"
             "  -j|--shell-job         allow a shell job (session/pgid of the caller)\n"
             "  -x|--ext-unix-sk[=INO] allow external unix sockets\n"
             "  -l|--file-locks        dump file locks\n"
             "  --tcp-established, --tcp-close, --skip-in-flight\n"
             "  --external RES         mark a resource external (repeatable)\n"
             "  -M|--ext-mount-map KEY:VAL|auto, --enable-fs FS, --skip-mnt PATH\n"
             "  --manage-cgroups[=MODE], --cgroup-root [CTRL:]/PATH, --freeze-cgroup PATH\n"
             "  --action-script FILE   run FILE at each stage (repeatable)\n"
             "  --ghost-limit SIZE, --link-remap, --evasive-devices, --timeout SEC\n"
             "  --track-mem, --prev-images-dir DIR, --auto-dedup, --pre-dump-mode splice|read\n"
             "  --page-server --address ADDR --port PORT  send the pages to a page server\n"
             "  --lazy-pages --port PORT [--address ADDR] [--status-fd FD]\n"
             "                         post-copy: keep the pages in the frozen tree and serve them to\n"
             "                         `crshim lazy-pages --page-server` until it has them all\n"
             "  --network-lock MODE, --compress (compress page images, crshim extension)\n" +
             common;
    case Verb::restore:
      return "Usage: crshim restore [-D DIR] [OPTIONS]\n"
             "       crshim restore --bundle DIR [--image-path DIR] [--work-path DIR]\n"
             "              [--console-socket SOCK] [--detach] [--pid-file FILE] [--import ARCHIVE]\n"
             "  -d|--restore-detached  detach after restore\n"
             "  -S|--restore-sibling   restore the root task as a sibling (needs -d)\n"
             "  -s|--leave-stopped     leave the tree stopped\n"
             "  --pidfile FILE         write the root task's pid to FILE\n"
             "  -j|--shell-job, -l|--file-locks, --tcp-established, --tcp-close\n"
             "  --inherit-fd fd[N]:KEY use fd N for the file named KEY (repeatable)\n"
             "  -J|--join-ns NS:PID|PATH[,UID,GID]  join an existing ipc/net/time/user/uts namespace\n"
             "  --external RES, -M|--ext-mount-map KEY:VAL, -r|--root PATH\n"
             "  --veth-pair IN=OUT[@BRIDGE], --empty-ns net\n"
             "  --manage-cgroups[=MODE], --cgroup-root [CTRL:]/PATH\n"
             "  --action-script FILE, --lsm-profile TYPE:NAME, --lsm-mount-context CTX\n"
             "  --exec-cmd -- CMD...   run CMD as the parent of the restored tree\n" +
             common;
    case Verb::checkpoint:
      return "Usage: crshim checkpoint --bundle DIR --image-path DIR [--work-path DIR]\n"
             "              [--export ARCHIVE] [-R] [OPTIONS] CONTAINER-PID|--pid-file FILE\n" +
             common;
    case Verb::check:
      return "Usage: crshim check [--extra] [--experimental] [--all] [--feature NAME]...\n"
             "  --feature NAME   whether this kernel has what NAME needs (CRIU's names; list: all of them)\n" +
             common;
    case Verb::features:
      return "Usage: crshim features\n  print the supported features as JSON\n";
    case Verb::show:
      return "Usage: crshim show FILE|DIR\n  print an image file or every image in DIR as JSON\n";
    case Verb::cpuinfo:
      return "Usage: crshim cpuinfo dump|check [-D DIR]\n" + common;
    case Verb::page_server:
      return "Usage: crshim page-server [-D DIR] [--address ADDR] --port PORT|--ps-socket FD\n"
             "              [--prev-images-dir REL] [-d|--daemon] [--pidfile FILE] [--status-fd FD]\n" +
             common;
    case Verb::lazy_pages:
      return "Usage: crshim lazy-pages -D DIR [-W DIR] [--status-fd FD] [--timeout SEC] [-d] [--pidfile FILE]\n"
             "              [--page-server --address ADDR --port PORT]\n"
             "  --page-server          fetch the pages the images leave lazy from `crshim dump --lazy-pages`\n"
             "                         on the source (ADDR:PORT)\n" +
             common;
    case Verb::service:
      return "Usage: crshim service --address SOCKET [-d|--daemon] [--pidfile FILE] [--status-fd FD] [--allow-group GROUP]\n" + common;
    case Verb::swrk:
      return "Usage: crshim swrk FD\n  serve RPC requests on the SEQPACKET socket FD\n";
    case Verb::exec:
      return "crshim exec is not supported (deprecated in CRIU; use compel).\n";
    case Verb::dedup:
      return "Usage: crshim dedup [-D DIR]\n" + common;
    case Verb::none:
    case Verb::help:
      break;
  }
  return usage("");
}

}  // namespace crshim
