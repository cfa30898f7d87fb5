/* A process stuck in vfork(): its child sleeps SECONDS (argv[3]) before _exit, so the parent sits in
 * an uninterruptible wait that no ptrace interrupt ends. The child reports ready (raw syscalls only:
 * it borrows the parent's memory); the parent reports PASS once vfork() returns with the child's pid
 * and the child has exited 0. */
#include "tp.h"

#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>

int main(int argc, char** argv) {
  if (argc < 4) return 2;
  tp_init(argc, argv);
  (void)tp_ready;  /* the vfork child reports ready itself, without libc */
  (void)tp_wait_for_term;
  const char* ready = argv[1];
  struct timespec nap = {atoi(argv[3]), 0};
  pid_t child = vfork();
  if (child == 0) {
    long fd = syscall(SYS_openat, AT_FDCWD, ready, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd >= 0) syscall(SYS_close, fd);
    syscall(SYS_nanosleep, &nap, NULL);
    syscall(SYS_exit, 0);
  }
  if (child < 0) tp_fail("vfork: %s", strerror(errno));
  int st = 0;
  if (waitpid(child, &st, 0) != child) tp_fail("waitpid %d: %s", child, strerror(errno));
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) tp_fail("the vfork child ended with status %#x", st);
  tp_pass();
}
