/* Unix sockets connected to peers outside the dumped tree (argv[3]: a bound datagram server, argv[4]: a
 * stream listener; both run outside). fd 10 is a datagram socket connected to the server by name, fd 11
 * a stream connection. Before the dump each sends a greeting; after restore each sends "after"; the
 * datagram socket must still be connected to the server's path. */
#include "tp.h"

#include <sys/socket.h>
#include <sys/un.h>

static int connect_to(int type, const char* path, int want_fd) {
  int fd = socket(AF_UNIX, type, 0);
  TP_CHECK(fd >= 0, "socket");
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
  TP_CHECK(connect(fd, (struct sockaddr*)&a, sizeof a) == 0, "connect %s: %s", path, strerror(errno));
  TP_CHECK(dup2(fd, want_fd) == want_fd, "dup2");
  close(fd);
  return want_fd;
}

int main(int argc, char** argv) {
  tp_init(argc, argv);
  TP_CHECK(argc >= 5, "usage: READY RESULT DGRAM_SERVER STREAM_SERVER");
  int dg = connect_to(SOCK_DGRAM, argv[3], 10);
  int st = connect_to(SOCK_STREAM, argv[4], 11);
  TP_CHECK(send(dg, "dgram-before", 12, 0) == 12, "send dgram");
  TP_CHECK(send(st, "stream-before\n", 14, 0) == 14, "send stream");
  tp_ready(argv);
  tp_wait_for_term(NULL);
  struct sockaddr_un peer;
  socklen_t len = sizeof peer;
  TP_CHECK(getpeername(dg, (struct sockaddr*)&peer, &len) == 0, "getpeername: %s", strerror(errno));
  TP_CHECK(!strcmp(peer.sun_path, argv[3]), "datagram peer is '%s', expected '%s'", peer.sun_path, argv[3]);
  TP_CHECK(send(dg, "dgram-after", 11, 0) == 11, "send dgram after restore: %s", strerror(errno));
  TP_CHECK(send(st, "stream-after\n", 13, MSG_NOSIGNAL) == 13, "send stream after restore: %s", strerror(errno));
  tp_pass();
}
