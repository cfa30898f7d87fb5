/* File locks survive checkpoint/restore (--file-locks): a flock, a POSIX byte-range lock and an OFD
 * lock, each checked from a child that must fail to take a conflicting lock. argv[3] = scratch dir. */
#include "tp.h"

#include <sys/file.h>
#include <sys/wait.h>

static int conflicts(void) {
  /* Runs in a child: every conflicting attempt must fail. Returns a bit per surprise. */
  int bad = 0;
  int a = open("flock.lck", O_RDWR);
  if (flock(a, LOCK_EX | LOCK_NB) == 0 || errno != EWOULDBLOCK) bad |= 1;
  int b = open("posix.lck", O_RDWR);
  struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 15, .l_len = 1};
  if (fcntl(b, F_SETLK, &fl) == 0 || (errno != EAGAIN && errno != EACCES)) bad |= 2;
  struct flock outside = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 40, .l_len = 1};
  if (fcntl(b, F_SETLK, &outside) != 0) bad |= 4; /* beyond the locked range: free */
  int c = open("ofd.lck", O_RDWR);
  struct flock w = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
  if (fcntl(c, F_OFD_SETLK, &w) == 0) bad |= 8;
  return bad;
}

static void check_from_child(const char* when) {
  pid_t p = fork();
  if (p == 0) _exit(conflicts());
  int st;
  waitpid(p, &st, 0);
  TP_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s: lock check bits %d", when, WEXITSTATUS(st));
}

int main(int argc, char** argv) {
  tp_init(argc, argv);
  TP_CHECK(argc >= 4 && chdir(argv[3]) == 0, "usage: tp_locks READY RESULT DIR");
  int a = open("flock.lck", O_RDWR | O_CREAT, 0644);
  int b = open("posix.lck", O_RDWR | O_CREAT, 0644);
  int c = open("ofd.lck", O_RDWR | O_CREAT, 0644);
  TP_CHECK(flock(a, LOCK_EX) == 0, "flock");
  struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 10, .l_len = 10};
  TP_CHECK(fcntl(b, F_SETLK, &fl) == 0, "posix lock");
  struct flock rd = {.l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
  TP_CHECK(fcntl(c, F_OFD_SETLK, &rd) == 0, "ofd lock");
  check_from_child("before dump");
  tp_ready(argv);
  tp_wait_for_term(NULL);
  check_from_child("after restore");
  struct flock q = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 12, .l_len = 1};
  pid_t p = fork();
  if (p == 0) {
    int fd = open("posix.lck", O_RDWR);
    _exit(fcntl(fd, F_GETLK, &q) == 0 && q.l_type == F_WRLCK && q.l_pid == getppid() ? 0 : 1);
  }
  int st;
  waitpid(p, &st, 0);
  TP_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the POSIX lock's owner is not this process");
  tp_pass();
}
