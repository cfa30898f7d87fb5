/* Unix sockets bound to paths of the process's own root (run as the init of a mount namespace, its
 * root a rootfs directory): a datagram socket bound to /sock/a, an unbound one connected to it one-way
 * (connected again by path at restore), and a stream listener /sock/lis with one accepted connection.
 * After restore the names, the connections and the socket files in this root must be as they were. */
#include "tp.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

static struct sockaddr_un addr(const char* path) {
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
  return a;
}

static void expect_name(int fd, int peer, const char* want) {
  struct sockaddr_un a;
  socklen_t len = sizeof a;
  memset(&a, 0, sizeof a);
  int r = peer ? getpeername(fd, (struct sockaddr*)&a, &len) : getsockname(fd, (struct sockaddr*)&a, &len);
  TP_CHECK(r == 0, "get%sname of fd %d: %s", peer ? "peer" : "sock", fd, strerror(errno));
  TP_CHECK(!strcmp(a.sun_path, want), "fd %d %s '%s', expected '%s'", fd, peer ? "peer" : "name", a.sun_path, want);
}

int main(int argc, char** argv) {
  tp_init(argc, argv);
  mkdir("/sock", 0755);
  unlink("/sock/a");
  unlink("/sock/lis");
  int a = socket(AF_UNIX, SOCK_DGRAM, 0), b = socket(AF_UNIX, SOCK_DGRAM, 0);
  struct sockaddr_un sa = addr("/sock/a"), sl = addr("/sock/lis");
  TP_CHECK(bind(a, (struct sockaddr*)&sa, sizeof sa) == 0, "bind /sock/a: %s", strerror(errno));
  TP_CHECK(connect(b, (struct sockaddr*)&sa, sizeof sa) == 0, "connect /sock/a: %s", strerror(errno));
  int lis = socket(AF_UNIX, SOCK_STREAM, 0), cli = socket(AF_UNIX, SOCK_STREAM, 0);
  TP_CHECK(bind(lis, (struct sockaddr*)&sl, sizeof sl) == 0 && listen(lis, 4) == 0, "listen /sock/lis: %s", strerror(errno));
  TP_CHECK(connect(cli, (struct sockaddr*)&sl, sizeof sl) == 0, "connect /sock/lis: %s", strerror(errno));
  int acc = accept(lis, NULL, NULL);
  TP_CHECK(acc >= 0, "accept");
  TP_CHECK(chmod("/sock/a", 0600) == 0, "chmod");
  struct stat before;
  TP_CHECK(stat("/sock/a", &before) == 0, "stat");

  tp_ready(argv);
  tp_wait_for_term(NULL);

  expect_name(a, 0, "/sock/a");
  expect_name(b, 1, "/sock/a");
  expect_name(lis, 0, "/sock/lis");
  expect_name(cli, 1, "/sock/lis");
  expect_name(acc, 0, "/sock/lis");
  struct stat after;
  TP_CHECK(stat("/sock/a", &after) == 0 && S_ISSOCK(after.st_mode), "/sock/a is not a socket file in this root");
  TP_CHECK((after.st_mode & 0777) == 0600, "/sock/a mode %o", after.st_mode & 0777);
  TP_CHECK(send(b, "ping", 4, 0) == 4, "send b->a: %s", strerror(errno));
  char buf[8] = {0};
  TP_CHECK(recv(a, buf, sizeof buf, MSG_DONTWAIT) == 4 && !memcmp(buf, "ping", 4), "a did not get b's datagram");
  TP_CHECK(send(cli, "xy", 2, 0) == 2 && recv(acc, buf, 2, 0) == 2 && !memcmp(buf, "xy", 2), "stream pair broken");
  /* The listener's file in this root still leads to it. */
  int c2 = socket(AF_UNIX, SOCK_STREAM, 0);
  TP_CHECK(connect(c2, (struct sockaddr*)&sl, sizeof sl) == 0, "new connect to /sock/lis: %s", strerror(errno));
  int acc2 = accept(lis, NULL, NULL);
  TP_CHECK(acc2 >= 0, "accept after restore");
  tp_pass();
}
