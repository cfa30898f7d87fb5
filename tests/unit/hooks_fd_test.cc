// Hook points that hand over a file: the RPC NOTIFY with SCM_RIGHTS, the script environment variable.
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "checkpoint/base/log.h"
#include "checkpoint/base/unique_fd.h"
#include "hooks/hook_chain.h"
#include "hooks/rpc_notify.h"
#include "hooks/script_hooks.h"
#include "rpc.pb.h"

namespace crshim {
namespace {

TEST(HooksFd, RpcNotifyCarriesTheFileInScmRights) {
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
  UniqueFd engine(sv[0]), client(sv[1]);
  UniqueFd file(::open("/dev/null", O_RDWR | O_CLOEXEC));
  ASSERT_TRUE(file);
  struct stat want;
  ASSERT_EQ(fstat(file.get(), &want), 0);

  std::string script;
  int fds_received = 0;
  struct stat got {};
  std::thread peer([&] {
    char buf[4096];
    alignas(cmsghdr) char control[CMSG_SPACE(4 * sizeof(int))];
    iovec iov{buf, sizeof buf};
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = control;
    mh.msg_controllen = sizeof control;
    ssize_t n = recvmsg(client.get(), &mh, MSG_CMSG_CLOEXEC);
    if (n <= 0) return;
    criu_resp resp;
    resp.ParseFromArray(buf, int(n));
    script = resp.notify().script();
    for (cmsghdr* c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < count; i++) {
        int fd;
        memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
        fds_received++;
        fstat(fd, &got);
        close(fd);
      }
    }
    criu_req ack;
    ack.set_type(::NOTIFY);
    ack.set_notify_success(true);
    std::string out = ack.SerializeAsString();
    (void)!send(client.get(), out.data(), out.size(), 0);
  });
  Logger log(0);
  RpcNotifyHooks notify(engine.get(), log);
  HookChain chain{&notify};
  Status st = chain.fire_fd(HookPoint::orphan_pts_master, 0, file.get());
  peer.join();
  ASSERT_TRUE(st) << st.error().render();
  EXPECT_EQ(script, "orphan-pts-master");
  EXPECT_EQ(fds_received, 1);
  EXPECT_EQ(got.st_rdev, want.st_rdev);
  EXPECT_EQ(got.st_ino, want.st_ino);
}

TEST(HooksFd, ScriptInheritsTheFileNamedByCrtoolsPtsMasterFd) {
  auto dir = std::filesystem::temp_directory_path() / ("crshim-hooksfd-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  std::string out = (dir / "out").string();
  int p[2];
  ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
  UniqueFd rd(p[0]), wr(p[1]);
  Logger log(0);
  ScriptHooks scripts({"echo hello > /proc/self/fd/$CRTOOLS_PTS_MASTER_FD; echo $CRTOOLS_SCRIPT_ACTION > " + out}, dir.string(), log);
  Status st = scripts.fire_fd(HookPoint::orphan_pts_master, 0, wr.get());
  ASSERT_TRUE(st) << st.error().render();
  wr.reset();
  char buf[64] = {};
  ASSERT_GT(read(rd.get(), buf, sizeof buf - 1), 0);
  EXPECT_STREQ(buf, "hello\n");
  std::ifstream f(out);
  std::string action;
  f >> action;
  EXPECT_EQ(action, "orphan-pts-master");
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace crshim
