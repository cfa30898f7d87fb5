#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "checkpoint/base/log.h"
#include "checkpoint/base/unique_fd.h"
#include "hooks/hook_chain.h"
#include "hooks/rpc_io.h"
#include "hooks/rpc_notify.h"
#include "hooks/script_hooks.h"
#include "rpc.pb.h"

#include "tests/unit/temp_dir.h"

namespace crshim {
namespace {

namespace fs = std::filesystem;

using test::TempDir;

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A script that appends "TAG ACTION INIT_PID" (INIT_PID "unset" when absent) to `out`.
std::string recorder(const std::string& tag, const std::string& out) {
  return "printf '%s %s %s\\n' " + tag + " \"$CRTOOLS_SCRIPT_ACTION\" \"${CRTOOLS_INIT_PID-unset}\" >> " + out;
}

TEST(ScriptHooks, RunsEveryScriptInOrderWithActionAndInitPid) {
  TempDir dir;
  std::string out = dir.file("actions");
  // A stale value in our own environment must not leak into scripts that run before the pid is known.
  setenv("CRTOOLS_INIT_PID", "999", 1);
  Logger log(0);
  ScriptHooks hooks({recorder("A", out), recorder("B", out)}, "/nonexistent", log);
  ASSERT_TRUE(hooks.fire(HookPoint::pre_restore, 0));
  ASSERT_TRUE(hooks.fire(HookPoint::setup_namespaces, 4242));
  ASSERT_TRUE(hooks.fire(HookPoint::post_setup_namespaces, 0));
  ASSERT_TRUE(hooks.fire(HookPoint::post_restore, 5151));  // CRIU never replaces a known pid
  unsetenv("CRTOOLS_INIT_PID");
  EXPECT_EQ(slurp(out),
            "A pre-restore unset\nB pre-restore unset\n"
            "A setup-namespaces 4242\nB setup-namespaces 4242\n"
            "A post-setup-namespaces 4242\nB post-setup-namespaces 4242\n"
            "A post-restore 4242\nB post-restore 4242\n");
}

TEST(ScriptHooks, DumpExportsTheInitPidFromTheFirstPoint) {
  TempDir dir;
  std::string out = dir.file("actions");
  Logger log(0);
  ScriptHooks hooks({recorder("S", out)}, "/nonexistent", log);
  hooks.set_init_pid(31337);
  ASSERT_TRUE(hooks.fire(HookPoint::pre_dump, 0));
  ASSERT_TRUE(hooks.fire(HookPoint::post_dump, 0));
  EXPECT_EQ(slurp(out), "S pre-dump 31337\nS post-dump 31337\n");
}

TEST(ScriptHooks, ImageDirReachesTheImagesDirectory) {
  TempDir dir;
  fs::create_directory(dir.file("images"));
  std::ofstream(dir.file("images/marker")) << "images-here";
  UniqueFd images(open(dir.file("images").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  ASSERT_TRUE(images.valid());
  std::string env = image_dir_env(images.get());
  EXPECT_EQ(env, "/proc/" + std::to_string(getpid()) + "/fd/" + std::to_string(images.get()));
  Logger log(0);
  ScriptHooks hooks({"cat \"$CRTOOLS_IMAGE_DIR/marker\" > " + dir.file("seen")}, env, log);
  ASSERT_TRUE(hooks.fire(HookPoint::pre_dump, 0));
  EXPECT_EQ(slurp(dir.file("seen")), "images-here");
}

TEST(ScriptHooks, NonZeroExitFailsThePointAndStopsLaterScripts) {
  TempDir dir;
  std::string out = dir.file("actions");
  Logger log(0);
  ScriptHooks hooks({"exit 3", recorder("after", out)}, "/nonexistent", log);
  auto st = hooks.fire(HookPoint::pre_dump, 0);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, Errc::aborted);
  EXPECT_EQ(st.error().object, "exit 3");
  EXPECT_EQ(st.error().message, "failed at pre-dump: exit status 3");
  EXPECT_FALSE(fs::exists(out));
}

TEST(ScriptHooks, MissingScriptFails) {
  Logger log(0);
  ScriptHooks hooks({"/nonexistent/crshim-action-script"}, "/nonexistent", log);
  auto st = hooks.fire(HookPoint::post_resume, 1);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().message, "failed at post-resume: exit status 127");
}

TEST(ScriptHooks, SignalledScriptFails) {
  Logger log(0);
  ScriptHooks hooks({"kill -9 $$"}, "/nonexistent", log);
  auto st = hooks.fire(HookPoint::pre_restore, 0);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().message, "failed at pre-restore: killed by signal 9");
}

TEST(ScriptHooks, TimeoutKillsTheScriptAndWhatItStarted) {
  TempDir dir;
  std::string bg = dir.file("bg.pid");
  Logger log(0);
  ScriptHooks hooks({"sleep 30 & echo $! > " + bg + "; wait"}, "/nonexistent", log, std::chrono::milliseconds(300));
  auto t0 = std::chrono::steady_clock::now();
  auto st = hooks.fire(HookPoint::network_lock, 0);
  auto took = std::chrono::steady_clock::now() - t0;
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, Errc::timeout);
  EXPECT_LT(took, std::chrono::seconds(5));
  pid_t sleeper = std::stoi(slurp(bg));
  // The background sleep was in the script's process group: it must be gone (reaped by init soon).
  bool gone = false;
  for (int i = 0; i < 100 && !gone; ++i) {
    std::ifstream stat("/proc/" + std::to_string(sleeper) + "/stat");
    std::string line;
    gone = !std::getline(stat, line) || line.find(") Z ") != std::string::npos;
    if (!gone) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_TRUE(gone) << "pid " << sleeper << " survived the timeout";
}

TEST(ScriptHooks, ScriptOutputGoesToTheLogNotOurStdout) {
  TempDir dir;
  UniqueFd d(open(dir.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  Logger log(4);
  ASSERT_TRUE(log.open_file(d.get(), "hooks.log"));
  ScriptHooks hooks({"echo out-line; echo err-line >&2; exit 5"}, "/nonexistent", log);
  ASSERT_FALSE(hooks.fire(HookPoint::post_dump, 0));
  std::string text = slurp(dir.file("hooks.log"));
  EXPECT_NE(text.find("out-line"), std::string::npos) << text;
  EXPECT_NE(text.find("err-line"), std::string::npos) << text;
  EXPECT_NE(text.find("exit status 5"), std::string::npos) << text;
}

// --- RpcNotifyHooks against a peer thread on a socketpair ---

struct Pair {
  UniqueFd engine, client;
  Pair() {
    int sv[2];
    EXPECT_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
    engine.reset(sv[0]);
    client.reset(sv[1]);
  }
};

// Reads one NOTIFY and answers it with `answer` (or closes when null); records what it saw.
struct Peer {
  criu_resp seen;
  bool got = false;
  void serve_one(int fd, const criu_req* answer) {
    auto r = rpcio::recv_message(fd, seen);
    got = r && *r;
    if (answer) (void)rpcio::send_message(fd, *answer);
  }
};

criu_req ack(bool ok) {
  criu_req r;
  r.set_type(::NOTIFY);
  r.set_notify_success(ok);
  return r;
}

TEST(RpcNotifyHooks, SendsTheScriptNameAndPidAndWaitsForTheAck) {
  Pair p;
  Logger log(0);
  RpcNotifyHooks hooks(p.engine.get(), log);
  Peer peer;
  criu_req yes = ack(true);
  std::thread t([&] { peer.serve_one(p.client.get(), &yes); });
  auto st = hooks.fire(HookPoint::setup_namespaces, 4321);
  t.join();
  ASSERT_TRUE(st) << st.error().render();
  ASSERT_TRUE(peer.got);
  EXPECT_EQ(peer.seen.type(), ::NOTIFY);
  EXPECT_TRUE(peer.seen.success());
  EXPECT_EQ(peer.seen.notify().script(), "setup-namespaces");
  ASSERT_TRUE(peer.seen.notify().has_pid());
  EXPECT_EQ(peer.seen.notify().pid(), 4321);
}

TEST(RpcNotifyHooks, OnlySetupNamespacesAndPostRestoreCarryThePid) {
  Pair p;
  Logger log(0);
  RpcNotifyHooks hooks(p.engine.get(), log);
  Peer peer;
  criu_req yes = ack(true);
  std::thread t([&] { peer.serve_one(p.client.get(), &yes); });
  auto st = hooks.fire(HookPoint::post_resume, 4321);
  t.join();
  ASSERT_TRUE(st);
  EXPECT_EQ(peer.seen.notify().script(), "post-resume");
  EXPECT_FALSE(peer.seen.notify().has_pid());
}

TEST(RpcNotifyHooks, NegativeAckIsAScriptError) {
  Pair p;
  Logger log(0);
  RpcNotifyHooks hooks(p.engine.get(), log);
  Peer peer;
  criu_req no = ack(false);
  std::thread t([&] { peer.serve_one(p.client.get(), &no); });
  auto st = hooks.fire(HookPoint::pre_dump, 0);
  t.join();
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, Errc::aborted);
  EXPECT_EQ(st.error().message, "RPC client reported script error");
  EXPECT_EQ(st.error().object, "pre-dump");
}

TEST(RpcNotifyHooks, AnswerOfAnotherTypeIsAScriptError) {
  Pair p;
  Logger log(0);
  RpcNotifyHooks hooks(p.engine.get(), log);
  Peer peer;
  criu_req other;
  other.set_type(::DUMP);
  other.set_notify_success(true);
  std::thread t([&] { peer.serve_one(p.client.get(), &other); });
  auto st = hooks.fire(HookPoint::post_dump, 0);
  t.join();
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().message, "RPC client reported script error");
}

TEST(RpcNotifyHooks, ClientHangingUpFailsThePoint) {
  Pair p;
  Logger log(0);
  RpcNotifyHooks hooks(p.engine.get(), log);
  std::thread t([&] {
    Peer peer;
    peer.serve_one(p.client.get(), nullptr);
    p.client.reset();
  });
  auto st = hooks.fire(HookPoint::pre_restore, 0);
  t.join();
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, Errc::aborted);
  EXPECT_NE(st.error().message.find("closed the connection"), std::string::npos);
}

TEST(RpcNotifyHooks, QueryExtFilesCollectsTheClientsExternals) {
  Pair p;
  Logger log(0);
  RpcNotifyHooks hooks(p.engine.get(), log);
  Peer peer;
  criu_req yes = ack(true);
  yes.mutable_opts()->set_images_dir_fd(-1);
  yes.mutable_opts()->add_external("file[1f:2a3b]");
  yes.mutable_opts()->add_external("unix[12345]");
  std::thread t([&] { peer.serve_one(p.client.get(), &yes); });
  auto st = hooks.fire(HookPoint::query_ext_files, 0);
  t.join();
  ASSERT_TRUE(st);
  EXPECT_EQ(hooks.extra_external(), (std::vector<std::string>{"file[1f:2a3b]", "unix[12345]"}));
}

// --- HookChain ---

class Recorder final : public Hooks {
 public:
  Recorder(std::string name, std::vector<std::string>& log, bool fails = false)
      : name_(std::move(name)), log_(log), fails_(fails) {}
  Status fire(HookPoint point, pid_t pid) override {
    log_.push_back(name_ + ":" + hook_name(point) + ":" + std::to_string(pid));
    if (fails_) return fail(make_error(Errc::aborted, "hook", name_, "refused"));
    return {};
  }

 private:
  std::string name_;
  std::vector<std::string>& log_;
  bool fails_;
};

TEST(HookChain, FansOutInOrderAndStopsAtTheFirstFailure) {
  std::vector<std::string> seen;
  Recorder rpc("rpc", seen), scripts("scripts", seen), refusing("refusing", seen, true);
  HookChain chain{&rpc, &scripts};
  ASSERT_TRUE(chain.fire(HookPoint::post_restore, 7));
  EXPECT_EQ(seen, (std::vector<std::string>{"rpc:post-restore:7", "scripts:post-restore:7"}));

  seen.clear();
  HookChain failing;
  failing.add(refusing);
  failing.add(scripts);
  auto st = failing.fire(HookPoint::pre_dump, 0);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().object, "refusing");
  EXPECT_EQ(seen, (std::vector<std::string>{"refusing:pre-dump:0"}));
}

TEST(HookChain, RpcNackKeepsTheScriptsFromRunning) {
  TempDir dir;
  std::string out = dir.file("actions");
  Pair p;
  Logger log(0);
  RpcNotifyHooks notify(p.engine.get(), log);
  ScriptHooks scripts({recorder("S", out)}, "/nonexistent", log);
  HookChain chain{&notify, &scripts};
  Peer peer;
  criu_req no = ack(false);
  std::thread t([&] { peer.serve_one(p.client.get(), &no); });
  auto st = chain.fire(HookPoint::pre_restore, 0);
  t.join();
  ASSERT_FALSE(st);
  EXPECT_EQ(peer.seen.notify().script(), "pre-restore");
  EXPECT_FALSE(fs::exists(out));
}

}  // namespace
}  // namespace crshim
