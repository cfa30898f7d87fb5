/* FIFOs keep their queued bytes and each open file's access mode and flags across checkpoint/restore.
 * argv[3] = a scratch directory for the FIFO nodes. */
#include "tp.h"

#include <poll.h>
#include <sys/stat.h>

static unsigned char pattern(size_t i) { return (unsigned char)(i * 37 + 11); }

static void expect(int fd, const unsigned char* want, size_t n, const char* what) {
  unsigned char buf[4096];
  size_t done = 0;
  while (done < n) {
    struct pollfd p = {fd, POLLIN, 0};
    TP_CHECK(poll(&p, 1, 1000) == 1, "%s: only %zu of %zu bytes came back", what, done, n);
    ssize_t r = read(fd, buf, n - done < sizeof buf ? n - done : sizeof buf);
    TP_CHECK(r > 0, "%s: read: %s", what, strerror(errno));
    TP_CHECK(!memcmp(buf, want + done, (size_t)r), "%s: bytes from %zu differ", what, done);
    done += (size_t)r;
  }
  struct pollfd p = {fd, POLLIN, 0};
  TP_CHECK(poll(&p, 1, 0) == 0, "%s: more than %zu bytes queued", what, n);
}

static ino_t ino_of(int fd) {
  struct stat st;
  TP_CHECK(fstat(fd, &st) == 0, "fstat");
  return st.st_ino;
}

int main(int argc, char** argv) {
  tp_init(argc, argv);
  TP_CHECK(argc >= 4, "usage: tp_fifo READY RESULT DIR");
  TP_CHECK(chdir(argv[3]) == 0, "chdir %s", argv[3]);

  /* FIFO 1: opened read-write and read-only, 20000 bytes queued. */
  unlink("one.fifo");
  TP_CHECK(mkfifo("one.fifo", 0640) == 0, "mkfifo one: %s", strerror(errno));
  int rw = open("one.fifo", O_RDWR);
  TP_CHECK(rw >= 0, "open rw: %s", strerror(errno));
  int ro = open("one.fifo", O_RDONLY); /* does not wait: rw is a writer */
  TP_CHECK(ro >= 0, "open ro: %s", strerror(errno));
  static unsigned char data[20000];
  for (size_t i = 0; i < sizeof data; i++) data[i] = pattern(i);
  TP_CHECK(write(rw, data, sizeof data) == (ssize_t)sizeof data, "write one");
  TP_CHECK(fcntl(ro, F_SETPIPE_SZ, 128 * 1024) == 128 * 1024, "F_SETPIPE_SZ one");

  /* FIFO 2: a write-only end with a lower fd number than the (non-blocking) read end, so the dump
   * meets the write-only end first. */
  unlink("two.fifo");
  TP_CHECK(mkfifo("two.fifo", 0600) == 0, "mkfifo two");
  int r2 = open("two.fifo", O_RDONLY | O_NONBLOCK);
  int w2 = open("two.fifo", O_WRONLY);
  TP_CHECK(r2 >= 0 && w2 >= 0, "open two");
  TP_CHECK(dup2(w2, 40) == 40 && dup2(r2, 41) == 41, "dup2");
  close(w2);
  close(r2);
  TP_CHECK(write(40, "second fifo", 11) == 11, "write two");
  ino_t one_ino = ino_of(rw), two_ino = ino_of(40);

  tp_ready(argv);
  tp_wait_for_term(NULL);

  TP_CHECK((fcntl(rw, F_GETFL) & O_ACCMODE) == O_RDWR, "rw access mode");
  TP_CHECK((fcntl(ro, F_GETFL) & O_ACCMODE) == O_RDONLY, "ro access mode");
  TP_CHECK(!(fcntl(ro, F_GETFL) & O_NONBLOCK), "ro became non-blocking");
  TP_CHECK((fcntl(40, F_GETFL) & O_ACCMODE) == O_WRONLY, "fd 40 access mode");
  TP_CHECK(fcntl(41, F_GETFL) & O_NONBLOCK, "fd 41 lost O_NONBLOCK");
  TP_CHECK(fcntl(ro, F_GETPIPE_SZ) == 128 * 1024, "one size %d", fcntl(ro, F_GETPIPE_SZ));
  /* Every fd is the FIFO at the path, not some other pipe. */
  struct stat st;
  TP_CHECK(stat("one.fifo", &st) == 0 && S_ISFIFO(st.st_mode) && st.st_ino == ino_of(ro) && st.st_ino == one_ino,
           "fd ro is not one.fifo");
  TP_CHECK(ino_of(rw) == one_ino, "fd rw is not one.fifo");
  TP_CHECK(ino_of(41) == two_ino && ino_of(40) == two_ino, "fds 40/41 are not two.fifo");

  expect(ro, data, sizeof data, "one.fifo");
  expect(41, (const unsigned char*)"second fifo", 11, "two.fifo");
  TP_CHECK(write(rw, "again", 5) == 5, "write rw after restore");
  expect(ro, (const unsigned char*)"again", 5, "one.fifo after restore");
  TP_CHECK(write(40, "x", 1) == 1, "write fd 40 after restore");
  expect(41, (const unsigned char*)"x", 1, "two.fifo after restore");
  tp_pass();
}
