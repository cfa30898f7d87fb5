/* Unix sockets keep connections, queued data (with datagram boundaries), names, listening state,
 * shutdown state and options across checkpoint/restore. argv[3] = a scratch directory. */
#include "tp.h"

#include <poll.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#define STREAM_BYTES 100000

static unsigned char pattern(size_t i) { return (unsigned char)(i * 13 + (i >> 8)); }

static void send_all(int fd, const void* buf, size_t n, const char* what) {
  TP_CHECK(send(fd, buf, n, MSG_DONTWAIT) == (ssize_t)n, "%s: send: %s", what, strerror(errno));
}

/* Receives one message (waiting up to a second) and checks it is exactly `want`. */
static void expect_msg(int fd, const void* want, size_t n, const char* what) {
  char buf[65536];
  struct pollfd p = {fd, POLLIN, 0};
  TP_CHECK(poll(&p, 1, 1000) == 1, "%s: nothing to receive", what);
  ssize_t r = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
  TP_CHECK(r == (ssize_t)n && !memcmp(buf, want, n), "%s: got %zd bytes '%.*s'", what, r, (int)(r > 0 ? r : 0), buf);
}

static void expect_stream(int fd, size_t n, const char* what) {
  static unsigned char buf[STREAM_BYTES];
  size_t done = 0;
  while (done < n) {
    struct pollfd p = {fd, POLLIN, 0};
    TP_CHECK(poll(&p, 1, 1000) == 1, "%s: only %zu of %zu bytes", what, done, n);
    ssize_t r = recv(fd, buf, n - done, MSG_DONTWAIT);
    TP_CHECK(r > 0, "%s: recv: %s", what, strerror(errno));
    for (ssize_t i = 0; i < r; i++) TP_CHECK(buf[i] == pattern(done + (size_t)i), "%s: byte %zu", what, done + (size_t)i);
    done += (size_t)r;
  }
}

static void expect_empty(int fd, const char* what) {
  char c;
  ssize_t r = recv(fd, &c, 1, MSG_DONTWAIT | MSG_PEEK);
  TP_CHECK(r < 0 && errno == EAGAIN, "%s: queue not empty (%zd, %s)", what, r, strerror(errno));
}

static int int_opt(int fd, int opt) {
  int v = -1;
  socklen_t len = sizeof v;
  getsockopt(fd, SOL_SOCKET, opt, &v, &len);
  return v;
}

struct name {
  struct sockaddr_un a;
  socklen_t len;
};

static struct name sock_name(int fd) {
  struct name n;
  memset(&n, 0, sizeof n);
  n.len = sizeof n.a;
  TP_CHECK(getsockname(fd, (struct sockaddr*)&n.a, &n.len) == 0, "getsockname: %s", strerror(errno));
  return n;
}

static struct name peer_name(int fd) {
  struct name n;
  memset(&n, 0, sizeof n);
  n.len = sizeof n.a;
  TP_CHECK(getpeername(fd, (struct sockaddr*)&n.a, &n.len) == 0, "getpeername: %s", strerror(errno));
  return n;
}

static int same_name(struct name x, struct name y) { return x.len == y.len && !memcmp(&x.a, &y.a, x.len); }

int main(int argc, char** argv) {
  tp_init(argc, argv);
  TP_CHECK(argc >= 4, "usage: tp_unix READY RESULT DIR");
  TP_CHECK(chdir(argv[3]) == 0, "chdir %s", argv[3]);

  /* 1. Stream pair: 100000 bytes one way, a short message the other; non-blocking end, send timeout. */
  int s[2];
  TP_CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, s) == 0, "socketpair stream");
  static unsigned char big[STREAM_BYTES];
  for (size_t i = 0; i < sizeof big; i++) big[i] = pattern(i);
  send_all(s[0], big, sizeof big, "stream 0->1");
  send_all(s[1], "pong", 4, "stream 1->0");
  fcntl(s[1], F_SETFL, O_NONBLOCK);
  struct timeval tmo = {1, 500000};
  TP_CHECK(setsockopt(s[0], SOL_SOCKET, SO_SNDTIMEO, &tmo, sizeof tmo) == 0, "SO_SNDTIMEO");

  /* 2. Datagram pair: three datagrams one way, one back; SO_PASSCRED on the receiver. */
  int d[2];
  TP_CHECK(socketpair(AF_UNIX, SOCK_DGRAM, 0, d) == 0, "socketpair dgram");
  send_all(d[0], "one", 3, "dgram 1");
  send_all(d[0], "two-22", 6, "dgram 2");
  send_all(d[0], "three-333", 9, "dgram 3");
  send_all(d[1], "back", 4, "dgram back");
  int on = 1;
  TP_CHECK(setsockopt(d[1], SOL_SOCKET, SO_PASSCRED, &on, sizeof on) == 0, "SO_PASSCRED");

  /* 3. Seqpacket pair: two records, then the sender shuts its side down. */
  int q[2];
  TP_CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, q) == 0, "socketpair seqpacket");
  send_all(q[0], "record-A", 8, "record A");
  send_all(q[0], "record-BB", 9, "record B");
  TP_CHECK(shutdown(q[0], SHUT_WR) == 0, "shutdown");

  /* 4. Named listener, a client it accepted (data both ways), the client with a bigger SO_RCVBUF. */
  unlink("srv.sock");
  int lis = socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  strcpy(sa.sun_path, "srv.sock");
  TP_CHECK(bind(lis, (struct sockaddr*)&sa, sizeof sa) == 0, "bind srv.sock: %s", strerror(errno));
  TP_CHECK(listen(lis, 7) == 0, "listen");
  int cli = socket(AF_UNIX, SOCK_STREAM, 0);
  int rcvbuf = 65536;
  TP_CHECK(setsockopt(cli, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf) == 0, "SO_RCVBUF");
  TP_CHECK(connect(cli, (struct sockaddr*)&sa, sizeof sa) == 0, "connect: %s", strerror(errno));
  int acc = accept(lis, NULL, NULL);
  TP_CHECK(acc >= 0, "accept");
  send_all(cli, "to-server", 9, "client->server");
  send_all(acc, "to-client!", 10, "server->client");
  int cli_rcvbuf = int_opt(cli, SO_RCVBUF);
  struct name lis_name = sock_name(lis), acc_name = sock_name(acc), cli_peer = peer_name(cli);

  /* 5. Abstract datagram socket with datagrams from an unbound socket and from one connected to it. */
  int ab = socket(AF_UNIX, SOCK_DGRAM, 0);
  struct sockaddr_un aa = {.sun_family = AF_UNIX};
  int alen = snprintf(aa.sun_path + 1, sizeof aa.sun_path - 1, "crshim-tp-unix-%d", (int)getpid());
  socklen_t aalen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + alen);
  TP_CHECK(bind(ab, (struct sockaddr*)&aa, aalen) == 0, "bind abstract: %s", strerror(errno));
  int loose = socket(AF_UNIX, SOCK_DGRAM, 0);
  TP_CHECK(sendto(loose, "loose-1", 7, 0, (struct sockaddr*)&aa, aalen) == 7, "sendto abstract");
  int tied = socket(AF_UNIX, SOCK_DGRAM, 0);
  TP_CHECK(connect(tied, (struct sockaddr*)&aa, aalen) == 0, "connect abstract");
  send_all(tied, "tied-2", 6, "tied");
  struct name ab_name = sock_name(ab);

  /* 6. A stream end whose peer sent a last message and closed. */
  int e[2];
  TP_CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, e) == 0, "socketpair e");
  send_all(e[0], "bye", 3, "last words");
  close(e[0]);

  /* 7. A listener whose socket file was removed after bind. */
  unlink("gone.sock");
  int gone = socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un ga = {.sun_family = AF_UNIX};
  strcpy(ga.sun_path, "gone.sock");
  TP_CHECK(bind(gone, (struct sockaddr*)&ga, sizeof ga) == 0 && listen(gone, 1) == 0, "bind gone.sock");
  TP_CHECK(unlink("gone.sock") == 0, "unlink gone.sock");

  /* 8. A path-named datagram socket with restricted permissions, and a datagram queued on it. */
  unlink("dgram.sock");
  int nd = socket(AF_UNIX, SOCK_DGRAM, 0);
  struct sockaddr_un na = {.sun_family = AF_UNIX};
  strcpy(na.sun_path, "dgram.sock");
  TP_CHECK(bind(nd, (struct sockaddr*)&na, sizeof na) == 0, "bind dgram.sock");
  TP_CHECK(chmod("dgram.sock", 0604) == 0, "chmod");
  TP_CHECK(sendto(loose, "to-path", 7, 0, (struct sockaddr*)&na, sizeof na) == 7, "sendto dgram.sock");

  tp_ready(argv);
  tp_wait_for_term(NULL);

  /* Options and flags. */
  TP_CHECK(fcntl(s[1], F_GETFL) & O_NONBLOCK, "s[1] lost O_NONBLOCK");
  TP_CHECK(!(fcntl(s[0], F_GETFL) & O_NONBLOCK), "s[0] became non-blocking");
  struct timeval got = {0, 0};
  socklen_t glen = sizeof got;
  getsockopt(s[0], SOL_SOCKET, SO_SNDTIMEO, &got, &glen);
  TP_CHECK(got.tv_sec == 1 && got.tv_usec == 500000, "SO_SNDTIMEO is %ld.%06ld", (long)got.tv_sec, (long)got.tv_usec);
  TP_CHECK(int_opt(d[1], SO_PASSCRED) == 1, "SO_PASSCRED lost");
  TP_CHECK(int_opt(d[0], SO_PASSCRED) == 0, "SO_PASSCRED appeared");
  TP_CHECK(int_opt(cli, SO_RCVBUF) == cli_rcvbuf, "SO_RCVBUF %d, was %d", int_opt(cli, SO_RCVBUF), cli_rcvbuf);
  TP_CHECK(int_opt(lis, SO_ACCEPTCONN) == 1, "listener is not listening");
  TP_CHECK(int_opt(q[1], SO_TYPE) == SOCK_SEQPACKET && int_opt(d[0], SO_TYPE) == SOCK_DGRAM, "socket types");

  /* 1. */
  expect_stream(s[1], sizeof big, "stream 0->1");
  expect_empty(s[1], "stream 0->1");
  expect_msg(s[0], "pong", 4, "stream 1->0");
  send_all(s[1], "more", 4, "stream after restore");
  expect_msg(s[0], "more", 4, "stream after restore");

  /* 2. Boundaries: each datagram on its own. */
  expect_msg(d[1], "one", 3, "dgram 1");
  expect_msg(d[1], "two-22", 6, "dgram 2");
  expect_msg(d[1], "three-333", 9, "dgram 3");
  expect_empty(d[1], "dgram");
  expect_msg(d[0], "back", 4, "dgram back");
  send_all(d[1], "again", 5, "dgram after restore");
  expect_msg(d[0], "again", 5, "dgram after restore");

  /* 3. Records, then end of file; the shut-down side cannot send. */
  expect_msg(q[1], "record-A", 8, "record A");
  expect_msg(q[1], "record-BB", 9, "record B");
  char c;
  TP_CHECK(recv(q[1], &c, 1, MSG_DONTWAIT) == 0, "seqpacket: no end of file after the records");
  TP_CHECK(send(q[0], "x", 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0 && errno == EPIPE, "send after SHUT_WR worked");
  send_all(q[1], "reply", 5, "seqpacket reply");
  expect_msg(q[0], "reply", 5, "seqpacket reply");

  /* 4. Names, data, and a new connection to the listener. */
  TP_CHECK(same_name(sock_name(lis), lis_name), "listener name '%s'", sock_name(lis).a.sun_path);
  TP_CHECK(!strcmp(lis_name.a.sun_path, "srv.sock"), "listener name was '%s'", lis_name.a.sun_path);
  TP_CHECK(same_name(sock_name(acc), acc_name), "accepted socket name '%s'", sock_name(acc).a.sun_path);
  TP_CHECK(same_name(peer_name(cli), cli_peer), "client peer name '%s'", peer_name(cli).a.sun_path);
  expect_msg(acc, "to-server", 9, "client->server");
  expect_msg(cli, "to-client!", 10, "server->client");
  struct stat st;
  TP_CHECK(stat("srv.sock", &st) == 0 && S_ISSOCK(st.st_mode), "srv.sock is gone");
  int cli2 = socket(AF_UNIX, SOCK_STREAM, 0);
  TP_CHECK(connect(cli2, (struct sockaddr*)&sa, sizeof sa) == 0, "new connect: %s", strerror(errno));
  int acc2 = accept(lis, NULL, NULL);
  TP_CHECK(acc2 >= 0, "new accept: %s", strerror(errno));
  send_all(cli2, "new", 3, "new connection");
  expect_msg(acc2, "new", 3, "new connection");

  /* 5. */
  TP_CHECK(same_name(sock_name(ab), ab_name) && ab_name.a.sun_path[0] == 0, "abstract name lost");
  struct sockaddr_un from;
  socklen_t flen = sizeof from;
  char buf[32] = {0};
  ssize_t r = recvfrom(ab, buf, sizeof buf, MSG_DONTWAIT, (struct sockaddr*)&from, &flen);
  TP_CHECK(r == 7 && !memcmp(buf, "loose-1", 7), "abstract datagram 1 '%s'", buf);
  TP_CHECK(flen == 0, "datagram from a named sender (address length %u)", (unsigned)flen);
  expect_msg(ab, "tied-2", 6, "abstract datagram 2");
  expect_empty(ab, "abstract");
  TP_CHECK(same_name(peer_name(tied), ab_name), "connected socket lost its peer");
  send_all(tied, "tied-3", 6, "tied after restore");
  expect_msg(ab, "tied-3", 6, "tied after restore");
  TP_CHECK(sendto(loose, "l", 1, 0, (struct sockaddr*)&aa, aalen) == 1, "sendto after restore");
  expect_msg(ab, "l", 1, "loose after restore");

  /* 6. */
  expect_msg(e[1], "bye", 3, "last words");
  TP_CHECK(recv(e[1], &c, 1, MSG_DONTWAIT) == 0, "no end of file after the peer closed");
  TP_CHECK(send(e[1], "x", 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0 && errno == EPIPE, "send to a closed peer worked");

  /* 7. */
  TP_CHECK(!strcmp(sock_name(gone).a.sun_path, "gone.sock"), "removed listener name '%s'", sock_name(gone).a.sun_path);
  TP_CHECK(stat("gone.sock", &st) < 0 && errno == ENOENT, "gone.sock exists again");
  TP_CHECK(int_opt(gone, SO_ACCEPTCONN) == 1, "removed listener is not listening");

  /* 8. */
  TP_CHECK(stat("dgram.sock", &st) == 0 && S_ISSOCK(st.st_mode) && (st.st_mode & 07777) == 0604,
           "dgram.sock mode %o", (unsigned)st.st_mode);
  TP_CHECK(!strcmp(sock_name(nd).a.sun_path, "dgram.sock"), "dgram.sock name");
  expect_msg(nd, "to-path", 7, "datagram to dgram.sock");
  TP_CHECK(sendto(loose, "p", 1, 0, (struct sockaddr*)&na, sizeof na) == 1, "sendto dgram.sock after restore");
  expect_msg(nd, "p", 1, "dgram.sock after restore");
  tp_pass();
}
