/* Deleted-but-open files that --link-remap links back at dump: a file unlinked under its name but still
 * linked elsewhere and an O_TMPFILE file (both larger than any ghost limit the test sets), plus a small
 * deleted file without links (a ghost). After restore each fd is the same kind of file at the same
 * position with the same contents; the unlinked file is still the inode its other name reaches.
 * argv[3] = a scratch directory. */
#include "tp.h"

#include <sys/mman.h>
#include <sys/stat.h>

#define BIG_SIZE (256 << 10)
#define TMP_SIZE (192 << 10)

static unsigned char pattern(long i, int salt) { return (unsigned char)((i * 7 + salt) & 0xff); }

static void fill(int fd, long size, int salt) {
  static unsigned char buf[4096];
  for (long at = 0; at < size; at += sizeof buf) {
    for (long i = 0; i < (long)sizeof buf; i++) buf[i] = pattern(at + i, salt);
    TP_CHECK(pwrite(fd, buf, sizeof buf, at) == (ssize_t)sizeof buf, "fill");
  }
}

static void check_contents(int fd, long size, int salt, const char* what) {
  static unsigned char buf[4096];
  for (long at = 0; at < size; at += sizeof buf) {
    TP_CHECK(pread(fd, buf, sizeof buf, at) == (ssize_t)sizeof buf, "%s: short read at %ld", what, at);
    for (long i = 0; i < (long)sizeof buf; i++)
      TP_CHECK(buf[i] == pattern(at + i, salt), "%s: byte %ld is %u", what, at + i, buf[i]);
  }
}

static void check_pos(int fd, off_t want, const char* what) {
  off_t pos = lseek(fd, 0, SEEK_CUR);
  TP_CHECK(pos == want, "%s: position %ld, not %ld", what, (long)pos, (long)want);
}

int main(int argc, char** argv) {
  tp_init(argc, argv);
  TP_CHECK(argc >= 4 && chdir(argv[3]) == 0, "usage: tp_link_remap READY RESULT DIR");
  int big = open("big.dat", O_RDWR | O_CREAT | O_TRUNC, 0640);
  TP_CHECK(big >= 0, "create big.dat");
  fill(big, BIG_SIZE, 3);
  TP_CHECK(link("big.dat", "alias.dat") == 0, "link");
  int big_ro = open("big.dat", O_RDONLY);
  TP_CHECK(big_ro >= 0, "open big.dat");
  TP_CHECK(lseek(big, 100000, SEEK_SET) == 100000 && lseek(big_ro, 5000, SEEK_SET) == 5000, "lseek");
  TP_CHECK(unlink("big.dat") == 0, "unlink big.dat");

  int tmp = open(".", O_TMPFILE | O_RDWR, 0600);
  TP_CHECK(tmp >= 0, "O_TMPFILE: %s", strerror(errno));
  fill(tmp, TMP_SIZE, 11);
  TP_CHECK(lseek(tmp, 4242, SEEK_SET) == 4242, "lseek tmp");
  /* A shared mapping of the O_TMPFILE file: the mapping and the fd must get the same inode back. */
  unsigned char* map = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, tmp, 8192);
  TP_CHECK(map != MAP_FAILED, "mmap tmp");

  int small = open("small.dat", O_RDWR | O_CREAT | O_TRUNC, 0600);
  TP_CHECK(small >= 0 && write(small, "small and gone", 14) == 14, "small");
  TP_CHECK(unlink("small.dat") == 0, "unlink small.dat");

  tp_ready(argv);
  tp_wait_for_term(NULL);

  struct stat b, b2, alias, t, s;
  TP_CHECK(fstat(big, &b) == 0 && fstat(big_ro, &b2) == 0 && stat("alias.dat", &alias) == 0, "stat big");
  TP_CHECK(b.st_ino == alias.st_ino && b2.st_ino == alias.st_ino, "the unlinked file is no longer alias.dat's inode");
  TP_CHECK(b.st_nlink == 1, "the unlinked file has %lu links, not 1 (alias.dat)", (unsigned long)b.st_nlink);
  TP_CHECK(b.st_size == BIG_SIZE && (b.st_mode & 0777) == 0640, "big: size %ld mode %o", (long)b.st_size, b.st_mode & 0777);
  check_pos(big, 100000, "big");
  check_pos(big_ro, 5000, "big read-only");
  check_contents(big, BIG_SIZE, 3, "big");
  TP_CHECK((fcntl(big, F_GETFL) & O_ACCMODE) == O_RDWR && (fcntl(big_ro, F_GETFL) & O_ACCMODE) == O_RDONLY, "big flags");
  int fresh = open("alias.dat", O_RDONLY);
  char c = 0;
  TP_CHECK(pwrite(big, "Z", 1, 7) == 1 && fresh >= 0 && pread(fresh, &c, 1, 7) == 1 && c == 'Z',
           "a write through the restored fd is not seen through alias.dat");

  TP_CHECK(fstat(tmp, &t) == 0, "fstat tmp");
  TP_CHECK(t.st_nlink == 0, "the O_TMPFILE file has %lu links", (unsigned long)t.st_nlink);
  TP_CHECK(t.st_size == TMP_SIZE && (t.st_mode & 0777) == 0600, "tmp: size %ld mode %o", (long)t.st_size, t.st_mode & 0777);
  check_pos(tmp, 4242, "tmp");
  check_contents(tmp, TMP_SIZE, 11, "tmp");
  TP_CHECK(map[5] == pattern(8192 + 5, 11), "the mapping reads %u", map[5]);
  map[5] = 0xab;
  unsigned char got = 0;
  TP_CHECK(pread(tmp, &got, 1, 8192 + 5) == 1 && got == 0xab, "a write through the mapping is not seen through the fd");

  char buf[16] = {0};
  TP_CHECK(fstat(small, &s) == 0 && s.st_nlink == 0, "small has links");
  TP_CHECK(pread(small, buf, 14, 0) == 14 && !memcmp(buf, "small and gone", 14), "small: '%s'", buf);
  check_pos(small, 14, "small");
  TP_CHECK(access("big.dat", F_OK) != 0 && access("small.dat", F_OK) != 0, "a deleted name reappeared");
  tp_pass();
}
