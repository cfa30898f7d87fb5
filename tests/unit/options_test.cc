#include "shim/options.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <string>
#include <vector>

namespace crshim {
namespace {

namespace fs = std::filesystem;

const std::string kFixtures = std::string(CRSHIM_FIXTURES_DIR) + "/config";

// Sources that point nowhere, so tests never read the host's /etc or $HOME.
ConfigSources no_sources() {
  ConfigSources s;
  s.etc_default = "/nonexistent/crshim-test/etc/default.conf";
  s.home_default = "/nonexistent/crshim-test/home/.criu/default.conf";
  return s;
}

Result<Options> parse(std::initializer_list<std::string> args, const ConfigSources& src = no_sources()) {
  std::vector<std::string> storage{"crshim"};
  storage.insert(storage.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& s : storage) argv.push_back(s.data());
  argv.push_back(nullptr);
  return parse_options(static_cast<int>(storage.size()), argv.data(), src);
}

Options ok(std::initializer_list<std::string> args, const ConfigSources& src = no_sources()) {
  auto r = parse(args, src);
  EXPECT_TRUE(r.has_value()) << (r ? "" : r.error().render());
  return r ? *r : Options{};
}

std::string err(std::initializer_list<std::string> args, const ConfigSources& src = no_sources()) {
  auto r = parse(args, src);
  EXPECT_FALSE(r.has_value());
  if (r) return "<parsed>";
  EXPECT_EQ(r.error().code, Errc::invalid_argument) << r.error().render();
  return r.error().message;
}

// --- option forms ---

TEST(OptionForms, TreeAcceptsShortLongAttachedEqualsAndPrefix) {
  for (auto args : {std::initializer_list<std::string>{"dump", "-t", "42"}, {"dump", "-t42"},
                    {"dump", "--tree", "42"}, {"dump", "--tree=42"}, {"dump", "--tre", "42"}}) {
    Options o = ok(args);
    ASSERT_TRUE(o.tree_pid.has_value());
    EXPECT_EQ(*o.tree_pid, 42);
    EXPECT_EQ(o.verb, Verb::dump);
  }
}

TEST(OptionForms, CombinedShortFlagsAndTrailingValue) {
  Options o = ok({"dump", "-jRlt", "7"});
  EXPECT_TRUE(o.shell_job);
  EXPECT_TRUE(o.leave_running);
  EXPECT_TRUE(o.file_locks);
  EXPECT_EQ(o.tree_pid, 7);

  Options o2 = ok({"dump", "-jt7", "-D/img"});
  EXPECT_TRUE(o2.shell_job);
  EXPECT_EQ(o2.tree_pid, 7);
  EXPECT_EQ(o2.images_dir, "/img");
}

TEST(OptionForms, OptionsMayPrecedeTheVerbAsWithGetoptPermutation) {
  Options o = ok({"-D", "/img", "-v4", "dump", "-o", "d.log", "-t", "1"});
  EXPECT_EQ(o.verb, Verb::dump);
  EXPECT_EQ(o.images_dir, "/img");
  EXPECT_EQ(o.verbosity, 4);
  EXPECT_EQ(o.log_file, "d.log");
}

TEST(OptionForms, RequiredValueMayStartWithADash) {
  Options o = ok({"dump", "-t", "1", "-o", "-v"});
  EXPECT_EQ(o.log_file, "-v");
  EXPECT_EQ(o.verbosity, 2);
}

TEST(OptionForms, DefaultsMatchCriu) {
  Options o = ok({"restore"});
  EXPECT_EQ(o.images_dir, ".");
  EXPECT_FALSE(o.work_dir);
  EXPECT_EQ(o.verbosity, 2);
  EXPECT_EQ(o.ghost_limit, 1u << 20);
  EXPECT_EQ(o.timeout, 10u);
  EXPECT_FALSE(o.manage_cgroups);
  EXPECT_EQ(o.network_lock, NetworkLock::iptables);
  EXPECT_EQ(o.pre_dump_mode, PreDumpMode::splice);
  EXPECT_EQ(o.file_validation, FileValidation::buildid);
  EXPECT_EQ(o.log_format, LogFormat::text);
  EXPECT_FALSE(o.leave_running);
  EXPECT_FALSE(o.leave_stopped);
  EXPECT_FALSE(o.restore_detached);
}

TEST(OptionForms, NoPrefixNegatesBooleansAndLastOneWins) {
  EXPECT_FALSE(ok({"dump", "-t1", "--shell-job", "--no-shell-job"}).shell_job);
  EXPECT_TRUE(ok({"dump", "-t1", "--no-shell-job", "-j"}).shell_job);
  EXPECT_FALSE(ok({"dump", "-t1", "--tcp-established", "--no-tcp-est"}).tcp_established);
  EXPECT_EQ(err({"dump", "-t1", "--no-leave-running"}),
            "unknown option '--no-leave-running' for 'dump'; see 'crshim help dump'");
}

TEST(OptionForms, LeaveRunningAndLeaveStoppedSelectOneFinalState) {
  Options a = ok({"dump", "-t1", "-R", "-s"});
  EXPECT_TRUE(a.leave_stopped);
  EXPECT_FALSE(a.leave_running);
  Options b = ok({"dump", "-t1", "--leave-stopped", "--leave-running"});
  EXPECT_TRUE(b.leave_running);
  EXPECT_FALSE(b.leave_stopped);
}

TEST(OptionForms, DaemonAndRestoreDetachedAreTheSameSwitch) {
  EXPECT_TRUE(ok({"service", "--daemon", "--address", "/run/crshim.sock"}).daemonize());
  Options o = ok({"service", "-d", "--address=/run/s.sock", "--pidfile", "/run/s.pid"});
  EXPECT_TRUE(o.restore_detached);
  EXPECT_EQ(o.address, "/run/s.sock");
  EXPECT_EQ(o.pidfile, "/run/s.pid");
}

TEST(OptionForms, OptionalArgumentsOnlyTakeAttachedValues) {
  EXPECT_EQ(ok({"dump", "-t1", "--manage-cgroups"}).manage_cgroups, CgroupMode::soft);
  EXPECT_EQ(ok({"dump", "-t1", "--manage-cgroups=full"}).manage_cgroups, CgroupMode::full);
  EXPECT_EQ(ok({"dump", "-t1", "--manage-cgroups=ignore"}).manage_cgroups, CgroupMode::ignore);
  // As getopt_long: a separate word is a positional, which dump does not take.
  EXPECT_EQ(err({"dump", "-t1", "--manage-cgroups", "full"}),
            "unexpected argument 'full' for 'dump'; see 'crshim help dump'");
  EXPECT_EQ(err({"dump", "-t1", "--manage-cgroups=loose"}),
            "invalid value 'loose' for --manage-cgroups: expected one of none, props, soft, full, strict, ignore");

  Options x = ok({"dump", "-t1", "-x"});
  EXPECT_TRUE(x.ext_unix_sk);
  EXPECT_TRUE(x.ext_unix_sk_ids.empty());
  Options x2 = ok({"dump", "-t1", "-x123,456", "--ext-unix-sk=7"});
  EXPECT_EQ(x2.ext_unix_sk_ids, (std::vector<uint64_t>{123, 456, 7}));

  EXPECT_EQ(ok({"restore", "--cpu-cap"}).cpu_cap, "all");
  EXPECT_EQ(ok({"restore", "--cpu-cap=fpu,^ins"}).cpu_cap, "fpu,^ins");
  EXPECT_EQ(err({"restore", "--cpu-cap=gpu"}),
            "invalid value 'gpu' for --cpu-cap: expected a comma-separated list of cpu, fpu, ins, all, none (^ inverts)");
}

TEST(OptionForms, VerbosityForms) {
  EXPECT_EQ(ok({"check"}).verbosity, 2);
  EXPECT_EQ(ok({"check", "-v"}).verbosity, 3);
  EXPECT_EQ(ok({"check", "-vv"}).verbosity, 4);
  EXPECT_EQ(ok({"check", "-vvvvv"}).verbosity, 4);  // clamped
  EXPECT_EQ(ok({"check", "-v", "-v"}).verbosity, 4);
  EXPECT_EQ(ok({"check", "-v0"}).verbosity, 0);
  EXPECT_EQ(ok({"check", "-v1"}).verbosity, 1);
  EXPECT_EQ(ok({"check", "-v4"}).verbosity, 4);
  EXPECT_EQ(ok({"check", "--verbosity=3"}).verbosity, 3);
  EXPECT_EQ(ok({"check", "--verbosity"}).verbosity, 3);
  EXPECT_EQ(ok({"check", "-v0", "-v"}).verbosity, 1);
  EXPECT_EQ(err({"check", "-vx"}), "invalid value 'x' for -v: expected a level 0..4 or more v's");
  EXPECT_EQ(err({"check", "--verbosity=-1"}),
            "invalid value '-1' for --verbosity: expected a level 0..4 or more v's");
}

TEST(OptionForms, GhostLimitSizes) {
  EXPECT_EQ(ok({"dump", "-t1", "--ghost-limit", "100"}).ghost_limit, 100u);
  EXPECT_EQ(ok({"dump", "-t1", "--ghost-limit", "512K"}).ghost_limit, 512u << 10);
  EXPECT_EQ(ok({"dump", "-t1", "--ghost-limit=16M"}).ghost_limit, 16u << 20);
  EXPECT_EQ(ok({"dump", "-t1", "--ghost-limit", "2G"}).ghost_limit, 2ull << 30);
  EXPECT_EQ(err({"dump", "-t1", "--ghost-limit", "1X"}),
            "invalid value '1X' for --ghost-limit: expected a size like 1048576, 512K, 16M or 1G");
  EXPECT_EQ(err({"dump", "-t1", "--ghost-limit", "M"}),
            "invalid value 'M' for --ghost-limit: expected a size like 1048576, 512K, 16M or 1G");
}

TEST(OptionForms, EnumeratedValues) {
  Options o = ok({"dump", "-t1", "--network-lock", "nftables", "--pre-dump-mode=read", "--file-validation",
                  "filesize", "--log-format", "json", "--empty-ns", "net"});
  EXPECT_EQ(o.network_lock, NetworkLock::nftables);
  EXPECT_EQ(o.pre_dump_mode, PreDumpMode::read);
  EXPECT_EQ(o.file_validation, FileValidation::filesize);
  EXPECT_EQ(o.log_format, LogFormat::json);
  EXPECT_TRUE(o.empty_ns_net);
  EXPECT_EQ(ok({"dump", "-t1", "--network-lock=skip"}).network_lock, NetworkLock::skip);
  EXPECT_EQ(err({"dump", "-t1", "--network-lock", "pf"}),
            "invalid value 'pf' for --network-lock: expected iptables, nftables or skip");
  EXPECT_EQ(err({"restore", "--empty-ns", "ipc"}), "invalid value 'ipc' for --empty-ns: only 'net' is supported");
  EXPECT_EQ(err({"dump", "-t1", "--log-format", "xml"}),
            "invalid value 'xml' for --log-format: expected 'text' or 'json'");
}

TEST(OptionForms, NumbersAreCheckedStrictly) {
  EXPECT_EQ(err({"dump", "-t", "abc"}), "invalid value 'abc' for -t: expected a process id > 0");
  EXPECT_EQ(err({"dump", "--tree=0"}), "invalid value '0' for --tree: expected a process id > 0");
  EXPECT_EQ(err({"dump", "-t", "12x"}), "invalid value '12x' for -t: expected a process id > 0");
  EXPECT_EQ(err({"page-server", "--port", "70000"}),
            "invalid value '70000' for --port: expected a port number 0..65535");
  EXPECT_EQ(err({"page-server", "--status-fd", "-1"}),
            "invalid value '-1' for --status-fd: expected a file descriptor number");
  EXPECT_EQ(err({"dump", "-t1", "--timeout", "ten"}), "invalid value 'ten' for --timeout: expected a number of seconds");
  Options o = ok({"page-server", "--port", "27", "--ps-socket", "5", "--status-fd=9", "--address", "0.0.0.0"});
  EXPECT_EQ(o.port, 27);
  EXPECT_EQ(o.ps_socket, 5);
  EXPECT_EQ(o.status_fd, 9);
  EXPECT_EQ(ok({"dump", "-t1", "--timeout", "30"}).timeout, 30u);
}

TEST(OptionForms, RepeatedOptionsAccumulateInOrder) {
  Options o = ok({"dump", "-t1", "--external", "mnt[/a]:a", "--action-script", "/s1", "--external=tty[1:2]",
                  "--action-script", "/s2", "--skip-mnt", "/proc/x", "--enable-fs", "nfs,tmpfs", "--enable-fs=all",
                  "--feature", "mnt_id", "--close", "5", "--close=6", "--irmap-scan-path", "/usr"});
  EXPECT_EQ(o.external, (std::vector<std::string>{"mnt[/a]:a", "tty[1:2]"}));
  EXPECT_EQ(o.action_scripts, (std::vector<std::string>{"/s1", "/s2"}));
  EXPECT_EQ(o.skip_mnt, (std::vector<std::string>{"/proc/x"}));
  EXPECT_EQ(o.enable_fs, (std::vector<std::string>{"nfs", "tmpfs", "all"}));
  EXPECT_EQ(o.features, (std::vector<std::string>{"mnt_id"}));
  EXPECT_EQ(o.close_fds, (std::vector<int>{5, 6}));
  EXPECT_EQ(o.irmap_scan_paths, (std::vector<std::string>{"/usr"}));
}

TEST(OptionForms, ExtMountMapSplitsKeyValueAndAuto) {
  Options o = ok({"restore", "-M", "/etc/hosts:/run/hosts", "--ext-mount-map=auto", "-Mk:v:w"});
  EXPECT_TRUE(o.ext_mount_auto);
  EXPECT_EQ(o.ext_mounts, (std::vector<ExtMount>{{"/etc/hosts", "/run/hosts"}, {"k", "v:w"}}));
  EXPECT_EQ(err({"restore", "-M", "nocolon"}), "invalid value 'nocolon' for -M: expected KEY:VALUE or 'auto'");
}

TEST(OptionForms, InheritFdFormat) {
  Options o = ok({"restore", "--inherit-fd", "fd[3]:pipe:[123]", "--inherit-fd=fd[10]:extRootNetNS",
                  "--inherit-fd", "fd[0]:/dev/null"});
  EXPECT_EQ(o.inherit_fds, (std::vector<InheritFd>{{3, "pipe:[123]"}, {10, "extRootNetNS"}, {0, "/dev/null"}}));
  const std::string why = ": expected fd[N]:KEY with N a decimal file descriptor";
  EXPECT_EQ(err({"restore", "--inherit-fd", "3:pipe"}), "invalid value '3:pipe' for --inherit-fd" + why);
  EXPECT_EQ(err({"restore", "--inherit-fd", "fd[x]:k"}), "invalid value 'fd[x]:k' for --inherit-fd" + why);
  EXPECT_EQ(err({"restore", "--inherit-fd", "fd[-1]:k"}), "invalid value 'fd[-1]:k' for --inherit-fd" + why);
  EXPECT_EQ(err({"restore", "--inherit-fd", "fd[3]k"}), "invalid value 'fd[3]k' for --inherit-fd" + why);
  EXPECT_EQ(err({"restore", "--inherit-fd", "fd[3]:"}),
            "invalid value 'fd[3]:' for --inherit-fd: empty KEY after 'fd[N]:'");
}

TEST(OptionForms, JoinNsSplitsNamespaceTargetAndUserIds) {
  Options o = ok({"restore", "-J", "net:1234", "--join-ns", "user:/proc/9/ns/user,1000,1000", "-Juts:/run/uts"});
  EXPECT_EQ(o.join_ns, (std::vector<JoinNs>{{"net", "1234", ""}, {"user", "/proc/9/ns/user", "1000,1000"},
                                             {"uts", "/run/uts", ""}}));
  EXPECT_EQ(err({"restore", "--join-ns", "pid:42"}),
            "join-ns pid is not supported: 'pid:42'; restore into an existing pid namespace with --external "
            "pid[INODE]:KEY and --inherit-fd instead");
  EXPECT_EQ(err({"restore", "--join-ns", "mnt:42"}),
            "invalid value 'mnt:42' for --join-ns: namespace must be one of ipc, net, time, user, uts");
  EXPECT_EQ(err({"restore", "-J", "net:42,0,0"}),
            "invalid value 'net:42,0,0' for -J: extra options are only accepted for the user namespace");
  EXPECT_EQ(err({"restore", "-J", "user:42,0"}),
            "invalid value 'user:42,0' for -J: user namespace extra options must be UID,GID");
  EXPECT_EQ(err({"restore", "-J", "net:"}), "invalid value 'net:' for -J: missing PID or namespace file after 'net:'");
  EXPECT_EQ(err({"restore", "-J", "net"}), "invalid value 'net' for -J: expected NS:PID|PATH[,EXTRA]");
}

TEST(OptionForms, CgroupRootAndVethPairAreSplit) {
  Options o = ok({"restore", "--cgroup-root", "/ctr", "--cgroup-root=cpu,cpuacct:/ctr/cpu", "--veth-pair",
                  "eth0=veth1", "--veth-pair", "eth1=veth2@br0"});
  EXPECT_EQ(o.cgroup_roots, (std::vector<CgroupRoot>{{"", "/ctr"}, {"cpu,cpuacct", "/ctr/cpu"}}));
  EXPECT_EQ(o.veth_pairs, (std::vector<VethPair>{{"eth0", "veth1", ""}, {"eth1", "veth2", "br0"}}));
  EXPECT_EQ(err({"restore", "--cgroup-root", "cpu:ctr"}),
            "invalid value 'cpu:ctr' for --cgroup-root: expected [CONTROLLER:]/PATH with an absolute path");
  EXPECT_EQ(err({"restore", "--veth-pair", "eth0"}), "invalid value 'eth0' for --veth-pair: expected IN=OUT[@BRIDGE]");
}

TEST(OptionForms, DoubleDashEndsOptionsForExecCmd) {
  Options o = ok({"restore", "--exec-cmd", "--", "/bin/sh", "-c", "echo hi"});
  EXPECT_TRUE(o.exec_cmd);
  EXPECT_EQ(o.args, (std::vector<std::string>{"/bin/sh", "-c", "echo hi"}));
  EXPECT_EQ(err({"restore", "--exec-cmd"}), "--exec-cmd needs a command after '--'");
  EXPECT_EQ(err({"dump", "-t1", "--exec-cmd", "--", "x"}), "--exec-cmd is only valid for 'restore'");
  EXPECT_EQ(err({"restore", "-d", "--exec-cmd", "--", "x"}), "--exec-cmd cannot be combined with --restore-detached");
}

// --- errors for unknown, ambiguous and malformed options ---

TEST(OptionErrors, UnknownOptionNamesTheVerbWhereverItAppears) {
  EXPECT_EQ(err({"dump", "--foo", "-t", "1"}), "unknown option '--foo' for 'dump'; see 'crshim help dump'");
  EXPECT_EQ(err({"--foo", "dump", "-t", "1"}), "unknown option '--foo' for 'dump'; see 'crshim help dump'");
  EXPECT_EQ(err({"restore", "-q"}), "unknown option '-q' for 'restore'; see 'crshim help restore'");
  EXPECT_EQ(err({"--foo=bar"}), "unknown option '--foo'; see 'crshim help'");
  auto r = parse({"pre-dump", "--bogus", "-t1"});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().render(),
            "parse options: unknown option '--bogus' for 'pre-dump'; see 'crshim help pre-dump'");
}

TEST(OptionErrors, AmbiguousPrefixListsTheCandidates) {
  EXPECT_EQ(err({"dump", "-t1", "--leave"}), "option '--leave' is ambiguous (--leave-stopped, --leave-running)");
}

TEST(OptionErrors, MissingAndUnexpectedValues) {
  EXPECT_EQ(err({"dump", "-t"}), "option '-t' requires a value");
  EXPECT_EQ(err({"dump", "--tree"}), "option '--tree' requires a value");
  EXPECT_EQ(err({"restore", "-D"}), "option '-D' requires a value");
  EXPECT_EQ(err({"dump", "-t1", "--shell-job=yes"}), "option '--shell-job' does not take a value");
  EXPECT_EQ(err({"dump", "-t1", "--no-shell-job=1"}), "option '--no-shell-job' does not take a value");
}

TEST(OptionErrors, UnknownAndMissingCommands) {
  EXPECT_EQ(err({"frobnicate"}), "unknown command 'frobnicate'; see 'crshim help'");
  EXPECT_EQ(err({"-v4"}), "no command given; see 'crshim help'");
  EXPECT_EQ(err({"help", "frobnicate"}), "no help for unknown command 'frobnicate'; see 'crshim help'");
}

// --- per-verb validation ---

TEST(VerbValidation, DumpAndPreDumpNeedTree) {
  EXPECT_EQ(err({"dump"}), "dump needs the process tree to checkpoint: -t/--tree PID");
  EXPECT_EQ(err({"pre-dump", "-D", "x"}), "pre-dump needs the process tree to checkpoint: -t/--tree PID");
}

TEST(VerbValidation, RestoreRefusesTree) {
  EXPECT_EQ(err({"restore", "-t", "5"}), "restore does not take -t/--tree: the process tree comes from the images");
}

TEST(VerbValidation, RestoreSiblingNeedsRestoreDetached) {
  EXPECT_EQ(err({"restore", "--restore-sibling"}), "--restore-sibling only makes sense with --restore-detached");
  Options o = ok({"restore", "-S", "-d", "--pidfile", "/run/p"});
  EXPECT_TRUE(o.restore_sibling);
  EXPECT_TRUE(o.restore_detached);
  Options o2 = ok({"restore", "--restore-sibling", "--restore-detached"});
  EXPECT_TRUE(o2.restore_sibling);
}

TEST(VerbValidation, PositionalsPerVerb) {
  EXPECT_EQ(ok({"show", "/img/core-1.img"}).args, (std::vector<std::string>{"/img/core-1.img"}));
  EXPECT_EQ(err({"show"}), "show needs a FILE or DIR argument");
  EXPECT_EQ(err({"show", "a", "b"}), "unexpected argument 'b' for 'show'; see 'crshim help show'");
  Options s = ok({"swrk", "3"});
  EXPECT_EQ(s.swrk_fd, 3);
  EXPECT_EQ(err({"swrk"}), "swrk needs a socket file descriptor argument");
  EXPECT_EQ(err({"swrk", "three"}), "invalid swrk socket 'three': expected a file descriptor number");
  EXPECT_EQ(ok({"cpuinfo", "check"}).args, (std::vector<std::string>{"check"}));
  EXPECT_EQ(err({"cpuinfo", "show"}), "cpuinfo needs 'dump' or 'check'");
  EXPECT_EQ(err({"dump", "-t1", "extra"}), "unexpected argument 'extra' for 'dump'; see 'crshim help dump'");
  EXPECT_EQ(ok({"help", "restore"}).verb, Verb::help);
  EXPECT_EQ(ok({"features"}).verb, Verb::features);
}

TEST(VerbValidation, ExecIsRefusedAsUnsupported) {
  auto r = parse({"exec", "-t", "1", "getpid"});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::unsupported);
  EXPECT_EQ(r.error().message, "'exec' is not supported (it is deprecated in CRIU)");
}

TEST(VerbValidation, BundleVerbs) {
  Options c = ok({"checkpoint", "--bundle", "/b", "--image-path=/img", "--work-path", "/w", "--export", "/a.tar", "-R"});
  EXPECT_EQ(c.verb, Verb::checkpoint);
  EXPECT_EQ(c.bundle.dir, "/b");
  EXPECT_EQ(c.bundle.image_path, "/img");
  EXPECT_EQ(c.bundle.work_path, "/w");
  EXPECT_EQ(c.bundle.export_path, "/a.tar");
  EXPECT_TRUE(c.leave_running);

  Options r = ok({"restore", "--bundle=/b", "--console-socket", "/run/c.sock", "--detach", "--pid-file", "/run/p",
                  "--import", "/a.tar"});
  EXPECT_EQ(r.bundle.dir, "/b");
  EXPECT_EQ(r.bundle.console_socket, "/run/c.sock");
  EXPECT_TRUE(r.bundle.detach);
  EXPECT_EQ(r.bundle.pid_file, "/run/p");
  EXPECT_EQ(r.bundle.import_path, "/a.tar");
  EXPECT_FALSE(r.pidfile);  // --pid-file is the bundle's, --pidfile is CRIU's

  EXPECT_EQ(err({"checkpoint", "--image-path", "/img"}), "checkpoint needs --bundle DIR");
  EXPECT_EQ(err({"restore", "--console-socket", "/s"}), "--console-socket needs --bundle DIR");
  EXPECT_EQ(err({"dump", "-t1", "--bundle", "/b"}), "option '--bundle' is only valid for 'checkpoint' and 'restore'");
}

TEST(VerbValidation, JoinNsNetConflictsWithEmptyNsNet) {
  EXPECT_EQ(err({"restore", "--empty-ns", "net", "-J", "net:1"}), "--join-ns net:1 conflicts with --empty-ns net");
}

TEST(VerbValidation, HelpAndVersionNeedNoVerb) {
  Options h = ok({"-h"});
  EXPECT_TRUE(h.help);
  EXPECT_EQ(h.verb, Verb::none);
  Options hd = ok({"dump", "--help"});
  EXPECT_TRUE(hd.help);
  EXPECT_EQ(hd.verb, Verb::dump);
  EXPECT_TRUE(ok({"-V"}).version);
}

// --- config files ---

class ConfigFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "crshim-options-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string write(const std::string& name, const std::string& text) {
    fs::path p = dir_ / name;
    fs::create_directories(p.parent_path());
    std::ofstream(p) << text;
    return p.string();
  }

  // All four sources present in the temp dir.
  ConfigSources sources() {
    ConfigSources s;
    s.etc_default = write("etc/criu/default.conf",
                          "shell-job\ntcp-established\nlog-file etc.log\nexternal etc\nverbosity 1\n");
    s.home_default = write("home/.criu/default.conf", "no-shell-job\nlog-file home.log\nexternal home\n");
    s.env_file = write("env.conf", "log-file env.log\nexternal env\nghost-limit 4K\n");
    return s;
  }

  fs::path dir_;
};

TEST_F(ConfigFiles, SyntaxCommentsQuotesEscapesAndBlankLines) {
  ConfigSources s = no_sources();
  s.etc_default = kFixtures + "/syntax.conf";
  Options o = ok({"restore", "--restore-detached", "--restore-sibling"}, s);
  EXPECT_TRUE(o.tcp_established);
  EXPECT_TRUE(o.file_locks);
  EXPECT_EQ(o.work_dir, "/var/tmp/my \"work\" dir");
  EXPECT_EQ(o.log_file, "/tmp/has # hash.log");
  EXPECT_EQ(o.external, (std::vector<std::string>{"mnt[]:sm", "dev[8/1]:disk one"}));
  EXPECT_EQ(o.manage_cgroups, CgroupMode::full);
  EXPECT_EQ(o.verbosity, 4);
  EXPECT_TRUE(o.restore_sibling);  // the command line overrode no-restore-sibling
  EXPECT_EQ(o.ghost_limit, 2u << 20);
  EXPECT_EQ(o.action_scripts, (std::vector<std::string>{""}));
  EXPECT_EQ(o.config_files_read, (std::vector<std::string>{s.etc_default}));
}

TEST_F(ConfigFiles, RuntimeStyleDefaults) {
  ConfigSources s = no_sources();
  s.etc_default = kFixtures + "/runtime-defaults.conf";
  Options o = ok({"dump", "-t", "1"}, s);
  EXPECT_TRUE(o.tcp_established);
  EXPECT_TRUE(o.file_locks);
  EXPECT_TRUE(o.skip_in_flight);
  EXPECT_EQ(o.manage_cgroups, CgroupMode::ignore);
  EXPECT_EQ(o.network_lock, NetworkLock::nftables);
  EXPECT_EQ(o.external, (std::vector<std::string>{"mnt[]"}));
}

TEST_F(ConfigFiles, BadLineNamesFileAndLine) {
  ConfigSources s = no_sources();
  s.home_default = kFixtures + "/bad-line.conf";
  auto r = parse({"dump", "-t", "1"}, s);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::invalid_argument);
  EXPECT_EQ(r.error().object, s.home_default + ":3");
  EXPECT_EQ(r.error().message,
            "one option and at most one value per line; got '/tmp/b.log' after '/tmp/a.log' "
            "(quote values that contain spaces)");
}

TEST_F(ConfigFiles, UnknownOptionInAFileNamesTheVerb) {
  ConfigSources s = no_sources();
  s.env_file = kFixtures + "/unknown-option.conf";
  auto r = parse({"restore"}, s);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().object, *s.env_file + ":3");
  EXPECT_EQ(r.error().message, "unknown option 'no-such-option' for 'restore'; see 'crshim help restore'");
}

TEST_F(ConfigFiles, LineLevelErrors) {
  Options o;
  o.verb = Verb::dump;
  auto msg = [&](std::string_view text) {
    Options copy = o;
    auto st = apply_config_text(copy, text, "rpc.conf");
    EXPECT_FALSE(st.has_value()) << text;
    return st ? std::string("<applied>") : st.error().object + ": " + st.error().message;
  };
  EXPECT_EQ(msg("log-file \"/tmp/x"), "rpc.conf:1: unterminated quoted value");
  EXPECT_EQ(msg("\n\nlog-file \"/a\"b"), "rpc.conf:3: unexpected text after a closing quote");
  EXPECT_EQ(msg("--shell-job"), "rpc.conf:1: config options are written without leading dashes: '--shell-job'");
  EXPECT_EQ(msg("shell-job yes"), "rpc.conf:1: option 'shell-job' does not take a value");
  EXPECT_EQ(msg("log-file"), "rpc.conf:1: option 'log-file' requires a value");
  EXPECT_EQ(msg("config /x"), "rpc.conf:1: option 'config' is not allowed in a configuration file");
  EXPECT_EQ(msg("help"), "rpc.conf:1: option 'help' is not allowed in a configuration file");
  EXPECT_EQ(msg("tree abc"), "rpc.conf:1: invalid value 'abc' for --tree: expected a process id > 0");
  EXPECT_EQ(msg("dump"), "rpc.conf:1: unknown option 'dump' for 'dump'; see 'crshim help dump'");
}

TEST_F(ConfigFiles, ApplyConfigTextLayersOnExistingOptions) {
  // The RPC layer applies criu_opts.config_file after the RPC options: the file wins for scalars.
  Options o;
  o.verb = Verb::restore;
  o.log_file = "restore.log";
  o.external = {"rpc"};
  ASSERT_TRUE(apply_config_text(o, "log-file file.log\nexternal file\n# done\n", "/etc/rpc.conf"));
  EXPECT_EQ(o.log_file, "file.log");
  EXPECT_EQ(o.external, (std::vector<std::string>{"rpc", "file"}));
}

TEST_F(ConfigFiles, PrecedenceAcrossDefaultsEnvAndCommandLine) {
  ConfigSources s = sources();
  Options o = ok({"dump", "-t", "1", "--external", "cli"}, s);
  EXPECT_EQ(o.log_file, "env.log");         // env file beats both default files
  EXPECT_FALSE(o.shell_job);                // home's no-shell-job beats etc's shell-job
  EXPECT_TRUE(o.tcp_established);           // only etc set it
  EXPECT_EQ(o.verbosity, 1);
  EXPECT_EQ(o.ghost_limit, 4096u);
  EXPECT_EQ(o.external, (std::vector<std::string>{"etc", "home", "env", "cli"}));
  EXPECT_EQ(o.config_files_read, (std::vector<std::string>{s.etc_default, s.home_default, *s.env_file}));

  Options c = ok({"dump", "-t", "1", "-o", "cli.log", "-j", "-v"}, s);
  EXPECT_EQ(c.log_file, "cli.log");
  EXPECT_TRUE(c.shell_job);
  EXPECT_EQ(c.verbosity, 2);  // -v increments what the files set
}

TEST_F(ConfigFiles, ExplicitConfigReplacesDefaultFilesButNotTheEnvFile) {
  ConfigSources s = sources();
  std::string cfg = write("explicit.conf", "log-file explicit.log\nexternal explicit\nleave-running\n");
  for (auto args : {std::initializer_list<std::string>{"dump", "-t1", "--config", cfg, "--external", "cli"},
                    {"--config=" + cfg, "dump", "-t1", "--external=cli"}}) {
    Options o = ok(args, s);
    EXPECT_EQ(o.config_file, cfg);
    EXPECT_EQ(o.log_file, "explicit.log");
    EXPECT_TRUE(o.leave_running);
    EXPECT_FALSE(o.tcp_established);  // etc default not read
    EXPECT_EQ(o.external, (std::vector<std::string>{"env", "explicit", "cli"}));
    EXPECT_EQ(o.config_files_read, (std::vector<std::string>{*s.env_file, cfg}));
  }
  // The command line still beats --config.
  EXPECT_FALSE(ok({"dump", "-t1", "--config", cfg, "-s"}, s).leave_running);
}

TEST_F(ConfigFiles, NoDefaultConfigSkipsBothDefaultFiles) {
  ConfigSources s = sources();
  Options o = ok({"dump", "-t1", "--no-default-config"}, s);
  EXPECT_TRUE(o.no_default_config);
  EXPECT_FALSE(o.tcp_established);
  EXPECT_EQ(o.verbosity, 2);
  EXPECT_EQ(o.log_file, "env.log");
  EXPECT_EQ(o.external, (std::vector<std::string>{"env"}));
  EXPECT_EQ(o.config_files_read, (std::vector<std::string>{*s.env_file}));
}

TEST_F(ConfigFiles, MissingDefaultAndEnvFilesAreNotErrors) {
  ConfigSources s = no_sources();
  s.env_file = (dir_ / "absent.conf").string();
  Options o = ok({"dump", "-t1"}, s);
  EXPECT_TRUE(o.config_files_read.empty());
  EXPECT_EQ(o.log_file, std::nullopt);
}

TEST_F(ConfigFiles, MissingExplicitConfigIsAnError) {
  std::string missing = (dir_ / "nope.conf").string();
  auto r = parse({"dump", "-t1", "--config", missing});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().err, ENOENT);
  EXPECT_EQ(r.error().op, "read config file");
  EXPECT_EQ(r.error().object, missing);
  EXPECT_EQ(r.error().hint, "check the path given to --config");
}

TEST_F(ConfigFiles, HelpSkipsABrokenConfigFile) {
  ConfigSources s = no_sources();
  s.etc_default = write("etc.conf", "this is not valid\n");
  EXPECT_TRUE(ok({"dump", "-h"}, s).help);
  EXPECT_FALSE(parse({"dump", "-t1"}, s));
}

TEST_F(ConfigFiles, BundleOptionInAFileOnlyForBundleVerbs) {
  ConfigSources s = no_sources();
  s.etc_default = write("etc.conf", "console-socket /run/c.sock\n");
  EXPECT_EQ(err({"dump", "-t1"}, s), "option '--console-socket' is only valid for 'checkpoint' and 'restore'");
  EXPECT_EQ(ok({"restore", "--bundle", "/b"}, s).bundle.console_socket, "/run/c.sock");
}

TEST(ConfigSourcesFromEnvironment, UsesHomeAndCriuConfigFile) {
  const char* old_home = getenv("HOME");
  std::string saved_home = old_home ? old_home : "";
  setenv("HOME", "/home/someone", 1);
  setenv("CRIU_CONFIG_FILE", "/run/x.conf", 1);
  ConfigSources s = config_sources_from_environment();
  EXPECT_EQ(s.etc_default, "/etc/criu/default.conf");
  EXPECT_EQ(s.home_default, "/home/someone/.criu/default.conf");
  EXPECT_EQ(s.env_file, "/run/x.conf");
  unsetenv("CRIU_CONFIG_FILE");
  EXPECT_FALSE(config_sources_from_environment().env_file);
  if (old_home) setenv("HOME", saved_home.c_str(), 1);
  else unsetenv("HOME");
}

// --- help text ---

TEST(Usage, PerVerbTextMentionsItsOptions) {
  EXPECT_NE(usage("dump").find("-t|--tree PID"), std::string::npos);
  EXPECT_NE(usage("pre-dump").find("Usage: crshim pre-dump -t PID"), std::string::npos);
  EXPECT_NE(usage("restore").find("--inherit-fd fd[N]:KEY"), std::string::npos);
  EXPECT_NE(usage("restore").find("--bundle DIR"), std::string::npos);
  EXPECT_NE(usage("swrk").find("crshim swrk FD"), std::string::npos);
  EXPECT_NE(usage("").find("Commands:"), std::string::npos);
  EXPECT_EQ(usage("nonsense"), usage(""));
  EXPECT_NE(usage("dump"), usage("restore"));
}

TEST(Verbs, NamesRoundTrip) {
  for (Verb v : {Verb::dump, Verb::pre_dump, Verb::restore, Verb::check, Verb::show, Verb::page_server,
                 Verb::lazy_pages, Verb::service, Verb::swrk, Verb::features, Verb::cpuinfo, Verb::exec,
                 Verb::dedup, Verb::checkpoint, Verb::help})
    EXPECT_EQ(verb_from_name(verb_name(v)), v);
  EXPECT_FALSE(verb_from_name("Dump"));
  EXPECT_EQ(cgroup_mode_name(CgroupMode::strict), "strict");
}

}  // namespace
}  // namespace crshim
