/* Deleted-but-open files (ghost files) come back with their contents, holes, offsets and inode sharing,
 * still deleted. argv[3] = a scratch directory. */
#include <sys/stat.h>

#include "tp.h"

int main(int argc, char** argv) {
  tp_init(argc, argv);
  TP_CHECK(argc >= 4 && chdir(argv[3]) == 0, "usage: tp_ghost READY RESULT DIR");
  int rw = open("ghost.txt", O_RDWR | O_CREAT | O_TRUNC, 0640);
  TP_CHECK(rw >= 0, "create");
  TP_CHECK(write(rw, "head of the ghost", 17) == 17, "write");
  TP_CHECK(pwrite(rw, "tail", 4, 3 << 20) == 4, "pwrite past a hole");
  int ro = open("ghost.txt", O_RDONLY);
  TP_CHECK(lseek(ro, 5, SEEK_SET) == 5, "lseek");
  TP_CHECK(unlink("ghost.txt") == 0, "unlink");
  tp_ready(argv);
  tp_wait_for_term(NULL);
  struct stat a, b;
  TP_CHECK(fstat(rw, &a) == 0 && fstat(ro, &b) == 0, "fstat");
  TP_CHECK(a.st_nlink == 0, "the ghost has %lu links", (unsigned long)a.st_nlink);
  TP_CHECK(a.st_ino == b.st_ino, "the two fds no longer share the file");
  TP_CHECK(a.st_size == (3 << 20) + 4, "size %ld", (long)a.st_size);
  TP_CHECK((a.st_mode & 0777) == 0640, "mode %o", a.st_mode & 0777);
  TP_CHECK(a.st_blocks * 512 < (1 << 20), "the hole was filled (%ld blocks)", (long)a.st_blocks);
  char buf[32] = {0};
  TP_CHECK(read(ro, buf, 12) == 12 && !strcmp(buf, "of the ghost"), "read at offset 5: '%s'", buf);
  TP_CHECK(pread(ro, buf, 4, 3 << 20) == 4 && !memcmp(buf, "tail", 4), "tail after the hole");
  TP_CHECK(pwrite(rw, "HEAD", 4, 0) == 4 && pread(ro, buf, 4, 0) == 4 && !memcmp(buf, "HEAD", 4),
           "a write through one fd is not seen through the other");
  TP_CHECK(access("ghost.txt", F_OK) != 0, "the ghost reappeared in the directory");
  tp_pass();
}
