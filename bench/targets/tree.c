/* tree READY_FILE N: a root with N-1 children (each a plain idle process); the per-task cost of
 * dumping and restoring a process tree. */
#include <signal.h>

#include "ready.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s READY_FILE N\n", argv[0]);
    return 2;
  }
  int n = atoi(argv[2]);
  for (int i = 1; i < n; i++) {
    pid_t pid = fork();
    if (pid < 0) bench_die("fork");
    if (pid == 0) bench_idle();
  }
  bench_ready(argv[1]);
  bench_idle();
}
