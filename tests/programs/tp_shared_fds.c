/* A parent and its child share one pipe (data queued in it) and one open file (one offset) across
 * checkpoint/restore. argv[3] = a scratch directory. */
#include <sys/wait.h>

#include "tp.h"

static volatile sig_atomic_t child_term;
static void on_child_term(int sig) { (void)sig; child_term = 1; }

int main(int argc, char** argv) {
  tp_init(argc, argv);
  TP_CHECK(argc >= 4 && chdir(argv[3]) == 0, "usage: tp_shared_fds READY RESULT DIR");
  int file = open("shared.txt", O_RDWR | O_CREAT | O_TRUNC, 0644);
  TP_CHECK(write(file, "abcdefghijklmnopqrstuvwxyz", 26) == 26, "write");
  lseek(file, 0, SEEK_SET);
  int p[2];
  TP_CHECK(pipe(p) == 0, "pipe");
  TP_CHECK(write(p[1], "queued-before-dump", 18) == 18, "pipe write");
  pid_t child = fork();
  if (child == 0) {
    tp_result_path = NULL;
    signal(SIGTERM, on_child_term);
    char b[4];
    if (read(file, b, 4) != 4) _exit(3);  /* moves the shared offset to 4 */
    while (!child_term) usleep(5000);
    if (read(file, b, 2) != 2 || memcmp(b, "ef", 2)) _exit(4);  /* continues at the shared offset 4 */
    if (write(p[1], "-from-child", 11) != 11) _exit(5);
    _exit(0);
  }
  while (lseek(file, 0, SEEK_CUR) != 4) usleep(1000);  /* the child's read moved our offset */
  tp_ready(argv);
  tp_wait_for_term(NULL);
  TP_CHECK(lseek(file, 0, SEEK_CUR) == 4, "shared offset is %ld", (long)lseek(file, 0, SEEK_CUR));
  kill(child, SIGTERM);
  int st;
  TP_CHECK(waitpid(child, &st, 0) == child && WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %x", st);
  TP_CHECK(lseek(file, 0, SEEK_CUR) == 6, "the child's read did not move the parent's offset");
  char buf[64] = {0};
  close(p[1]);
  TP_CHECK(read(p[0], buf, sizeof buf - 1) == 29 && !strcmp(buf, "queued-before-dump-from-child"), "pipe gave '%s'", buf);
  tp_pass();
}
