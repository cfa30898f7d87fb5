/* A session leader whose stdio and controlling terminal is a pty the test owns: it answers every
 * line typed into it with "echo:LINE". Its terminal settings (no echo, a window size) must come
 * back with it onto whatever terminal it is restored on. */
#include "tp.h"

#include <poll.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <termios.h>

static int lines;

static void answer(void) {
  struct pollfd p = {.fd = 0, .events = POLLIN};
  if (poll(&p, 1, 0) != 1 || !(p.revents & POLLIN)) return;
  char buf[512], out[600];
  ssize_t n = read(0, buf, sizeof buf - 1);
  if (n <= 0) return;
  buf[n] = 0;
  char* nl = strchr(buf, '\n');
  if (nl) *nl = 0;
  int len = snprintf(out, sizeof out, "echo:%s\n", buf);
  TP_CHECK(write(1, out, len) == len, "write to the terminal: %s", strerror(errno));
  lines++;
}

int main(int argc, char** argv) {
  tp_init(argc, argv);
  TP_CHECK(isatty(0) && isatty(1) && isatty(2), "not started on a terminal");
  TP_CHECK(tcgetsid(0) == getpid(), "the terminal is not this session's controlling terminal");
  struct termios t;
  TP_CHECK(tcgetattr(0, &t) == 0, "tcgetattr: %s", strerror(errno));
  t.c_lflag &= ~(tcflag_t)ECHO;
  t.c_lflag |= ICANON;
  TP_CHECK(tcsetattr(0, TCSANOW, &t) == 0, "tcsetattr: %s", strerror(errno));
  struct winsize ws = {.ws_row = 33, .ws_col = 77};
  TP_CHECK(ioctl(0, TIOCSWINSZ, &ws) == 0, "TIOCSWINSZ: %s", strerror(errno));
  tp_ready(argv);
  tp_wait_for_term(answer);

  for (int fd = 0; fd <= 2; fd++) TP_CHECK(isatty(fd), "fd %d is no longer a terminal", fd);
  TP_CHECK(tcgetsid(0) == getpid(), "the terminal is no longer this session's controlling terminal");
  struct stat st;
  TP_CHECK(fstat(0, &st) == 0, "fstat: %s", strerror(errno));
  unsigned maj = major(st.st_rdev), min = minor(st.st_rdev);
  int want_nr = (int)((min & 0xff) | (maj << 8) | ((min & ~0xffu) << 12));
  TP_CHECK(tp_tty_nr() == want_nr, "controlling tty %#x, stdin is %#x", tp_tty_nr(), want_nr);
  TP_CHECK(tcgetattr(0, &t) == 0, "tcgetattr: %s", strerror(errno));
  TP_CHECK(!(t.c_lflag & ECHO) && (t.c_lflag & ICANON), "terminal settings lost (lflag %#x)", t.c_lflag);
  TP_CHECK(ioctl(0, TIOCGWINSZ, &ws) == 0 && ws.ws_row == 33 && ws.ws_col == 77, "window size %ux%u", ws.ws_row,
           ws.ws_col);
  TP_CHECK(lines >= 2, "answered %d lines, expected one before and one after the restore", lines);
  tp_pass();
}
