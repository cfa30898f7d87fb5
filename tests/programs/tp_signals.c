/* Signal handlers, blocked and pending signals, and an interval timer survive checkpoint/restore. */
#include <stdint.h>
#include <sys/time.h>

#include "tp.h"

static volatile sig_atomic_t usr1_count, rt_count, alarm_count;
static volatile int rt_value;

static void on_usr1(int sig) { (void)sig; usr1_count++; }
static void on_rt(int sig, siginfo_t* si, void* uc) {
  (void)sig; (void)uc;
  rt_count++;
  rt_value = si->si_value.sival_int;
}
static void on_alarm(int sig) { (void)sig; alarm_count++; }

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
  usleep(300000);
  TP_CHECK(alarm_count > before, "itimer stopped firing");
  tp_pass();
}
