/* reaper CMD ARGS...: runs CMD as a child subreaper so restored orphans are reaped at once, and exits
 * with CMD's status after CMD ends (orphans still running are left to be reaped as they exit). */
#define _GNU_SOURCE
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: reaper CMD [ARGS...]\n");
    return 2;
  }
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  pid_t child = fork();
  if (child == 0) {
    execvp(argv[1], argv + 1);
    perror("exec");
    _exit(127);
  }
  int status = 0, result = 1;
  for (;;) {
    pid_t p = wait(&status);
    if (p < 0) break;
    if (p == child) {
      result = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      break;
    }
  }
  return result;
}
