/* The terminal of a container: stdin/stdout/stderr are a pty slave that is also this session's
 * controlling terminal, and the master is held outside (by the test, as runc does). After restore
 * with a new master handed to the caller, a line written into that master must reach this process,
 * which answers "pong <line>" on its terminal once its controlling tty and session check out. */
#include "tp.h"

#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <termios.h>

int main(int argc, char** argv) {
  tp_init(argc, argv);
  (void)tp_wait_for_term; /* it ends on its line, not on SIGTERM */
  if (!isatty(0) || getsid(0) != getpid()) tp_fail("stdin must be the controlling tty of a new session");
  tp_ready(argv);
  char line[256];
  size_t len = 0;
  /* Canonical mode: one read returns one line (restarted if the checkpoint interrupts it). */
  for (;;) {
    ssize_t n = read(0, line + len, sizeof line - 1 - len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) tp_fail("read stdin: %s", n < 0 ? strerror(errno) : "EOF");
    len += (size_t)n;
    if (memchr(line, '\n', len) || len == sizeof line - 1) break;
  }
  line[len] = 0;
  char* nl = strchr(line, '\n');
  if (nl) *nl = 0;
  struct stat st;
  if (fstat(0, &st) < 0) tp_fail("fstat stdin: %s", strerror(errno));
  int want = (int)((minor(st.st_rdev) & 0xff) | (major(st.st_rdev) << 8) | ((minor(st.st_rdev) & ~0xffu) << 12));
  if (tp_tty_nr() != want) tp_fail("controlling tty_nr %#x is not stdin's %#x", tp_tty_nr(), want);
  if (getsid(0) != getpid() || tcgetpgrp(0) != getpgrp()) tp_fail("session or foreground group lost");
  printf("pong %s\n", line);
  fflush(stdout);
  tp_pass();
}
