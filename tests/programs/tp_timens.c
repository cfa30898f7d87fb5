/* Time namespace: the program lives in a time namespace whose clocks are days ahead of the host's.
 * After restore CLOCK_MONOTONIC and CLOCK_BOOTTIME must continue from where they were (never back,
 * not days ahead), read both through the vDSO (clock_gettime) and the raw syscall. */
#include "tp.h"

#include <sys/syscall.h>
#include <time.h>

static double now(clockid_t c, int raw) {
  struct timespec ts;
  int rc = raw ? (int)syscall(SYS_clock_gettime, c, &ts) : clock_gettime(c, &ts);
  if (rc < 0) tp_fail("clock_gettime(%d): %s", (int)c, strerror(errno));
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char** argv) {
  tp_init(argc, argv);
  double min_ahead = argc > 3 ? atof(argv[3]) : 0;
  double mono0 = now(CLOCK_MONOTONIC, 0), boot0 = now(CLOCK_BOOTTIME, 0);
  TP_CHECK(mono0 >= min_ahead && boot0 >= min_ahead, "clocks %.0f/%.0f are not %.0f s ahead at start", mono0, boot0, min_ahead);
  tp_ready(argv);
  tp_wait_for_term(NULL);
  for (int raw = 0; raw < 2; raw++) {
    double mono = now(CLOCK_MONOTONIC, raw), boot = now(CLOCK_BOOTTIME, raw);
    TP_CHECK(mono >= mono0 && mono < mono0 + 120, "CLOCK_MONOTONIC%s went from %.3f to %.3f", raw ? " (syscall)" : "", mono0, mono);
    TP_CHECK(boot >= boot0 && boot < boot0 + 120, "CLOCK_BOOTTIME%s went from %.3f to %.3f", raw ? " (syscall)" : "", boot0, boot);
  }
  tp_pass();
}
