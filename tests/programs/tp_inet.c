/* Inet sockets: a TCP listener on 127.0.0.1 (SO_REUSEADDR, TCP_NODELAY, SO_KEEPALIVE, set buffer
 * sizes), a bound UDP socket and a connected one, an unbound non-blocking TCP socket, and an IPv6
 * listener on ::1 (IPV6_V6ONLY) when IPv6 is available. After restore: the same addresses and options,
 * the listeners accept new connections and the UDP sockets exchange datagrams. */
#include "tp.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

struct snap {
  struct sockaddr_storage name, peer;
  socklen_t nlen, plen;
  int reuse, nodelay, keepalive, rcvbuf, v6only, flags;
};

static int lst, lst6 = -1, ubound, uconn, unbound;
static struct snap s_lst, s_lst6, s_ub, s_uc, s_unb;

static int getint(int fd, int level, int opt) {
  int v = -1;
  socklen_t len = sizeof v;
  if (getsockopt(fd, level, opt, &v, &len) < 0) return -1;
  return v;
}

static void take(int fd, struct snap* s, int tcp, int v6) {
  memset(s, 0, sizeof *s);
  s->nlen = sizeof s->name;
  getsockname(fd, (struct sockaddr*)&s->name, &s->nlen);
  s->plen = sizeof s->peer;
  if (getpeername(fd, (struct sockaddr*)&s->peer, &s->plen) < 0) s->plen = 0;
  s->reuse = getint(fd, SOL_SOCKET, SO_REUSEADDR);
  s->keepalive = getint(fd, SOL_SOCKET, SO_KEEPALIVE);
  s->rcvbuf = getint(fd, SOL_SOCKET, SO_RCVBUF);
  s->nodelay = tcp ? getint(fd, IPPROTO_TCP, TCP_NODELAY) : 0;
  s->v6only = v6 ? getint(fd, IPPROTO_IPV6, IPV6_V6ONLY) : 0;
  s->flags = fcntl(fd, F_GETFL);
}

static void same(int fd, const struct snap* before, int tcp, int v6, const char* what) {
  struct snap now;
  take(fd, &now, tcp, v6);
  TP_CHECK(now.nlen == before->nlen && memcmp(&now.name, &before->name, now.nlen) == 0, "%s: local address changed", what);
  TP_CHECK(now.plen == before->plen && memcmp(&now.peer, &before->peer, now.plen) == 0, "%s: peer address changed", what);
  TP_CHECK(now.reuse == before->reuse, "%s: SO_REUSEADDR %d != %d", what, now.reuse, before->reuse);
  TP_CHECK(now.keepalive == before->keepalive, "%s: SO_KEEPALIVE %d != %d", what, now.keepalive, before->keepalive);
  TP_CHECK(now.rcvbuf == before->rcvbuf, "%s: SO_RCVBUF %d != %d", what, now.rcvbuf, before->rcvbuf);
  TP_CHECK(now.nodelay == before->nodelay, "%s: TCP_NODELAY %d != %d", what, now.nodelay, before->nodelay);
  TP_CHECK(now.v6only == before->v6only, "%s: IPV6_V6ONLY %d != %d", what, now.v6only, before->v6only);
  TP_CHECK(now.flags == before->flags, "%s: file flags %o != %o", what, now.flags, before->flags);
}

static void set1(int fd, int level, int opt) {
  int one = 1;
  TP_CHECK(setsockopt(fd, level, opt, &one, sizeof one) == 0, "setsockopt %d: %s", opt, strerror(errno));
}

/* A new connection to listener `l` is accepted and carries bytes both ways. */
static void check_accepts(int l, const struct snap* s, const char* what) {
  int c = socket(s->name.ss_family, SOCK_STREAM, 0);
  TP_CHECK(c >= 0, "socket");
  TP_CHECK(connect(c, (const struct sockaddr*)&s->name, s->nlen) == 0, "%s: connect: %s", what, strerror(errno));
  int a = accept(l, NULL, NULL);
  TP_CHECK(a >= 0, "%s: accept: %s", what, strerror(errno));
  TP_CHECK(write(c, "ping", 4) == 4, "write");
  char buf[8] = {0};
  TP_CHECK(read(a, buf, sizeof buf) == 4 && memcmp(buf, "ping", 4) == 0, "%s: accepted data", what);
  TP_CHECK(write(a, "pong", 4) == 4, "write");
  TP_CHECK(read(c, buf, sizeof buf) == 4 && memcmp(buf, "pong", 4) == 0, "%s: reply data", what);
  /* The client closes first, so TIME_WAIT lands on its port and not on the listener's. */
  close(c);
  TP_CHECK(read(a, buf, sizeof buf) == 0, "%s: no EOF after the client closed", what);
  close(a);
}

int main(int argc, char** argv) {
  tp_init(argc, argv);
  struct sockaddr_in lo = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};

  lst = socket(AF_INET, SOCK_STREAM, 0);
  set1(lst, SOL_SOCKET, SO_REUSEADDR);
  set1(lst, SOL_SOCKET, SO_KEEPALIVE);
  set1(lst, IPPROTO_TCP, TCP_NODELAY);
  int rcv = 50000;
  setsockopt(lst, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);
  TP_CHECK(bind(lst, (struct sockaddr*)&lo, sizeof lo) == 0, "bind: %s", strerror(errno));
  TP_CHECK(listen(lst, 7) == 0, "listen");

  ubound = socket(AF_INET, SOCK_DGRAM, 0);
  TP_CHECK(bind(ubound, (struct sockaddr*)&lo, sizeof lo) == 0, "bind udp");
  struct sockaddr_in ua;
  socklen_t ualen = sizeof ua;
  getsockname(ubound, (struct sockaddr*)&ua, &ualen);
  uconn = socket(AF_INET, SOCK_DGRAM, 0);
  TP_CHECK(connect(uconn, (struct sockaddr*)&ua, sizeof ua) == 0, "connect udp");

  unbound = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);

  lst6 = socket(AF_INET6, SOCK_STREAM, 0);
  struct sockaddr_in6 lo6 = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
  if (lst6 >= 0) {
    set1(lst6, IPPROTO_IPV6, IPV6_V6ONLY);
    if (bind(lst6, (struct sockaddr*)&lo6, sizeof lo6) < 0 || listen(lst6, 3) < 0) {
      close(lst6);
      lst6 = -1;  /* no IPv6 loopback here */
    }
  }
  take(lst, &s_lst, 1, 0);
  if (lst6 >= 0) take(lst6, &s_lst6, 1, 1);
  take(ubound, &s_ub, 0, 0);
  take(uconn, &s_uc, 0, 0);
  take(unbound, &s_unb, 1, 0);
  TP_CHECK(s_lst.reuse == 1 && s_lst.nodelay == 1 && s_lst.keepalive == 1, "options not set before the dump");
  tp_ready(argv);
  tp_wait_for_term(NULL);

  same(lst, &s_lst, 1, 0, "tcp listener");
  if (lst6 >= 0) same(lst6, &s_lst6, 1, 1, "tcp6 listener");
  same(ubound, &s_ub, 0, 0, "bound udp");
  same(uconn, &s_uc, 0, 0, "connected udp");
  same(unbound, &s_unb, 1, 0, "unbound tcp");
  TP_CHECK(getint(lst, SOL_SOCKET, SO_ACCEPTCONN) == 1, "the listener does not listen");
  check_accepts(lst, &s_lst, "tcp listener");
  if (lst6 >= 0) check_accepts(lst6, &s_lst6, "tcp6 listener");

  TP_CHECK(send(uconn, "dgram1", 6, 0) == 6, "udp send: %s", strerror(errno));
  char buf[16] = {0};
  struct sockaddr_storage from;
  socklen_t flen = sizeof from;
  TP_CHECK(recvfrom(ubound, buf, sizeof buf, 0, (struct sockaddr*)&from, &flen) == 6 && memcmp(buf, "dgram1", 6) == 0,
           "udp datagram not received");
  TP_CHECK(sendto(ubound, "dgram2", 6, 0, (struct sockaddr*)&from, flen) == 6, "udp reply: %s", strerror(errno));
  memset(buf, 0, sizeof buf);
  TP_CHECK(recv(uconn, buf, sizeof buf, 0) == 6 && memcmp(buf, "dgram2", 6) == 0, "udp reply not received");
  tp_pass();
}
