/* Established TCP connections: a client connection to an echo server outside (argv[3] = its port on
 * 127.0.0.1) with an echoed reply left unread, and both ends of a connection made inside this process
 * (listen/connect/accept) with unread data queued in both directions. After restore: the queued bytes
 * arrive, new data flows both ways, the server echoes, addresses are unchanged and the listener accepts. */
#include "tp.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

static struct sockaddr_in name_of(int fd, int peer) {
  struct sockaddr_in a;
  socklen_t len = sizeof a;
  memset(&a, 0, sizeof a);
  if (peer)
    getpeername(fd, (struct sockaddr*)&a, &len);
  else
    getsockname(fd, (struct sockaddr*)&a, &len);
  return a;
}

/* Waits until `n` bytes are queued for reading on `fd`. */
static void wait_queued(int fd, int n, const char* what) {
  for (int i = 0; i < 2000; i++) {
    int q = 0;
    if (ioctl(fd, FIONREAD, &q) == 0 && q >= n) return;
    usleep(1000);
  }
  tp_fail("%s: data never arrived", what);
}

/* Reads exactly `len` bytes (the peer may deliver them in pieces) and compares them with `want`. */
static void expect(int fd, const char* want, const char* what) {
  size_t len = strlen(want), got = 0;
  char buf[256] = {0};
  struct pollfd p = {.fd = fd, .events = POLLIN};
  while (got < len) {
    TP_CHECK(poll(&p, 1, 5000) == 1, "%s: nothing to read (have %zu of %zu bytes)", what, got, len);
    ssize_t n = read(fd, buf + got, len - got);
    TP_CHECK(n > 0, "%s: read: %s", what, n == 0 ? "EOF" : strerror(errno));
    got += (size_t)n;
  }
  TP_CHECK(memcmp(buf, want, len) == 0, "%s: got '%s', want '%s'", what, buf, want);
}

static void put(int fd, const char* s) { TP_CHECK(write(fd, s, strlen(s)) == (ssize_t)strlen(s), "write: %s", strerror(errno)); }

int main(int argc, char** argv) {
  tp_init(argc, argv);
  int port = argc > 3 ? atoi(argv[3]) : 0;
  struct sockaddr_in lo = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};

  /* Both ends here. */
  int l = socket(AF_INET, SOCK_STREAM, 0);
  TP_CHECK(bind(l, (struct sockaddr*)&lo, sizeof lo) == 0 && listen(l, 4) == 0, "listen: %s", strerror(errno));
  struct sockaddr_in la = name_of(l, 0);
  int c = socket(AF_INET, SOCK_STREAM, 0);
  TP_CHECK(connect(c, (struct sockaddr*)&la, sizeof la) == 0, "connect: %s", strerror(errno));
  int a = accept(l, NULL, NULL);
  TP_CHECK(a >= 0, "accept");
  int one = 1;
  setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  put(c, "client-to-server queued");
  put(a, "server-to-client queued");
  wait_queued(a, 23, "pair");
  wait_queued(c, 23, "pair");

  /* A client of the echo server outside. */
  int e = -1;
  if (port) {
    struct sockaddr_in sa = lo;
    sa.sin_port = htons((uint16_t)port);
    e = socket(AF_INET, SOCK_STREAM, 0);
    TP_CHECK(connect(e, (struct sockaddr*)&sa, sizeof sa) == 0, "connect to the echo server: %s", strerror(errno));
    put(e, "echo-before");
    wait_queued(e, 11, "echo");
  }
  struct sockaddr_in cn = name_of(c, 0), cp = name_of(c, 1), an = name_of(a, 0), ap = name_of(a, 1);
  struct sockaddr_in en = e >= 0 ? name_of(e, 0) : cn, ep = e >= 0 ? name_of(e, 1) : cn;
  int nodelay_before = 0;
  socklen_t len = sizeof nodelay_before;
  getsockopt(c, IPPROTO_TCP, TCP_NODELAY, &nodelay_before, &len);
  TP_CHECK(nodelay_before == 1, "TCP_NODELAY not set");
  tp_ready(argv);
  tp_wait_for_term(NULL);

  struct sockaddr_in x;
  x = name_of(c, 0);
  TP_CHECK(memcmp(&x, &cn, sizeof x) == 0, "client local address changed");
  x = name_of(c, 1);
  TP_CHECK(memcmp(&x, &cp, sizeof x) == 0, "client peer address changed");
  x = name_of(a, 0);
  TP_CHECK(memcmp(&x, &an, sizeof x) == 0, "accepted local address changed");
  x = name_of(a, 1);
  TP_CHECK(memcmp(&x, &ap, sizeof x) == 0, "accepted peer address changed");
  int nodelay = 0;
  len = sizeof nodelay;
  getsockopt(c, IPPROTO_TCP, TCP_NODELAY, &nodelay, &len);
  TP_CHECK(nodelay == 1, "TCP_NODELAY lost");

  expect(a, "client-to-server queued", "pair: data queued at the accepted end");
  expect(c, "server-to-client queued", "pair: data queued at the client end");
  put(c, "new from client");
  expect(a, "new from client", "pair: new data to the accepted end");
  put(a, "new from server");
  expect(c, "new from server", "pair: new data to the client end");

  if (e >= 0) {
    x = name_of(e, 0);
    TP_CHECK(memcmp(&x, &en, sizeof x) == 0, "echo client local address changed");
    x = name_of(e, 1);
    TP_CHECK(memcmp(&x, &ep, sizeof x) == 0, "echo client peer address changed");
    expect(e, "echo-before", "echo: reply queued before the dump");
    put(e, "echo-after");
    expect(e, "echo-after", "echo: reply to new data");
  }

  /* The listener still accepts. */
  int n = socket(AF_INET, SOCK_STREAM, 0);
  TP_CHECK(connect(n, (struct sockaddr*)&la, sizeof la) == 0, "new connect: %s", strerror(errno));
  int na = accept(l, NULL, NULL);
  TP_CHECK(na >= 0, "new accept");
  put(n, "fresh");
  expect(na, "fresh", "fresh connection");
  close(n);
  close(na);
  tp_pass();
}
