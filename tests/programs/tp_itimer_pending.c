/* An interval timer that expired while its signal is blocked: the signal is pending and the timer
 * waits for that signal's delivery to re-arm (getitimer shows a zero value). After restore the
 * pending SIGALRM arrives when unblocked and the timer keeps firing with its interval. */
#include <sys/time.h>
#include <time.h>

#include "tp.h"

static volatile sig_atomic_t alarms;
static void on_alarm(int sig) { (void)sig; alarms++; }

int main(int argc, char** argv) {
  tp_init(argc, argv);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_alarm;
  sigaction(SIGALRM, &sa, NULL);
  sigset_t alrm;
  sigemptyset(&alrm);
  sigaddset(&alrm, SIGALRM);
  sigprocmask(SIG_BLOCK, &alrm, NULL);
  struct itimerval it = {{0, 30000}, {0, 30000}};
  setitimer(ITIMER_REAL, &it, NULL);
  struct timespec wait = {0, 100000000};
  while (nanosleep(&wait, &wait) < 0) {
  }
  struct itimerval now;
  getitimer(ITIMER_REAL, &now);
  TP_CHECK(now.it_value.tv_sec == 0 && now.it_value.tv_usec == 0, "timer not waiting for its signal");
  tp_ready(argv);
  tp_wait_for_term(NULL);
  getitimer(ITIMER_REAL, &now);
  TP_CHECK(now.it_interval.tv_usec == 30000, "interval lost: %ld us", (long)now.it_interval.tv_usec);
  sigprocmask(SIG_UNBLOCK, &alrm, NULL);
  TP_CHECK(alarms >= 1, "the pending SIGALRM was lost");
  struct timespec more = {0, 200000000};
  while (nanosleep(&more, &more) < 0) {
  }
  TP_CHECK(alarms >= 3, "the timer stopped after restore (%d alarms)", (int)alarms);
  tp_pass();
}
