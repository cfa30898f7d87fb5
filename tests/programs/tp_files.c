/* Regular files (offsets, O_APPEND, O_RDONLY, close-on-exec), cwd and umask survive checkpoint/restore.
 * argv[3] = a scratch directory the program works in. */
#include <sys/mman.h>
#include <sys/stat.h>

#include "tp.h"

int main(int argc, char** argv) {
  tp_init(argc, argv);
  TP_CHECK(argc >= 4, "usage: tp_files READY RESULT DIR");
  const char* dir = argv[3];
  TP_CHECK(chdir(dir) == 0, "chdir %s", dir);
  umask(027);

  int fd = open("data.txt", O_RDWR | O_CREAT | O_TRUNC, 0644);
  TP_CHECK(fd >= 0, "open data.txt");
  TP_CHECK(write(fd, "0123456789abcdef", 16) == 16, "write");
  int ro = open("data.txt", O_RDONLY);
  TP_CHECK(lseek(ro, 10, SEEK_SET) == 10, "lseek");
  int ap = open("log.txt", O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
  TP_CHECK(write(ap, "first\n", 6) == 6, "append write");
  int null = open("/dev/null", O_RDWR);
  /* File mappings: a shared one written through memory, a private one with copy-on-write changes. */
  int mf = open("mapped.bin", O_RDWR | O_CREAT | O_TRUNC, 0644);
  TP_CHECK(ftruncate(mf, 8192) == 0, "ftruncate");
  char* shared_map = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, mf, 0);
  char* private_map = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE, mf, 0);
  TP_CHECK(shared_map != MAP_FAILED && private_map != MAP_FAILED, "mmap file");
  close(mf);
  strcpy(shared_map, "through the shared mapping");
  strcpy(private_map + 4096, "private copy");
  /* A high fd number must come back as the same number. */
  TP_CHECK(dup2(ro, 100) == 100, "dup2");

  tp_ready(argv);
  tp_wait_for_term(NULL);

  char buf[8] = {0};
  TP_CHECK(read(ro, buf, 3) == 3 && !memcmp(buf, "abc", 3), "read at offset 10 gave '%s'", buf);
  TP_CHECK(lseek(fd, 0, SEEK_CUR) == 16, "rw offset %ld", (long)lseek(fd, 0, SEEK_CUR));
  TP_CHECK((fcntl(ro, F_GETFL) & O_ACCMODE) == O_RDONLY, "O_RDONLY lost");
  TP_CHECK(write(ro, "x", 1) < 0, "write to O_RDONLY fd succeeded");
  TP_CHECK(fcntl(ap, F_GETFL) & O_APPEND, "O_APPEND lost");
  TP_CHECK(fcntl(ap, F_GETFD) & FD_CLOEXEC, "FD_CLOEXEC lost");
  TP_CHECK(!(fcntl(fd, F_GETFD) & FD_CLOEXEC), "FD_CLOEXEC appeared");
  lseek(ap, 0, SEEK_SET);
  TP_CHECK(write(ap, "second\n", 7) == 7, "append write after restore");
  char log[64] = {0};
  int chk = open("log.txt", O_RDONLY);
  TP_CHECK(read(chk, log, sizeof log - 1) == 13 && !strcmp(log, "first\nsecond\n"), "log.txt is '%s'", log);
  TP_CHECK(write(null, "x", 1) == 1, "/dev/null");
  TP_CHECK(lseek(100, 0, SEEK_CUR) == 13, "fd 100 offset %ld", (long)lseek(100, 0, SEEK_CUR));
  TP_CHECK(!strcmp(shared_map, "through the shared mapping"), "shared file mapping content");
  TP_CHECK(!strcmp(private_map + 4096, "private copy"), "private COW page lost");
  TP_CHECK(private_map[0] == 't', "private mapping's untouched page does not show the file");
  strcpy(shared_map + 100, "new write");
  int check = open("mapped.bin", O_RDONLY);
  char fbuf[16] = {0};
  TP_CHECK(pread(check, fbuf, 9, 100) == 9 && !strcmp(fbuf, "new write"), "shared mapping no longer writes the file");
  TP_CHECK(pread(check, fbuf, 12, 4096) == 12 && memcmp(fbuf, "private copy", 12) != 0, "private write reached the file");
  char cwd[4096];
  TP_CHECK(getcwd(cwd, sizeof cwd) && !strcmp(cwd, dir), "cwd is %s", cwd);
  mode_t old = umask(0);
  TP_CHECK(old == 027, "umask is %o", old);
  tp_pass();
}
