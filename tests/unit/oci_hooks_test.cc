// OCI hooks of a bundle restore: the state JSON on stdin, argv/env, timeouts, the order hooks run in,
// and the console master sent over the console socket.
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "checkpoint/base/log.h"
#include "checkpoint/base/unique_fd.h"
#include "oci/oci_hooks.h"

namespace crshim::oci {
namespace {

namespace fs = std::filesystem;

class OciHooksTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/crshim-oci-hooks.XXXXXX";
    dir_ = mkdtemp(tmpl);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string file(const std::string& name) const { return dir_ + "/" + name; }
  // An executable shell script at NAME.
  std::string script(const std::string& name, const std::string& body) {
    std::string path = file(name);
    std::ofstream(path) << "#!/bin/sh\n" << body << "\n";
    ::chmod(path.c_str(), 0755);
    return path;
  }
  std::string read(const std::string& name) const {
    std::ifstream in(file(name));
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

  std::string dir_;
  Logger log_{4};
};

TEST(OciState, IsOneLineWithRuncsFields) {
  State s{"1.0.2", "ctr", "creating", 42, "/b", {{"k", "v"}}};
  EXPECT_EQ(state_json(s),
            R"({"annotations":{"k":"v"},"bundle":"/b","id":"ctr","ociVersion":"1.0.2","pid":42,"status":"creating"})");
  State empty{"1", "", "running", 0, "/", {}};
  EXPECT_EQ(state_json(empty), R"({"annotations":{},"bundle":"/","id":"","ociVersion":"1","pid":0,"status":"running"})");
}

TEST_F(OciHooksTest, HookGetsArgvEnvAndTheStateOnStdin) {
  Hook h;
  h.path = script("h", "echo \"$0|$1|$2|$HOOK_VAR\" > " + file("argv") + "; cat > " + file("stdin") + "; echo to-the-log");
  h.args = {"first", "second", "third"};
  h.env = {"HOOK_VAR=set"};
  ASSERT_TRUE(run_hook(h, "prestart[0]", R"({"pid":7})", log_));
  // argv[0] is args[0], as exec.Cmd and runc pass it; $0 of a script is its path.
  EXPECT_EQ(read("argv"), h.path + "|second|third|set\n");
  EXPECT_EQ(read("stdin"), "{\"pid\":7}\n");
}

TEST_F(OciHooksTest, FailuresAndTimeoutsAreErrorsNamingTheHook) {
  Hook bad;
  bad.path = script("bad", "exit 3");
  auto st = run_hook(bad, "createRuntime[1]", "{}", log_);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, Errc::aborted);
  EXPECT_EQ(st.error().render(), "OCI hook createRuntime[1] " + bad.path + ": exit status 3");

  Hook missing;
  missing.path = file("does-not-exist");
  auto st2 = run_hook(missing, "prestart[0]", "{}", log_);
  ASSERT_FALSE(st2);
  EXPECT_EQ(st2.error().message, "exit status 127 (could it be executed?)");

  Hook slow;
  slow.path = script("slow", "sleep 30");
  slow.timeout = 1;
  auto t0 = std::chrono::steady_clock::now();
  auto st3 = run_hook(slow, "poststart[0]", "{}", log_);
  auto took = std::chrono::steady_clock::now() - t0;
  ASSERT_FALSE(st3);
  EXPECT_EQ(st3.error().code, Errc::timeout);
  EXPECT_EQ(st3.error().message, "no exit within its timeout of 1 s");
  EXPECT_LT(took, std::chrono::seconds(5));
}

TEST_F(OciHooksTest, RestorePointsRunHooksInRuncsOrderWithTheRestoredPid) {
  std::string logfile = file("order");
  auto hook = [&](const std::string& tag) {
    Hook h;
    h.path = script(tag, "read state; echo \"" + tag + " $state\" >> " + logfile);
    return h;
  };
  HookLists lists;
  lists.prestart = {hook("pre0"), hook("pre1")};
  lists.create_runtime = {hook("cr0")};
  lists.poststart = {hook("post0")};
  lists.create_container = {hook("never")};
  OciHooks sink(lists, State{"1.0.2", "ctr", "", 0, "/b", {}}, log_);
  ASSERT_TRUE(sink.fire(HookPoint::pre_restore, 0));
  ASSERT_TRUE(sink.fire(HookPoint::setup_namespaces, 4242));
  ASSERT_TRUE(sink.fire(HookPoint::post_restore, 4242));
  ASSERT_TRUE(sink.fire(HookPoint::post_resume, 0));
  const std::string creating = R"({"annotations":{},"bundle":"/b","id":"ctr","ociVersion":"1.0.2","pid":4242,"status":"creating"})";
  const std::string running = R"({"annotations":{},"bundle":"/b","id":"ctr","ociVersion":"1.0.2","pid":4242,"status":"running"})";
  EXPECT_EQ(read("order"), "pre0 " + creating + "\npre1 " + creating + "\ncr0 " + creating + "\npost0 " + running + "\n");
  EXPECT_EQ(sink.ran(), (std::vector<std::string>{"prestart[0]", "prestart[1]", "createRuntime[0]", "poststart[0]"}));
}

TEST_F(OciHooksTest, FailingPrestartAbortsFailingPoststartDoesNot) {
  HookLists lists;
  Hook bad;
  bad.path = script("bad", "exit 1");
  Hook good;
  good.path = script("good", "touch " + file("cr-ran"));
  lists.prestart = {bad};
  lists.create_runtime = {good};
  lists.poststart = {bad};
  OciHooks sink(lists, State{}, log_);
  auto st = sink.fire(HookPoint::setup_namespaces, 9);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().render(), "OCI hook prestart[0] " + bad.path + ": exit status 1");
  EXPECT_FALSE(fs::exists(file("cr-ran")));  // the chain stopped at the failure
  EXPECT_TRUE(sink.fire(HookPoint::post_resume, 0));
}

// A stand-in for the restored init: a child that waits to be killed, optionally in new namespaces
// (pid 1 of a new pid namespace, its own hostname, a tmpfs at `mnt` holding "marker").
class FakeContainer {
 public:
  explicit FakeContainer(const std::string& mnt = "") {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) < 0) return;
    pid_t child = ::fork();
    if (child == 0) {
      ::close(p[0]);
      if (!mnt.empty()) {
        if (::unshare(CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWPID) < 0) ::_exit(1);
        if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) < 0) ::_exit(2);
        if (::sethostname("crshim-hook-ns", 14) < 0 || ::mount("tmpfs", mnt.c_str(), "tmpfs", 0, nullptr) < 0) ::_exit(4);
        int fd = ::open((mnt + "/marker").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        (void)!::write(fd, "inside\n", 7);
        ::close(fd);
        pid_t init = ::fork();  // pid 1 of the new pid namespace, in the new mount and UTS ones
        if (init < 0) ::_exit(3);
        if (init > 0) {
          // Tell the parent the init's pid as we see it, then stay until the init ends.
          char ok = 1;
          (void)!::write(p[1], &init, sizeof init);
          (void)!::write(p[1], &ok, 1);
          int st;
          ::waitpid(init, &st, 0);
          ::_exit(0);
        }
        ::close(p[1]);
      } else {
        pid_t self = ::getpid();
        char ok = 1;
        (void)!::write(p[1], &self, sizeof self);
        (void)!::write(p[1], &ok, 1);
      }
      for (;;) ::pause();
    }
    ::close(p[1]);
    outer_ = child;
    pid_t got = 0;
    char ok = 0;
    if (::read(p[0], &got, sizeof got) == ssize_t(sizeof got) && ::read(p[0], &ok, 1) == 1 && ok == 1) pid_ = got;
    ::close(p[0]);
  }
  ~FakeContainer() {
    if (pid_ > 0) ::kill(pid_, SIGKILL);
    if (outer_ > 0) {
      ::kill(outer_, SIGKILL);
      int st;
      ::waitpid(outer_, &st, 0);
    }
  }
  pid_t pid() const { return pid_; }
  pid_t outer() const { return outer_; }

 private:
  pid_t outer_ = 0;
  pid_t pid_ = 0;
};

TEST_F(OciHooksTest, EveryKindRunsAtItsPointWithItsStatusAndPoststopLast) {
  FakeContainer ctr;
  ASSERT_GT(ctr.pid(), 0);
  std::string logfile = file("order");
  auto hook = [&](const std::string& tag) {
    Hook h;
    h.path = script(tag, "read state; echo \"" + tag + " $state\" >> " + logfile);
    return h;
  };
  HookLists lists;
  lists.prestart = {hook("prestart")};
  lists.create_runtime = {hook("createRuntime")};
  lists.create_container = {hook("createContainer")};
  lists.start_container = {hook("startContainer")};
  lists.poststart = {hook("poststart")};
  lists.poststop = {hook("poststop")};
  OciHooks sink(lists, State{"1.0.2", "ctr", "", 0, "/b", {}}, log_);
  // The engine's order on restore, with the pid where it has one.
  for (auto [point, pid] : {std::pair{HookPoint::pre_restore, 0}, {HookPoint::setup_namespaces, ctr.pid()},
                            {HookPoint::post_setup_namespaces, 0}, {HookPoint::post_restore, ctr.pid()},
                            {HookPoint::network_unlock, 0}, {HookPoint::pre_resume, 0}, {HookPoint::post_resume, ctr.pid()}})
    ASSERT_TRUE(sink.fire(point, pid)) << hook_name(point);
  sink.run_poststop();
  sink.run_poststop();  // once only
  auto state = [&](const char* status) {
    return R"({"annotations":{},"bundle":"/b","id":"ctr","ociVersion":"1.0.2","pid":)" + std::to_string(ctr.pid()) +
           R"(,"status":")" + status + "\"}";
  };
  EXPECT_EQ(read("order"), "prestart " + state("creating") + "\ncreateRuntime " + state("creating") + "\ncreateContainer " +
                               state("created") + "\nstartContainer " + state("created") + "\npoststart " +
                               state("running") + "\npoststop " + state("stopped") + "\n");
  EXPECT_EQ(sink.ran(), (std::vector<std::string>{"prestart[0]", "createRuntime[0]", "createContainer[0]",
                                                  "startContainer[0]", "poststart[0]", "poststop[0]"}));
  EXPECT_FALSE(sink.start_failure());
}

TEST_F(OciHooksTest, ContainerHooksRunInTheTasksNamespacesAndRoot) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root for namespaces";
  std::string mnt = file("mnt");
  ASSERT_EQ(::mkdir(mnt.c_str(), 0755), 0);
  FakeContainer ctr(mnt);
  ASSERT_GT(ctr.pid(), 0);
  Hook h;
  // The script is found in the container's root (here the same tree), then reports where it runs.
  // It reads its stdin to the end, as hooks do: nothing may keep the pipe open behind it.
  h.path = script("where", "cat > /dev/null; echo \"$$ $(cat /proc/sys/kernel/hostname) $(cat " + mnt + "/marker)\" > " +
                               file("where.out"));
  h.timeout = 10;
  ASSERT_TRUE(run_hook(h, "createContainer[0]", "{}", log_, ctr.pid()));
  // pid 2 of the container's pid namespace (its init is 1), its hostname, its tmpfs.
  EXPECT_EQ(read("where.out"), "2 crshim-hook-ns inside\n");
  // Without ns_of the same hook sees crshim's world: another pid, our hostname, no tmpfs.
  ASSERT_TRUE(run_hook(h, "prestart[0]", "{}", log_));
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  std::string out = read("where.out");
  EXPECT_EQ(out.substr(out.find(' ')), " " + std::string(host) + " \n");
  EXPECT_NE(out.substr(0, 2), "2 ");

  // A task that is gone: the error names the hook and the namespace file.
  Hook plain;
  plain.path = script("plain", "true");
  auto st = run_hook(plain, "startContainer[0]", "{}", log_, 999999999);
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().render().find("/proc/999999999/ns/"), std::string::npos) << st.error().render();
}

TEST_F(OciHooksTest, FailingStartContainerKillsTheInitAndIsKept) {
  FakeContainer ctr;
  ASSERT_GT(ctr.pid(), 0);
  Hook bad;
  bad.path = script("bad", "exit 5");
  Hook stop;
  stop.path = script("stop", "read state; echo \"$state\" > " + file("stop.out") + "; exit 1");
  Hook stop2;
  stop2.path = script("stop2", "touch " + file("stop2.ran"));
  HookLists lists;
  lists.start_container = {bad};
  lists.poststop = {stop, stop2};
  OciHooks sink(lists, State{"1.0.2", "c", "", 0, "/b", {}}, log_);
  ASSERT_TRUE(sink.fire(HookPoint::setup_namespaces, ctr.pid()));
  auto st = sink.fire(HookPoint::pre_resume, 0);
  ASSERT_FALSE(st);
  ASSERT_TRUE(sink.start_failure());
  EXPECT_EQ(sink.start_failure()->render(), "OCI hook startContainer[0] " + bad.path + ": exit status 5");
  int status = 0;
  ASSERT_EQ(::waitpid(ctr.pid(), &status, 0), ctr.pid());
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;
  // poststop: every hook runs though the first fails.
  sink.run_poststop();
  EXPECT_EQ(read("stop.out"), R"({"annotations":{},"bundle":"/b","id":"c","ociVersion":"1.0.2","pid":)" +
                                  std::to_string(ctr.pid()) + R"(,"status":"stopped"})" + "\n");
  EXPECT_TRUE(fs::exists(file("stop2.ran")));
}

TEST_F(OciHooksTest, FailingCreateContainerAbortsTheRestore) {
  FakeContainer ctr;
  ASSERT_GT(ctr.pid(), 0);
  Hook bad;
  bad.path = script("bad", "exit 2");
  HookLists lists;
  lists.create_container = {bad};
  OciHooks sink(lists, State{}, log_);
  ASSERT_TRUE(sink.fire(HookPoint::setup_namespaces, ctr.pid()));
  auto st = sink.fire(HookPoint::post_setup_namespaces, 0);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().render(), "OCI hook createContainer[0] " + bad.path + ": exit status 2");
  EXPECT_FALSE(sink.start_failure());  // the engine aborts on this one itself
  EXPECT_EQ(::kill(ctr.pid(), 0), 0);
}

TEST_F(OciHooksTest, ConsoleMasterGoesToTheConsoleSocket) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  UniqueFd ours(sv[0]), theirs(sv[1]);
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  UniqueFd r(p[0]), w(p[1]);
  HookLists lists;
  OciHooks sink(lists, State{}, log_, ours.get());
  ASSERT_TRUE(sink.fire_fd(HookPoint::orphan_pts_master, 0, w.get()));
  EXPECT_TRUE(sink.sent_console());

  char name[64] = {};
  iovec iov{name, sizeof name - 1};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ASSERT_EQ(::recvmsg(theirs.get(), &msg, 0), ssize_t(strlen("orphan-pts-master")));
  EXPECT_STREQ(name, "orphan-pts-master");
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  ASSERT_NE(c, nullptr);
  ASSERT_EQ(c->cmsg_type, SCM_RIGHTS);
  int got;
  std::memcpy(&got, CMSG_DATA(c), sizeof got);
  UniqueFd received(got);
  // The received fd is the same pipe: what goes in it comes out of ours.
  ASSERT_EQ(::write(received.get(), "x", 1), 1);
  char b = 0;
  ASSERT_EQ(::read(r.get(), &b, 1), 1);
  EXPECT_EQ(b, 'x');

  OciHooks no_socket(lists, State{}, log_);
  auto st = no_socket.fire_fd(HookPoint::orphan_pts_master, 0, w.get());
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().message, "the restored container has a terminal but no console socket was given");
  EXPECT_EQ(st.error().hint, "pass --console-socket SOCK");
}

}  // namespace
}  // namespace crshim::oci
