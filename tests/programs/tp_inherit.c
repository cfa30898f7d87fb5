/* Files handed in at restore: stdout is a pipe to whoever started the program, fd 3 a log opened
 * O_APPEND. After restore (with --inherit-fd) both must reach the new owner's objects, the log
 * keeping its append mode. argv[3] = the log path. */
#include "tp.h"

int main(int argc, char** argv) {
  tp_init(argc, argv);
  TP_CHECK(argc >= 4, "usage: tp_inherit READY RESULT LOG");
  int log = open(argv[3], O_WRONLY | O_CREAT | O_APPEND, 0644);
  TP_CHECK(log >= 0 && dup2(log, 3) == 3, "log fd");
  if (log != 3) close(log);
  TP_CHECK(write(1, "before\n", 7) == 7, "stdout");
  TP_CHECK(write(3, "log-before\n", 11) == 11, "log");
  tp_ready(argv);
  tp_wait_for_term(NULL);
  TP_CHECK(write(1, "after-restore\n", 14) == 14, "stdout after restore: %s", strerror(errno));
  TP_CHECK(fcntl(3, F_GETFL) & O_APPEND, "the log lost O_APPEND");
  lseek(3, 0, SEEK_SET);
  TP_CHECK(write(3, "log-after\n", 10) == 10, "log after restore");
  tp_pass();
}
