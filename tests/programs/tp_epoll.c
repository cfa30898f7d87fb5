/* An epoll instance keeps its targets (events, data, EPOLLET/EPOLLEXCLUSIVE) across checkpoint/restore:
 * only the ready target is reported, with its data; an idle one reports once it becomes ready.
 * With argv[3] = "closed-target" or "socket-target" it instead holds an epoll the dump must refuse: one
 * whose target fd was closed (the file lives on under another fd), or one watching a UDP socket. */
#include "tp.h"

#include <stdint.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>

#define DATA_READY 0xA1A1A1A1A1ull
#define DATA_IDLE 0xB2ull
#define DATA_TIMER 0xC3C3000000000000ull
#define DATA_NESTED 0xD4ull

static void add(int ep, int fd, uint32_t events, uint64_t data) {
  struct epoll_event ev = {.events = events, .data.u64 = data};
  TP_CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == 0, "epoll_ctl add %d: %s", fd, strerror(errno));
}

static int count_lines(int fd, const char* prefix) {
  char path[64], buf[4096];
  snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
  int f = open(path, O_RDONLY);
  ssize_t n = read(f, buf, sizeof buf - 1);
  close(f);
  TP_CHECK(n > 0, "read %s", path);
  buf[n] = 0;
  int count = 0;
  for (char* p = buf; (p = strstr(p, prefix)); p++) count++;
  return count;
}

/* Sets up an epoll the dump must refuse, then waits. */
static void unsupported_epoll(char** argv, const char* mode) {
  int ep = epoll_create1(0);
  int target;
  if (!strcmp(mode, "closed-target")) {
    target = eventfd(0, 0);
    add(ep, target, EPOLLIN, 1);
    TP_CHECK(dup2(target, 70) == 70, "dup2");
    close(target);
  } else {
    target = socket(AF_NETLINK, SOCK_DGRAM, 0); /* a kind no fd support covers yet */
    TP_CHECK(target >= 0, "socket");
    TP_CHECK(dup2(target, 71) == 71, "dup2");
    close(target);
    add(ep, 71, EPOLLIN, 1);
  }
  tp_ready(argv);
  tp_wait_for_term(NULL);
  tp_pass();
}

int main(int argc, char** argv) {
  tp_init(argc, argv);
  if (argc >= 4) unsupported_epoll(argv, argv[3]);
  int ready = eventfd(3, EFD_NONBLOCK);
  int idle = eventfd(0, EFD_NONBLOCK);
  int timer = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
  TP_CHECK(ready >= 0 && idle >= 0 && timer >= 0, "create targets");
  int ep = epoll_create1(EPOLL_CLOEXEC);
  TP_CHECK(ep >= 0, "epoll_create1");
  add(ep, ready, EPOLLIN, DATA_READY);
  add(ep, idle, EPOLLIN | EPOLLET, DATA_IDLE);
  add(ep, timer, EPOLLIN | EPOLLEXCLUSIVE, DATA_TIMER);
  TP_CHECK(dup2(ep, 50) == 50, "dup2");
  /* An epoll watching the first one. */
  int outer = epoll_create1(0);
  add(outer, ep, EPOLLIN, DATA_NESTED);

  tp_ready(argv);
  tp_wait_for_term(NULL);

  TP_CHECK(count_lines(ep, "tfd:") == 3, "epoll has %d targets", count_lines(ep, "tfd:"));
  struct epoll_event evs[8];
  for (int round = 0; round < 2; round++) {
    int fd = round ? 50 : ep;
    int n = epoll_wait(fd, evs, 8, 0);
    TP_CHECK(n == 1, "epoll_wait on fd %d returned %d events", fd, n);
    TP_CHECK(evs[0].data.u64 == DATA_READY && evs[0].events == EPOLLIN, "ready event data %llx events %x",
             (unsigned long long)evs[0].data.u64, evs[0].events);
  }
  int n = epoll_wait(outer, evs, 8, 0);
  TP_CHECK(n == 1 && evs[0].data.u64 == DATA_NESTED, "nested epoll returned %d events", n);
  /* The idle target is registered: it reports once it has a count (edge-triggered: once). */
  uint64_t one = 1;
  TP_CHECK(write(idle, &one, sizeof one) == sizeof one, "write idle");
  n = epoll_wait(ep, evs, 8, 0);
  TP_CHECK(n == 2, "after writing the idle eventfd epoll_wait returned %d events", n);
  int seen_idle = 0;
  for (int i = 0; i < n; i++) seen_idle |= evs[i].data.u64 == DATA_IDLE;
  TP_CHECK(seen_idle, "idle target not reported");
  n = epoll_wait(ep, evs, 8, 0);
  TP_CHECK(n == 1 && evs[0].data.u64 == DATA_READY, "EPOLLET lost: %d events", n);
  /* The timer target fires through the exclusive registration. */
  struct itimerspec its = {.it_value = {0, 1000000}};
  TP_CHECK(timerfd_settime(timer, 0, &its, NULL) == 0, "timerfd_settime");
  usleep(20000);
  n = epoll_wait(ep, evs, 8, 0);
  int seen_timer = 0;
  for (int i = 0; i < n; i++) seen_timer |= evs[i].data.u64 == DATA_TIMER;
  TP_CHECK(seen_timer, "timer target not reported (%d events)", n);
  TP_CHECK(count_lines(ep, "events: 10000019") == 1, "EPOLLEXCLUSIVE target flags lost");
  TP_CHECK(count_lines(ep, "events: 80000019") == 1, "EPOLLET target flags lost");
  TP_CHECK(fcntl(ep, F_GETFD) & FD_CLOEXEC, "FD_CLOEXEC lost");
  TP_CHECK(!(fcntl(50, F_GETFD) & FD_CLOEXEC), "FD_CLOEXEC appeared on the dup");
  tp_pass();
}
