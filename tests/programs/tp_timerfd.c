/* Timerfds keep clock, interval, remaining time, absolute mode and unread expirations. */
#include "tp.h"

#include <stdint.h>
#include <sys/timerfd.h>
#include <time.h>

static const char* fdinfo(int fd, char* buf, size_t size) {
  char path[64];
  snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
  int f = open(path, O_RDONLY);
  ssize_t n = read(f, buf, size - 1);
  close(f);
  TP_CHECK(n > 0, "read %s", path);
  buf[n] = 0;
  return buf;
}

int main(int argc, char** argv) {
  tp_init(argc, argv);
  /* Periodic, 200 ms, left unread for a second: five expirations pending. */
  int periodic = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
  struct itimerspec its = {.it_interval = {0, 200000000}, .it_value = {0, 200000000}};
  TP_CHECK(timerfd_settime(periodic, 0, &its, NULL) == 0, "settime periodic");
  /* Absolute, an hour from now. */
  int absolute = timerfd_create(CLOCK_REALTIME, 0);
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  struct itimerspec abs_its = {.it_value = {now.tv_sec + 3600, 0}};
  TP_CHECK(timerfd_settime(absolute, TFD_TIMER_ABSTIME, &abs_its, NULL) == 0, "settime absolute");
  /* One-shot, expired and unread. */
  int oneshot = timerfd_create(CLOCK_BOOTTIME, TFD_NONBLOCK | TFD_CLOEXEC);
  struct itimerspec one_its = {.it_value = {0, 1000000}};
  TP_CHECK(timerfd_settime(oneshot, 0, &one_its, NULL) == 0, "settime oneshot");
  usleep(1100000);

  tp_ready(argv);
  tp_wait_for_term(NULL);

  char buf[1024];
  uint64_t ticks = 0;
  TP_CHECK(read(periodic, &ticks, sizeof ticks) == sizeof ticks, "read periodic: %s", strerror(errno));
  TP_CHECK(ticks >= 5 && ticks < 10000, "periodic timer gave %llu expirations, expected at least 5",
           (unsigned long long)ticks);
  struct itimerspec cur;
  TP_CHECK(timerfd_gettime(periodic, &cur) == 0, "gettime periodic");
  TP_CHECK(cur.it_interval.tv_sec == 0 && cur.it_interval.tv_nsec == 200000000, "interval %ld.%09ld",
           (long)cur.it_interval.tv_sec, cur.it_interval.tv_nsec);
  TP_CHECK(cur.it_value.tv_sec == 0 && cur.it_value.tv_nsec > 0, "periodic value %ld.%09ld", (long)cur.it_value.tv_sec,
           cur.it_value.tv_nsec);
  TP_CHECK(strstr(fdinfo(periodic, buf, sizeof buf), "clockid: 1\n"), "clock: %s", buf);
  TP_CHECK(fcntl(periodic, F_GETFL) & O_NONBLOCK, "O_NONBLOCK lost");

  TP_CHECK(timerfd_gettime(absolute, &cur) == 0, "gettime absolute");
  TP_CHECK(cur.it_value.tv_sec > 3000 && cur.it_value.tv_sec < 3600 && cur.it_interval.tv_sec == 0,
           "absolute timer has %ld s left", (long)cur.it_value.tv_sec);
  fdinfo(absolute, buf, sizeof buf);
  TP_CHECK(strstr(buf, "settime flags: 01\n") && strstr(buf, "clockid: 0\n"), "absolute timer: %s", buf);
  TP_CHECK(!(fcntl(absolute, F_GETFL) & O_NONBLOCK), "O_NONBLOCK appeared");

  TP_CHECK(read(oneshot, &ticks, sizeof ticks) == sizeof ticks && ticks == 1, "one-shot read %llu (%s)",
           (unsigned long long)ticks, strerror(errno));
  TP_CHECK(read(oneshot, &ticks, sizeof ticks) < 0 && errno == EAGAIN, "one-shot fired again");
  TP_CHECK(timerfd_gettime(oneshot, &cur) == 0 && !cur.it_value.tv_sec && !cur.it_value.tv_nsec, "one-shot rearmed");
  TP_CHECK(strstr(fdinfo(oneshot, buf, sizeof buf), "clockid: 7\n"), "one-shot clock: %s", buf);
  TP_CHECK(fcntl(oneshot, F_GETFD) & FD_CLOEXEC, "FD_CLOEXEC lost");
  tp_pass();
}
