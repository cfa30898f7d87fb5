/* Pipes keep their queued bytes, buffer sizes, per-end flags and shared/separate open files across
 * checkpoint/restore. */
#include "tp.h"

#include <poll.h>
#include <sys/stat.h>

#define BIG (64 * 1024)
#define HUGE_PIPE (1024 * 1024)
#define HUGE_DATA (300 * 1024)

static unsigned char pattern(size_t i, unsigned seed) { return (unsigned char)(i * 131 + seed + (i >> 9)); }

static void fill(int fd, size_t n, unsigned seed) {
  unsigned char buf[4096];
  size_t done = 0;
  while (done < n) {
    size_t chunk = n - done < sizeof buf ? n - done : sizeof buf;
    for (size_t i = 0; i < chunk; i++) buf[i] = pattern(done + i, seed);
    ssize_t w = write(fd, buf, chunk);
    TP_CHECK(w > 0, "fill write: %s", strerror(errno));
    done += (size_t)w;
  }
}

/* Reads exactly n bytes (waiting at most a second for each) and checks them against the pattern. */
static void expect(int fd, size_t n, unsigned seed, const char* what) {
  unsigned char buf[4096];
  size_t done = 0;
  while (done < n) {
    struct pollfd p = {fd, POLLIN, 0};
    TP_CHECK(poll(&p, 1, 1000) == 1, "%s: only %zu of %zu bytes came back", what, done, n);
    size_t want = n - done < sizeof buf ? n - done : sizeof buf;
    ssize_t r = read(fd, buf, want);
    TP_CHECK(r > 0, "%s: read: %s", what, strerror(errno));
    for (ssize_t i = 0; i < r; i++)
      TP_CHECK(buf[i] == pattern(done + (size_t)i, seed), "%s: byte %zu differs", what, done + (size_t)i);
    done += (size_t)r;
  }
  struct pollfd p = {fd, POLLIN, 0};
  TP_CHECK(poll(&p, 1, 0) == 0, "%s: more than %zu bytes queued", what, n);
}

static void set_nonblock(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

int main(int argc, char** argv) {
  tp_init(argc, argv);

  /* A: both ends held, full of data (64 KiB in a 64 KiB pipe); a dup of the write end shares its file. */
  int a[2];
  TP_CHECK(pipe(a) == 0, "pipe a");
  TP_CHECK(fcntl(a[0], F_GETPIPE_SZ) == BIG, "default pipe size is %d", fcntl(a[0], F_GETPIPE_SZ));
  set_nonblock(a[1]);
  fill(a[1], BIG, 1);
  fcntl(a[1], F_SETFL, fcntl(a[1], F_GETFL) & ~O_NONBLOCK);
  int a_dup = dup(a[1]);
  /* A second open file of A's read end, with its own flags (reopened through /proc). */
  char path[64];
  snprintf(path, sizeof path, "/proc/self/fd/%d", a[0]);
  int a_reopen = open(path, O_RDONLY | O_NONBLOCK);
  TP_CHECK(a_reopen >= 0, "reopen a[0]: %s", strerror(errno));

  /* B: non-blocking read end, close-on-exec write end, a few bytes. */
  int b[2];
  TP_CHECK(pipe(b) == 0, "pipe b");
  fcntl(b[0], F_SETFL, O_NONBLOCK);
  fcntl(b[1], F_SETFD, FD_CLOEXEC);
  TP_CHECK(write(b[1], "hello", 5) == 5, "write b");

  /* C: a 1 MiB pipe holding more than a default pipe could. */
  int c[2];
  TP_CHECK(pipe(c) == 0, "pipe c");
  TP_CHECK(fcntl(c[1], F_SETPIPE_SZ, HUGE_PIPE) == HUGE_PIPE, "F_SETPIPE_SZ: %s", strerror(errno));
  fill(c[1], HUGE_DATA, 7);

  /* D: empty pipe with a high fd number for its read end. */
  int d[2];
  TP_CHECK(pipe(d) == 0, "pipe d");
  TP_CHECK(dup2(d[0], 200) == 200, "dup2");
  close(d[0]);

  tp_ready(argv);
  tp_wait_for_term(NULL);

  /* Flags first: reading below changes them. */
  TP_CHECK(!(fcntl(a[0], F_GETFL) & O_NONBLOCK), "a[0] became non-blocking");
  TP_CHECK(fcntl(a_reopen, F_GETFL) & O_NONBLOCK, "reopened a[0] lost O_NONBLOCK");
  TP_CHECK((fcntl(a[0], F_GETFL) & O_ACCMODE) == O_RDONLY, "a[0] access mode");
  TP_CHECK((fcntl(a[1], F_GETFL) & O_ACCMODE) == O_WRONLY, "a[1] access mode");
  TP_CHECK(fcntl(b[0], F_GETFL) & O_NONBLOCK, "b[0] lost O_NONBLOCK");
  TP_CHECK(!(fcntl(b[1], F_GETFL) & O_NONBLOCK), "b[1] became non-blocking");
  TP_CHECK(fcntl(b[1], F_GETFD) & FD_CLOEXEC, "b[1] lost FD_CLOEXEC");
  TP_CHECK(!(fcntl(b[0], F_GETFD) & FD_CLOEXEC), "b[0] gained FD_CLOEXEC");
  TP_CHECK(fcntl(a[0], F_GETPIPE_SZ) == BIG, "a size %d", fcntl(a[0], F_GETPIPE_SZ));
  TP_CHECK(fcntl(c[0], F_GETPIPE_SZ) == HUGE_PIPE, "c size %d", fcntl(c[0], F_GETPIPE_SZ));
  /* The dup shares a[1]'s open file; the reopened read end does not share a[0]'s. */
  fcntl(a_dup, F_SETFL, O_NONBLOCK);
  TP_CHECK(fcntl(a[1], F_GETFL) & O_NONBLOCK, "a_dup does not share a[1]'s open file");
  fcntl(a_dup, F_SETFL, 0);
  int ino_a0, ino_re;
  {
    struct stat s1, s2;
    fstat(a[0], &s1);
    fstat(a_reopen, &s2);
    ino_a0 = (int)s1.st_ino;
    ino_re = (int)s2.st_ino;
  }
  TP_CHECK(ino_a0 == ino_re, "reopened end is another pipe");

  char buf[16] = {0};
  TP_CHECK(read(b[0], buf, sizeof buf) == 5 && !memcmp(buf, "hello", 5), "b data '%s'", buf);
  TP_CHECK(read(b[0], buf, sizeof buf) < 0 && errno == EAGAIN, "b not empty after 5 bytes");
  expect(a[0], BIG, 1, "pipe a");
  expect(c[0], HUGE_DATA, 7, "pipe c");
  TP_CHECK(poll(&(struct pollfd){200, POLLIN, 0}, 1, 0) == 0, "pipe d is not empty");

  /* The pipes still carry data both ways through every open file. */
  TP_CHECK(write(a_dup, "xy", 2) == 2, "write a_dup");
  TP_CHECK(read(a_reopen, buf, 2) == 2 && !memcmp(buf, "xy", 2), "a via reopened end");
  TP_CHECK(write(b[1], "z", 1) == 1 && read(b[0], buf, 1) == 1 && buf[0] == 'z', "b after restore");
  TP_CHECK(write(d[1], "q", 1) == 1 && read(200, buf, 1) == 1 && buf[0] == 'q', "d after restore");
  fill(c[1], HUGE_PIPE, 9);
  expect(c[0], HUGE_PIPE, 9, "pipe c refilled");
  tp_pass();
}
