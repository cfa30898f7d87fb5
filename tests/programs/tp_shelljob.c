/* A job of an interactive shell: stdio is the shell's terminal. With --shell-job the restored task
 * gets the restoring shell's terminal as its stdio. */
#include "tp.h"

int main(int argc, char** argv) {
  tp_init(argc, argv);
  TP_CHECK(isatty(0) && isatty(1) && isatty(2), "not started on a terminal");
  tp_ready(argv);
  tp_wait_for_term(NULL);
  for (int fd = 0; fd <= 2; fd++) TP_CHECK(isatty(fd), "fd %d is no longer a terminal", fd);
  TP_CHECK(write(1, "still talking to a terminal\n", 28) == 28, "write to the terminal: %s", strerror(errno));
  TP_CHECK(ttyname(0) != NULL, "ttyname");
  tp_pass();
}
