/* Signal handlers, blocked and pending signals, and an interval timer survive checkpoint/restore. */
#include <stdint.h>
#include <sys/time.h>
#include <time.h>

#include "tp.h"

static volatile sig_atomic_t usr1_count, rt_count, alarm_count, timer_count;
static volatile int rt_value;

static void on_usr1(int sig) { (void)sig; usr1_count++; }
static void on_rt(int sig, siginfo_t* si, void* uc) {
  (void)sig; (void)uc;
  rt_count++;
  rt_value = si->si_value.sival_int;
}
static void on_alarm(int sig) { (void)sig; alarm_count++; }
static void on_timer(int sig) { (void)sig; timer_count++; }

/* Sleeps the whole time even though timer signals interrupt nanosleep. */
static void sleep_ms(long ms) {
  struct timespec left = {ms / 1000, (ms % 1000) * 1000000};
  while (nanosleep(&left, &left) < 0 && errno == EINTR) {
  }
}

int main(int argc, char** argv) {
  tp_init(argc, argv);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_usr1;
  sigaddset(&sa.sa_mask, SIGUSR2);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGUSR1, &sa, NULL);
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_rt;
  sa.sa_flags = SA_SIGINFO;
  sigaction(SIGRTMIN + 2, &sa, NULL);
  signal(SIGUSR2, SIG_IGN);
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_alarm;
  sigaction(SIGALRM, &sa, NULL);

  sigset_t block;
  sigemptyset(&block);
  sigaddset(&block, SIGRTMIN + 2);
  sigaddset(&block, SIGPIPE);
  sigprocmask(SIG_BLOCK, &block, NULL);
  union sigval v = {.sival_int = 4242};
  sigqueue(getpid(), SIGRTMIN + 2, v); /* stays pending while blocked */

  struct itimerval it = {{0, 50000}, {0, 50000}};
  setitimer(ITIMER_REAL, &it, NULL);

  /* Two POSIX timers: an unused one first, so the armed one has id 1 and ids must be kept. */
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_timer;
  sigaction(SIGRTMIN + 3, &sa, NULL);
  timer_t unused, ticker;
  struct sigevent sev;
  memset(&sev, 0, sizeof sev);
  sev.sigev_notify = SIGEV_NONE;
  TP_CHECK(timer_create(CLOCK_REALTIME, &sev, &unused) == 0, "timer_create");
  sev.sigev_notify = SIGEV_SIGNAL;
  sev.sigev_signo = SIGRTMIN + 3;
  sev.sigev_value.sival_int = 77;
  TP_CHECK(timer_create(CLOCK_MONOTONIC, &sev, &ticker) == 0, "timer_create");
  struct itimerspec ts = {{0, 40000000}, {0, 40000000}};
  TP_CHECK(timer_settime(ticker, 0, &ts, NULL) == 0, "timer_settime");

  tp_ready(argv);
  tp_wait_for_term(NULL);

  struct sigaction cur;
  sigaction(SIGUSR1, NULL, &cur);
  TP_CHECK(cur.sa_handler == on_usr1, "SIGUSR1 handler lost");
  TP_CHECK(sigismember(&cur.sa_mask, SIGUSR2), "SIGUSR1 sa_mask lost");
  TP_CHECK(cur.sa_flags & SA_RESTART, "SIGUSR1 SA_RESTART lost");
  sigaction(SIGUSR2, NULL, &cur);
  TP_CHECK(cur.sa_handler == SIG_IGN, "SIGUSR2 no longer ignored");

  sigset_t now;
  sigprocmask(SIG_BLOCK, NULL, &now);
  TP_CHECK(sigismember(&now, SIGRTMIN + 2) && sigismember(&now, SIGPIPE), "blocked mask lost");
  sigset_t pend;
  sigpending(&pend);
  TP_CHECK(sigismember(&pend, SIGRTMIN + 2), "pending SIGRTMIN+2 lost");
  TP_CHECK(rt_count == 0, "blocked signal delivered early");
  sigprocmask(SIG_UNBLOCK, &block, NULL);
  TP_CHECK(rt_count == 1 && rt_value == 4242, "pending signal: count %d value %d", (int)rt_count, rt_value);

  kill(getpid(), SIGUSR1);
  TP_CHECK(usr1_count == 1, "SIGUSR1 handler did not run");

  struct itimerval got;
  getitimer(ITIMER_REAL, &got);
  TP_CHECK(got.it_interval.tv_sec == 0 && got.it_interval.tv_usec == 50000, "itimer interval %ld.%06ld",
           (long)got.it_interval.tv_sec, (long)got.it_interval.tv_usec);
  int before = alarm_count;
  sleep_ms(300);
  TP_CHECK(alarm_count > before, "itimer stopped firing");
  struct itimerspec tcur;
  TP_CHECK(timer_gettime(ticker, &tcur) == 0, "timer_gettime after restore: %s", strerror(errno));
  TP_CHECK(tcur.it_interval.tv_nsec == 40000000, "POSIX timer interval %ld", tcur.it_interval.tv_nsec);
  TP_CHECK(timer_gettime(unused, &tcur) == 0, "the unused timer is gone");
  int ticks = timer_count;
  sleep_ms(300);
  TP_CHECK(timer_count > ticks, "POSIX timer stopped firing");
  tp_pass();
}
