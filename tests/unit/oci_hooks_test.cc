// OCI hooks of a bundle restore: the state JSON on stdin, argv/env, timeouts, the order hooks run in,
// and the console master sent over the console socket.
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
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
}

}  // namespace
}  // namespace crshim::oci
