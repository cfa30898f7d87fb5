// CRIU-compatible option parsing: command line and config files (CRIU's precedence) into one Options value.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "checkpoint/base/result.h"

namespace crshim {

enum class Verb {
  none,  // only valid with -h/--help or -V/--version
  dump,
  pre_dump,
  restore,
  check,
  show,
  page_server,
  lazy_pages,
  service,
  swrk,
  features,
  cpuinfo,
  exec,
  dedup,
  checkpoint,  // OCI bundle checkpoint
  help,
};

// "pre-dump", "page-server", ...; "" for Verb::none.
std::string_view verb_name(Verb verb);
std::optional<Verb> verb_from_name(std::string_view name);

// CRIU's --manage-cgroups modes; `soft` is what a bare --manage-cgroups means.
enum class CgroupMode { ignore, none, props, soft, full, strict };
enum class PreDumpMode { splice, read };
enum class NetworkLock { iptables, nftables, skip };
enum class FileValidation { buildid, filesize };
enum class LogFormat { text, json };

std::string_view cgroup_mode_name(CgroupMode mode);

// --inherit-fd fd[N]:KEY
struct InheritFd {
  int fd = -1;
  std::string key;
  bool operator==(const InheritFd&) const = default;
};

// -J/--join-ns NS:PID|PATH[,EXTRA]; `extra` is "UID,GID" for user namespaces, else empty.
struct JoinNs {
  std::string ns;
  std::string target;
  std::string extra;
  bool operator==(const JoinNs&) const = default;
};

// -M/--ext-mount-map KEY:VALUE
struct ExtMount {
  std::string key;
  std::string val;
  bool operator==(const ExtMount&) const = default;
};

// --cgroup-root [CONTROLLER:]/PATH; an empty controller is the default for all controllers.
struct CgroupRoot {
  std::string controller;
  std::string path;
  bool operator==(const CgroupRoot&) const = default;
};

// --veth-pair IN=OUT[@BRIDGE]
struct VethPair {
  std::string inner;
  std::string outer;
  std::string bridge;
  bool operator==(const VethPair&) const = default;
};

// OCI bundle verbs: `checkpoint --bundle DIR ...` and `restore --bundle DIR ...`.
struct BundleOptions {
  std::optional<std::string> dir;  // --bundle; set means bundle mode
  std::optional<std::string> image_path;
  std::optional<std::string> work_path;
  std::optional<std::string> console_socket;
  std::optional<std::string> pid_file;
  std::optional<std::string> export_path;  // --export ARCHIVE
  std::optional<std::string> import_path;  // --import ARCHIVE
  bool detach = false;
};

// Everything one invocation asked for, with CRIU's meanings and defaults. Built once by
// parse_options(); later layers only read it. Repeated list options accumulate in source order.
struct Options {
  Verb verb = Verb::none;
  std::vector<std::string> args;  // positionals after the verb (show FILE, swrk FD, cpuinfo dump|check, help VERB)
  bool help = false;              // -h/--help
  bool version = false;           // -V/--version

  // Generic dump/restore.
  std::optional<pid_t> tree_pid;  // -t/--tree
  std::string images_dir = ".";   // -D/--images-dir
  std::optional<std::string> work_dir;  // -W/--work-dir; unset means images_dir
  std::optional<std::string> pidfile;   // --pidfile (root task, service or page-server pid)
  std::optional<std::string> root;      // -r/--root
  // -R and -s select CRIU's final task state: the last one given wins, neither means "kill".
  bool leave_running = false;
  bool leave_stopped = false;
  bool restore_detached = false;  // -d/--restore-detached; for service/page-server it means --daemon
  bool restore_sibling = false;   // -S/--restore-sibling
  bool shell_job = false;         // -j/--shell-job
  bool file_locks = false;        // -l/--file-locks
  bool exec_cmd = false;          // --exec-cmd: args are the command to run after restore
  std::optional<std::string> libdir;  // -L/--libdir
  std::vector<int> close_fds;         // --close FD

  // Logging.
  std::optional<std::string> log_file;  // -o/--log-file
  int verbosity = 2;                    // -v..., 0..4
  bool log_pid = false;
  bool display_stats = false;
  LogFormat log_format = LogFormat::text;  // crshim extension --log-format

  // Resources.
  bool ext_unix_sk = false;                // -x/--ext-unix-sk[=INO,...]
  std::vector<uint64_t> ext_unix_sk_ids;
  bool tcp_established = false;
  bool tcp_close = false;
  bool skip_in_flight = false;
  bool evasive_devices = false;
  bool link_remap = false;
  bool ghost_fiemap = false;
  uint64_t ghost_limit = 1u << 20;  // --ghost-limit SIZE[K|M|G]
  bool skip_file_rwx_check = false;
  std::optional<CgroupMode> manage_cgroups;  // unset: CRIU's default (soft)
  std::vector<CgroupRoot> cgroup_roots;
  std::optional<std::string> cgroup_props;
  std::optional<std::string> cgroup_props_file;
  std::vector<std::string> cgroup_dump_controllers;
  std::optional<std::string> cgroup_yard;
  std::optional<std::string> freeze_cgroup;  // --freeze-cgroup PATH (freezer cgroup of the tree)
  bool ext_mount_auto = false;               // -M auto
  std::vector<ExtMount> ext_mounts;          // -M KEY:VALUE
  std::vector<std::string> external;         // --external RES (interpreted by later layers)
  std::vector<InheritFd> inherit_fds;
  std::vector<JoinNs> join_ns;
  std::vector<std::string> action_scripts;
  bool empty_ns_net = false;  // --empty-ns net
  std::vector<VethPair> veth_pairs;
  std::optional<std::string> lsm_profile;        // TYPE:NAME, checked at restore
  std::optional<std::string> lsm_mount_context;
  std::vector<std::string> enable_fs;  // --enable-fs FS[,FS] split at commas
  std::vector<std::string> skip_mnt;
  bool enable_external_sharing = false;
  bool enable_external_masters = false;
  bool force_irmap = false;
  std::vector<std::string> irmap_scan_paths;
  bool unprivileged = false;
  std::optional<std::string> cpu_cap;  // --cpu-cap[=CAPS]; a bare --cpu-cap means "all"
  bool weak_sysctls = false;
  bool mntns_compat_mode = false;
  bool stream = false;
  bool compress = false;  // crshim extension
  NetworkLock network_lock = NetworkLock::iptables;
  FileValidation file_validation = FileValidation::buildid;
  unsigned timeout = 10;  // seconds for collecting tasks
  bool deprecated = false;
  bool orphan_pts_master = false;  // --orphan-pts-master / criu_opts.orphan_pts_master

  // Memory / page server / lazy pages.
  bool page_server = false;
  std::optional<std::string> address;  // page server or service address
  std::optional<std::string> allow_group;  // service: members of this group may use it besides root
  std::optional<uint16_t> port;
  std::optional<int> ps_socket;
  std::optional<int> status_fd;
  bool lazy_pages = false;
  bool track_mem = false;
  std::optional<std::string> prev_images_dir;
  bool auto_dedup = false;
  PreDumpMode pre_dump_mode = PreDumpMode::splice;
  bool tls = false;
  bool tls_no_cn_verify = false;
  std::optional<std::string> tls_cacert, tls_cacrl, tls_cert, tls_key;

  // check.
  bool check_extra = false;
  bool check_experimental = false;
  std::vector<std::string> features;  // --feature NAME

  // Config files.
  std::optional<std::string> config_file;  // --config FILE
  bool no_default_config = false;
  std::vector<std::string> config_files_read;  // every config file applied, in order

  BundleOptions bundle;

  // swrk's FD, parsed from args; -1 for other verbs.
  int swrk_fd = -1;

  bool daemonize() const { return restore_detached; }
};

// Where config files come from; injectable so tests need not touch /etc or $HOME.
struct ConfigSources {
  std::string etc_default = "/etc/criu/default.conf";
  std::string home_default;             // "" when $HOME is unset
  std::optional<std::string> env_file;  // $CRIU_CONFIG_FILE
};

// The real locations, from $HOME and $CRIU_CONFIG_FILE.
ConfigSources config_sources_from_environment();

// Full parse: argv (argv[0] is the program) plus config files, in CRIU's order, then validation.
Result<Options> parse_options(int argc, char** argv, const ConfigSources& sources);
// parse_options() with config_sources_from_environment().
Result<Options> parse_command_line(int argc, char** argv);

// Applies one config file's text (CRIU syntax) on top of `opts`; `origin` names it in errors.
// Used for files here and by the RPC layer for criu_opts.config_file.
Status apply_config_text(Options& opts, std::string_view text, const std::string& origin);
// Reads and applies a config file. A missing file is skipped unless `must_exist`.
Status apply_config_file(Options& opts, const std::string& path, bool must_exist);
// Applies the default files (unless skip_defaults), $CRIU_CONFIG_FILE and `explicit_file`
// (--config, must exist), in that order.
Status apply_config_sources(Options& opts, const ConfigSources& sources, bool skip_defaults,
                            const std::optional<std::string>& explicit_file);

// Per-verb consistency checks (dump needs -t, restore refuses it, ...).
Status validate_options(const Options& opts);

// Short CRIU-like help for `verb` ("" or unknown: the overview).
std::string usage(const std::string& verb);

}  // namespace crshim
