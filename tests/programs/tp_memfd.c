/* Memfds keep name, size, contents with holes, seals, mode, flags and positions; open files that
 * shared an inode (a reopen through /proc/self/fd) or a file (dup) still share it. */
#include "tp.h"

#include <stdint.h>
#include <sys/mman.h>
#include <sys/stat.h>

#define MIB (1024 * 1024)

static unsigned char pattern(size_t i) { return (unsigned char)(i * 7 + (i >> 12) + 1); }

static void expect_link(int fd, const char* want) {
  char path[64], link[256];
  snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  ssize_t n = readlink(path, link, sizeof link - 1);
  TP_CHECK(n > 0, "readlink %s", path);
  link[n] = 0;
  TP_CHECK(!strcmp(link, want), "fd %d is '%s', expected '%s'", fd, link, want);
}

int main(int argc, char** argv) {
  tp_init(argc, argv);
  int m = memfd_create("tp-memfd", MFD_ALLOW_SEALING);
  TP_CHECK(m >= 0, "memfd_create");
  TP_CHECK(ftruncate(m, 4 * MIB) == 0, "ftruncate");
  unsigned char* buf = malloc(4 * MIB);
  for (size_t i = 0; i < 4 * MIB; i++) buf[i] = pattern(i);
  /* 1 MiB of data, a 1 MiB hole, 2 MiB of data. */
  TP_CHECK(pwrite(m, buf, MIB, 0) == MIB, "pwrite 1");
  TP_CHECK(pwrite(m, buf + 2 * MIB, 2 * MIB, 2 * MIB) == 2 * MIB, "pwrite 2");
  memset(buf + MIB, 0, MIB);
  TP_CHECK(fcntl(m, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) == 0, "seal");
  TP_CHECK(fchmod(m, 0640) == 0, "fchmod");
  TP_CHECK(lseek(m, 12345, SEEK_SET) == 12345, "lseek");
  char self[64];
  snprintf(self, sizeof self, "/proc/self/fd/%d", m);
  int ro = open(self, O_RDONLY);
  TP_CHECK(ro >= 0, "reopen");
  TP_CHECK(lseek(ro, 777, SEEK_SET) == 777, "lseek ro");
  TP_CHECK(dup2(m, 60) == 60, "dup2");
  int probe = open(self, O_RDONLY);
  off_t hole_at = lseek(probe, 0, SEEK_HOLE), data_after = lseek(probe, hole_at, SEEK_DATA);
  close(probe);
  TP_CHECK(hole_at >= MIB && hole_at < 2 * MIB, "hole at %ld", (long)hole_at);
  int small = memfd_create("small", MFD_CLOEXEC);
  TP_CHECK(small >= 0 && write(small, "hello", 5) == 5, "small memfd");
  TP_CHECK(fcntl(small, F_SETFL, O_APPEND) == 0, "O_APPEND");

  tp_ready(argv);
  tp_wait_for_term(NULL);

  expect_link(m, "/memfd:tp-memfd (deleted)");
  expect_link(ro, "/memfd:tp-memfd (deleted)");
  expect_link(small, "/memfd:small (deleted)");
  struct stat st, st_ro, st_dup;
  TP_CHECK(fstat(m, &st) == 0 && fstat(ro, &st_ro) == 0 && fstat(60, &st_dup) == 0, "fstat");
  TP_CHECK(st.st_ino == st_ro.st_ino && st.st_ino == st_dup.st_ino, "inodes differ: %lu %lu %lu",
           (unsigned long)st.st_ino, (unsigned long)st_ro.st_ino, (unsigned long)st_dup.st_ino);
  TP_CHECK(st.st_size == 4 * MIB, "size %ld", (long)st.st_size);
  TP_CHECK((st.st_mode & 0777) == 0640, "mode %o", st.st_mode & 0777);
  unsigned char* got = malloc(4 * MIB);
  TP_CHECK(pread(ro, got, 4 * MIB, 0) == 4 * MIB, "pread");
  for (size_t i = 0; i < 4 * MIB; i++)
    TP_CHECK(got[i] == buf[i], "byte %zu is %u, expected %u", i, got[i], buf[i]);
  int probe2 = open(self, O_RDONLY);
  off_t h = lseek(probe2, 0, SEEK_HOLE), d = lseek(probe2, h, SEEK_DATA);
  close(probe2);
  TP_CHECK(h == hole_at && d == data_after, "hole at %ld..%ld, was %ld..%ld", (long)h, (long)d, (long)hole_at,
           (long)data_after);
  TP_CHECK(fcntl(m, F_GET_SEALS) == (F_SEAL_SHRINK | F_SEAL_GROW), "seals %x", fcntl(m, F_GET_SEALS));
  TP_CHECK(ftruncate(m, MIB) < 0 && errno == EPERM, "F_SEAL_SHRINK lost");
  TP_CHECK(pwrite(m, "x", 1, 4 * MIB) < 0 && errno == EPERM, "F_SEAL_GROW lost");
  TP_CHECK(lseek(m, 0, SEEK_CUR) == 12345, "position %ld", (long)lseek(m, 0, SEEK_CUR));
  TP_CHECK(lseek(ro, 0, SEEK_CUR) == 777, "reopened position %ld", (long)lseek(ro, 0, SEEK_CUR));
  TP_CHECK(lseek(60, 100, SEEK_SET) == 100 && lseek(m, 0, SEEK_CUR) == 100, "dup does not share the position");
  TP_CHECK((fcntl(ro, F_GETFL) & O_ACCMODE) == O_RDONLY, "O_RDONLY lost");
  TP_CHECK(write(ro, "x", 1) < 0, "write to the read-only reopen succeeded");
  TP_CHECK(pwrite(m, "ZZ", 2, 5) == 2, "pwrite after restore");
  char two[2];
  TP_CHECK(pread(ro, two, 2, 5) == 2 && two[0] == 'Z' && two[1] == 'Z', "the reopen does not share the inode");

  char small_buf[16] = {0};
  TP_CHECK(pread(small, small_buf, sizeof small_buf, 0) == 5 && !strcmp(small_buf, "hello"), "small is '%s'", small_buf);
  TP_CHECK(lseek(small, 0, SEEK_CUR) == 5, "small position");
  TP_CHECK(fcntl(small, F_GETFL) & O_APPEND, "O_APPEND lost");
  TP_CHECK(fcntl(small, F_GETFD) & FD_CLOEXEC, "FD_CLOEXEC lost");
  TP_CHECK(fcntl(small, F_GET_SEALS) == F_SEAL_SEAL, "small seals %x", fcntl(small, F_GET_SEALS));
  TP_CHECK(fcntl(small, F_ADD_SEALS, F_SEAL_WRITE) < 0 && errno == EPERM, "sealing became possible");
  tp_pass();
}
