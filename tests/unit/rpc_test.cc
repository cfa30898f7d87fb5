#include "shim/rpc.h"

#include <fcntl.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "checkpoint/base/unique_fd.h"
#include "checkpoint/kernel/features.h"
#include "hooks/rpc_io.h"

namespace crshim::rpc {
namespace {

namespace fs = std::filesystem;

const Peer kPeer{4242, 0, 0};

criu_req dump_req() {
  criu_req r;
  r.set_type(::DUMP);
  r.mutable_opts()->set_images_dir_fd(7);
  r.mutable_opts()->set_pid(1234);
  return r;
}

JobRequest mapped(const criu_req& r, const Options& base = {}, Mode mode = Mode::swrk) {
  auto j = map_request(r, base, kPeer, mode);
  EXPECT_TRUE(j.has_value()) << (j ? "" : j.error().render());
  return j ? *j : JobRequest{};
}

std::string map_error(const criu_req& r, Mode mode = Mode::swrk) {
  auto j = map_request(r, Options{}, kPeer, mode);
  EXPECT_FALSE(j.has_value());
  if (j) return "<mapped>";
  EXPECT_EQ(j.error().code, Errc::invalid_argument) << j.error().render();
  return j.error().render();
}

// --- criu_opts -> Options ---

TEST(RpcMapping, RuncStyleDumpBecomesOptions) {
  criu_req r = dump_req();
  criu_opts* o = r.mutable_opts();
  o->set_work_dir_fd(9);
  o->set_status_fd(11);
  o->set_log_file("dump.log");
  o->set_log_level(4);
  o->set_leave_running(true);
  o->set_shell_job(false);
  o->set_ext_unix_sk(true);
  o->set_tcp_established(false);
  o->set_file_locks(false);
  o->set_notify_scripts(true);
  o->set_root("/run/runc/x/rootfs");
  o->set_manage_cgroups(true);
  o->set_orphan_pts_master(true);
  o->add_external("net[4026531992]:extRootNetNS");
  auto* m = o->add_ext_mnt();
  m->set_key("/etc/hosts");
  m->set_val("/etc/hosts");
  JobRequest j = mapped(r);
  const Options& opts = j.opts;
  EXPECT_EQ(opts.verb, Verb::dump);
  EXPECT_EQ(opts.images_dir, "/proc/4242/fd/7");
  EXPECT_EQ(opts.work_dir, "/proc/4242/fd/9");
  EXPECT_EQ(j.status_fd_path, "/proc/4242/fd/11");
  EXPECT_EQ(opts.log_file, "dump.log");
  EXPECT_EQ(opts.verbosity, 4);
  EXPECT_EQ(opts.tree_pid, 1234);
  EXPECT_TRUE(opts.leave_running);
  EXPECT_TRUE(opts.ext_unix_sk);
  EXPECT_FALSE(opts.tcp_established);
  EXPECT_TRUE(j.notify_scripts);
  EXPECT_EQ(opts.root, "/run/runc/x/rootfs");
  EXPECT_EQ(opts.manage_cgroups, CgroupMode::soft);
  EXPECT_TRUE(opts.orphan_pts_master);
  EXPECT_EQ(opts.external, (std::vector<std::string>{"net[4026531992]:extRootNetNS"}));
  ASSERT_EQ(opts.ext_mounts.size(), 1u);
  EXPECT_EQ(opts.ext_mounts[0].key, "/etc/hosts");
}

TEST(RpcMapping, AbsentBooleansKeepTheConfiguredValue) {
  Options base;
  base.shell_job = true;  // e.g. from /etc/criu/default.conf
  base.leave_running = true;
  criu_req r = dump_req();
  r.mutable_opts()->set_leave_running(false);
  JobRequest j = mapped(r, base);
  EXPECT_TRUE(j.opts.shell_job);
  EXPECT_FALSE(j.opts.leave_running);
}

TEST(RpcMapping, LogFileDefaultsToCriuLogAndMustBeABareName) {
  EXPECT_EQ(mapped(dump_req()).opts.log_file, "criu.log");
  criu_req r = dump_req();
  r.mutable_opts()->set_log_file("../escape.log");
  EXPECT_NE(map_error(r).find("must be a bare file name"), std::string::npos);
  r.mutable_opts()->clear_log_file();
  r.mutable_opts()->set_log_to_stderr(true);
  EXPECT_EQ(mapped(r).opts.log_file, "-");
}

TEST(RpcMapping, ImagesDirPathWhenNoFdAndErrorWhenNeither) {
  criu_req r = dump_req();
  r.mutable_opts()->set_images_dir_fd(-1);
  r.mutable_opts()->set_images_dir("/var/lib/images");
  EXPECT_EQ(mapped(r).opts.images_dir, "/var/lib/images");
  r.mutable_opts()->clear_images_dir();
  EXPECT_NE(map_error(r).find("no images directory"), std::string::npos);
}

TEST(RpcMapping, ClientFdsNeedAVisiblePeer) {
  auto j = map_request(dump_req(), Options{}, Peer{0, 0, 0}, Mode::swrk);
  ASSERT_FALSE(j);
  EXPECT_NE(j.error().message.find("images_dir_fd"), std::string::npos);
}

TEST(RpcMapping, EmptyNsAcceptsOnlyNewNet) {
  criu_req r = dump_req();
  r.mutable_opts()->set_empty_ns(CLONE_NEWNET);
  JobRequest j = mapped(r);
  EXPECT_TRUE(j.opts.empty_ns_net);
  EXPECT_EQ(j.empty_ns, static_cast<uint32_t>(CLONE_NEWNET));
  r.mutable_opts()->set_empty_ns(CLONE_NEWNET | CLONE_NEWUTS);
  EXPECT_NE(map_error(r).find("only CLONE_NEWNET (0x40000000), got 0x44000000"), std::string::npos);
}

TEST(RpcMapping, InheritFdsAreOurOwnOpenDescriptorsAndSwrkOnly) {
  UniqueFd fd(open("/dev/null", O_RDONLY | O_CLOEXEC));
  criu_req r;
  r.set_type(::RESTORE);
  r.mutable_opts()->set_images_dir_fd(3);
  auto* i = r.mutable_opts()->add_inherit_fd();
  i->set_key("pipe:[1234]");
  i->set_fd(fd.get());
  JobRequest j = mapped(r);
  EXPECT_EQ(j.opts.verb, Verb::restore);
  ASSERT_EQ(j.opts.inherit_fds.size(), 1u);
  EXPECT_EQ(j.opts.inherit_fds[0].fd, fd.get());
  EXPECT_EQ(j.opts.inherit_fds[0].key, "pipe:[1234]");

  EXPECT_NE(map_error(r, Mode::service).find("inherit_fd is only allowed in swrk mode"), std::string::npos);
  i->set_fd(987654);
  EXPECT_NE(map_error(r).find("descriptor 987654 is not open"), std::string::npos);
}

TEST(RpcMapping, ServiceRefusesSiblingRestoreAndPageServerFd) {
  criu_req r;
  r.set_type(::RESTORE);
  r.mutable_opts()->set_images_dir_fd(3);
  r.mutable_opts()->set_rst_sibling(true);
  EXPECT_TRUE(mapped(r).opts.restore_sibling);
  EXPECT_NE(map_error(r, Mode::service).find("rst_sibling is only allowed in swrk mode"), std::string::npos);
  r.mutable_opts()->clear_rst_sibling();
  r.mutable_opts()->mutable_ps()->set_fd(5);
  EXPECT_NE(map_error(r, Mode::service).find("ps.fd is only allowed in swrk mode"), std::string::npos);
}

TEST(RpcMapping, UnixSkInoOnlyCountsNextToExtUnixSk) {
  criu_req r = dump_req();
  r.mutable_opts()->add_unix_sk_ino()->set_inode(777);
  EXPECT_TRUE(mapped(r).opts.external.empty());
  r.mutable_opts()->set_ext_unix_sk(true);
  EXPECT_EQ(mapped(r).opts.external, (std::vector<std::string>{"unix[777]"}));
}

TEST(RpcMapping, ConfigFileIsAppliedLastAndWins) {
  char tmpl[] = "/tmp/crshim-rpc-test.XXXXXX";
  std::string dir = mkdtemp(tmpl);
  std::string conf = dir + "/runc.conf";
  std::ofstream(conf) << "tcp-established\nlog-file from-config.log\naction-script /bin/true\nimages-dir /srv/img\n";
  criu_req r = dump_req();
  r.mutable_opts()->set_log_file("dump.log");
  r.mutable_opts()->set_tcp_established(false);
  r.mutable_opts()->set_config_file(conf);
  JobRequest j = mapped(r);
  EXPECT_TRUE(j.opts.tcp_established);
  EXPECT_EQ(j.opts.log_file, "from-config.log");
  EXPECT_EQ(j.opts.action_scripts, (std::vector<std::string>{"/bin/true"}));
  EXPECT_EQ(j.opts.images_dir, "/srv/img");
  EXPECT_EQ(j.opts.config_files_read, (std::vector<std::string>{conf}));
  // A missing config file is not an error (runc always names /etc/criu/runc.conf).
  r.mutable_opts()->set_config_file(dir + "/missing.conf");
  EXPECT_FALSE(mapped(r).opts.tcp_established);
  fs::remove_all(dir);
}

// --- what the engine can honour ---

TEST(RpcSupport, RuncAlwaysSentOptionsAreAcceptedAndReportedAsIgnored) {
  criu_req r = dump_req();
  criu_opts* o = r.mutable_opts();
  o->set_empty_ns(CLONE_NEWNET);
  o->set_manage_cgroups(true);
  o->set_orphan_pts_master(true);
  o->set_freeze_cgroup("/sys/fs/cgroup/freezer/x");
  o->set_root("/bundle/rootfs");
  auto* m = o->add_ext_mnt();
  m->set_key("/dev/null");
  m->set_val("/dev/null");
  auto ignored = check_engine_support(mapped(r));
  ASSERT_TRUE(ignored) << ignored.error().render();
  std::string all;
  for (const auto& s : *ignored) all += s + "\n";
  // empty_ns, manage_cgroups and freeze_cgroup are honoured now: not in the list.
  EXPECT_NE(all.find("root"), std::string::npos) << "root missing from:\n" << all;
  EXPECT_EQ(all.find("freeze_cgroup"), std::string::npos) << all;
  // ext_mnt names the external mounts of a dumped mount namespace: honoured.
  EXPECT_EQ(all.find("ext_mnt"), std::string::npos) << all;
}

TEST(RpcSupport, PlainRequestHasNothingIgnored) {
  auto ignored = check_engine_support(mapped(dump_req()));
  ASSERT_TRUE(ignored);
  EXPECT_TRUE(ignored->empty());
}

TEST(RpcSupport, UnhonourableOptionsAreRefusedTogether) {
  criu_req r = dump_req();
  r.mutable_opts()->set_tcp_established(true);  // supported: not in the list
  r.mutable_opts()->set_lazy_pages(true);  // supported, but not with a connected socket
  r.mutable_opts()->mutable_ps()->set_fd(5);
  r.mutable_opts()->add_exec_cmd("true");
  auto res = check_engine_support(mapped(r));
  ASSERT_FALSE(res);
  EXPECT_EQ(res.error().code, Errc::unsupported);
  EXPECT_EQ(res.error().message,
            "lazy_pages with ps.fd: a lazy dump listens on ps.address/ps.port; "
            "exec_cmd: running a command after restore is not supported");
}

TEST(RpcSupport, SelfDumpIsRefusedAndANewRootIsAccepted) {
  criu_req r = dump_req();
  r.mutable_opts()->clear_pid();
  auto res = check_engine_support(mapped(r));
  ASSERT_FALSE(res);
  EXPECT_NE(res.error().message.find("without opts.pid"), std::string::npos);

  criu_req rr;
  rr.set_type(::RESTORE);
  rr.mutable_opts()->set_images_dir_fd(3);
  rr.mutable_opts()->set_root("/");
  EXPECT_TRUE(check_engine_support(mapped(rr)));
  // The new root of a restored mount namespace (runc's criu-root).
  rr.mutable_opts()->set_root("/run/runc/x/criu-root");
  EXPECT_TRUE(check_engine_support(mapped(rr)));
}

TEST(RpcErrmsg, CapKeepsShortMessagesAndCutsLongOnesOnACharacterBoundary) {
  EXPECT_EQ(cap_errmsg("short"), "short");
  EXPECT_EQ(cap_errmsg(std::string(5000, 'a')).size(), kMaxErrmsg);
  // "é" is two bytes; placed across the cut it must be dropped whole.
  std::string s = std::string(kMaxErrmsg - 1, 'a') + "\xc3\xa9" + "tail";
  std::string capped = cap_errmsg(s);
  EXPECT_EQ(capped, std::string(kMaxErrmsg - 1, 'a'));
}

// --- the serve loop, forked, over a socketpair ---

class Served {
 public:
  explicit Served(Mode mode = Mode::swrk) {
    int sv[2];
    EXPECT_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
    pid_ = fork();
    if (pid_ == 0) {
      close(sv[1]);
      ServeConfig cfg;
      cfg.mode = mode;
      _exit(serve(sv[0], cfg));
    }
    close(sv[0]);
    client_.reset(sv[1]);
  }
  ~Served() {
    if (pid_ > 0) exit_code();
  }

  criu_resp ask(const criu_req& req) {
    std::string data;
    req.SerializeToString(&data);
    return ask_raw(data);
  }
  criu_resp ask_raw(const std::string& data) {
    EXPECT_EQ(send(client_.get(), data.data(), data.size(), 0), static_cast<ssize_t>(data.size()));
    criu_resp resp;
    auto got = rpcio::recv_message(client_.get(), resp);
    EXPECT_TRUE(got && *got) << "no answer";
    return resp;
  }
  // Closes our end and returns the server's exit code.
  int exit_code() {
    client_.reset();
    int st = 0;
    EXPECT_EQ(waitpid(pid_, &st, 0), pid_);
    pid_ = -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  }

 private:
  pid_t pid_ = -1;
  UniqueFd client_;
};

criu_req typed(criu_req_type t, bool keep_open = false) {
  criu_req r;
  r.set_type(t);
  if (keep_open) r.set_keep_open(true);
  return r;
}

TEST(RpcServe, VersionIsFourTwoWithoutGitidOrSublevel) {
  Served s;
  criu_resp v = s.ask(typed(::VERSION));
  EXPECT_EQ(v.type(), ::VERSION);
  EXPECT_TRUE(v.success());
  EXPECT_EQ(v.version().major_number(), 4);
  EXPECT_EQ(v.version().minor_number(), 2);
  EXPECT_FALSE(v.version().has_gitid());
  EXPECT_FALSE(v.version().has_sublevel());
  EXPECT_EQ(v.version().name(), std::string("crshim ") + CRSHIM_VERSION);
  // runc/go-criu: major*10000 + minor*100 + sublevel must pass its highest gate (31600).
  EXPECT_GE(v.version().major_number() * 10000 + v.version().minor_number() * 100, 40200);
  EXPECT_EQ(s.exit_code(), 0);
}

TEST(RpcServe, KeepOpenServesAFeatureCheckAfterVersion) {
  Served s;
  criu_resp v = s.ask(typed(::VERSION, true));
  EXPECT_TRUE(v.success());
  criu_req fc = typed(::FEATURE_CHECK);
  fc.mutable_features()->set_mem_track(true);
  fc.mutable_features()->set_lazy_pages(true);
  criu_resp f = s.ask(fc);
  EXPECT_EQ(f.type(), ::FEATURE_CHECK);
  EXPECT_TRUE(f.success());
  ASSERT_TRUE(f.features().has_mem_track());
  ASSERT_TRUE(f.features().has_lazy_pages());
  ASSERT_TRUE(f.features().has_pidfd_store());
  // Write tracking needs asynchronous write-protect userfaultfds and PAGEMAP_SCAN (Linux 6.7).
  auto probed = kernel::probe_features();
  ASSERT_TRUE(probed);
  EXPECT_EQ(f.features().mem_track(), probed->uffd_wp_async && probed->pagemap_scan);
  // Lazy restores need userfaultfd with its fork, remap, remove and unmap events.
  EXPECT_EQ(f.features().lazy_pages(),
            probed->userfaultfd && (probed->uffd_features & kernel::kLazyUffdFeatures) == kernel::kLazyUffdFeatures);
  EXPECT_FALSE(f.features().pidfd_store());  // not asked for
  EXPECT_EQ(s.exit_code(), 0);
}

TEST(RpcServe, FeatureCheckReportsPidfdStoreAsProbed) {
  auto probe = kernel::probe_features();
  ASSERT_TRUE(probe);
  Served s;
  criu_req fc = typed(::FEATURE_CHECK);
  fc.mutable_features()->set_pidfd_store(true);
  criu_resp f = s.ask(fc);
  EXPECT_TRUE(f.success());
  EXPECT_EQ(f.features().pidfd_store(), probe->pidfd_open && probe->pidfd_getfd);
  EXPECT_EQ(s.exit_code(), 0);
}

TEST(RpcServe, FeatureCheckWithoutFeaturesFails) {
  Served s;
  criu_resp f = s.ask(typed(::FEATURE_CHECK));
  EXPECT_EQ(f.type(), ::FEATURE_CHECK);
  EXPECT_FALSE(f.success());
  EXPECT_EQ(f.cr_errno(), kBadRequestErrno);
  EXPECT_EQ(s.exit_code(), 1);
}

TEST(RpcServe, UnknownTypesGetAnEmptyFailure) {
  {
    Served s;
    criu_resp r = s.ask_raw(std::string("\x08\x63", 2));  // type 99: not in the enum
    EXPECT_EQ(r.type(), ::EMPTY);
    EXPECT_FALSE(r.success());
    EXPECT_FALSE(r.cr_errmsg().empty());
    EXPECT_EQ(s.exit_code(), 1);
  }
  {
    Served s;
    criu_resp r = s.ask(typed(::NOTIFY));  // a NOTIFY outside a hook
    EXPECT_EQ(r.type(), ::EMPTY);
    EXPECT_FALSE(r.success());
    EXPECT_NE(r.cr_errmsg().find("NOTIFY"), std::string::npos);
    EXPECT_EQ(s.exit_code(), 1);
  }
}

TEST(RpcServe, UnsupportedTypesEchoTheirTypeWithEopnotsupp) {
  {
    Served s;
    criu_resp r = s.ask(typed(::CPUINFO_DUMP));
    EXPECT_EQ(r.type(), ::CPUINFO_DUMP);
    EXPECT_FALSE(r.success());
    EXPECT_EQ(r.cr_errno(), EOPNOTSUPP);
    EXPECT_EQ(s.exit_code(), 1);
  }
  {
    Served s;
    criu_resp r = s.ask(typed(::PAGE_SERVER_CHLD));
    EXPECT_EQ(r.type(), ::PAGE_SERVER);  // as CRIU answers it
    EXPECT_FALSE(r.success());
  }
}

TEST(RpcServe, KeepOpenIsNotHonouredAfterAFailure) {
  Served s;
  criu_resp f = s.ask(typed(::FEATURE_CHECK, true));  // fails: no features
  EXPECT_FALSE(f.success());
  EXPECT_EQ(s.exit_code(), 1);
}

TEST(RpcServe, BadOptionsAnswerEbadrqcWithTheReason) {
  Served s;
  criu_req r = dump_req();
  r.mutable_opts()->set_log_file("a/b.log");
  criu_resp resp = s.ask(r);
  EXPECT_EQ(resp.type(), ::DUMP);
  EXPECT_FALSE(resp.success());
  EXPECT_EQ(resp.cr_errno(), kBadRequestErrno);
  EXPECT_NE(resp.cr_errmsg().find("log_file 'a/b.log' must be a bare file name"), std::string::npos);
  EXPECT_EQ(s.exit_code(), 1);
}

TEST(RpcServe, RestoreFailureCarriesPidMinusOneAndACappedErrmsg) {
  Served s;
  criu_req r;
  r.set_type(::RESTORE);
  r.mutable_opts()->set_images_dir_fd(0);
  // Every refused external is listed, so the message grows far beyond the cap.
  for (int i = 0; i < 100; ++i) r.mutable_opts()->add_external("net[" + std::to_string(4026531000 + i) + "]:some-key");
  criu_resp resp = s.ask(r);
  EXPECT_EQ(resp.type(), ::RESTORE);
  EXPECT_FALSE(resp.success());
  ASSERT_TRUE(resp.has_restore());
  EXPECT_EQ(resp.restore().pid(), -1);
  EXPECT_EQ(resp.cr_errmsg().size(), kMaxErrmsg);
  EXPECT_EQ(resp.cr_errmsg().rfind("RPC request RESTORE: external 'net[4026531000]:some-key'", 0), 0u)
      << resp.cr_errmsg();
  EXPECT_EQ(s.exit_code(), 1);
}

TEST(RpcServe, HangUpBeforeAnyRequestIsAFailure) {
  Served s;
  EXPECT_EQ(s.exit_code(), 1);
}

}  // namespace
}  // namespace crshim::rpc
