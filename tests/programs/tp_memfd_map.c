/* Mapped memfds survive checkpoint/restore: a MAP_SHARED mapping with its fd still open shares the inode
 * with that fd (writes visible both ways); a mapping whose fd was closed keeps its contents; a
 * MAP_PRIVATE mapping keeps its private copy-on-write pages apart from the file; a mapping shared by a
 * parent and its forked child (fd closed) is shared again. */
#include "tp.h"

#include <stdint.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define PAGE 4096
#define PAGES 16

static volatile sig_atomic_t child_term;
static void on_child_term(int sig) { (void)sig; child_term = 1; }

static int make_memfd(const char* name, unsigned char seed) {
  int fd = memfd_create(name, 0);
  TP_CHECK(fd >= 0, "memfd_create %s", name);
  TP_CHECK(ftruncate(fd, PAGES * PAGE) == 0, "ftruncate %s", name);
  unsigned char buf[PAGE];
  for (int p = 0; p < PAGES; p++) {
    memset(buf, seed + p, sizeof buf);
    TP_CHECK(pwrite(fd, buf, PAGE, (off_t)p * PAGE) == PAGE, "pwrite %s", name);
  }
  return fd;
}

static void expect_map_name(void* addr, const char* want) {
  char path[64], link[256];
  snprintf(path, sizeof path, "/proc/self/map_files/%lx-%lx", (unsigned long)addr,
           (unsigned long)addr + PAGES * PAGE);
  ssize_t n = readlink(path, link, sizeof link - 1);
  TP_CHECK(n > 0, "readlink %s: %s", path, strerror(errno));
  link[n] = 0;
  TP_CHECK(!strcmp(link, want), "mapping at %p is '%s', expected '%s'", addr, link, want);
}

int main(int argc, char** argv) {
  tp_init(argc, argv);
  /* A: fd open, shared mapping; one page written through the mapping, one through the fd. */
  int a = make_memfd("map-open", 0x10);
  unsigned char* ma = mmap(NULL, PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, a, 0);
  TP_CHECK(ma != MAP_FAILED, "mmap A");
  memset(ma + 3 * PAGE, 0xa3, PAGE);
  TP_CHECK(pwrite(a, "fd-write", 8, 5 * PAGE) == 8, "pwrite A");
  /* B: mapping only, the fd closed. */
  int b = make_memfd("map-only", 0x40);
  unsigned char* mb = mmap(NULL, PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, b, 0);
  TP_CHECK(mb != MAP_FAILED, "mmap B");
  mb[7 * PAGE + 1] = 0xb7;
  close(b);
  /* C: private mapping with fd open: page 1 copied-on-write, the file keeps its own page 1. */
  int c = make_memfd("map-private", 0x70);
  unsigned char* mc = mmap(NULL, PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, c, 0);
  TP_CHECK(mc != MAP_FAILED, "mmap C");
  memset(mc + PAGE, 0xc1, PAGE);
  TP_CHECK(mc[2 * PAGE] == 0x72, "private read");
  /* D: shared by parent and child, fd closed before the fork. */
  int d = make_memfd("map-fork", 0x90);
  volatile uint32_t* md = mmap(NULL, PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, d, 0);
  TP_CHECK(md != MAP_FAILED, "mmap D");
  close(d);
  md[0] = 0x11111111;
  int sync[2];
  TP_CHECK(pipe(sync) == 0, "pipe");
  pid_t child = fork();
  if (child == 0) {
    tp_result_path = NULL;
    signal(SIGTERM, on_child_term);
    md[1] = 0x22222222;
    close(sync[0]);
    close(sync[1]);
    while (!child_term) usleep(5000);
    if (md[0] != 0x11111111 || md[2] != 0x33333333) _exit(2);  /* the parent's old and new writes */
    md[3] = 0x44444444;
    _exit(0);
  }
  close(sync[1]);
  char ch;
  TP_CHECK(read(sync[0], &ch, 1) == 0, "waiting for the child");
  close(sync[0]);

  tp_ready(argv);
  tp_wait_for_term(NULL);

  expect_map_name(ma, "/memfd:map-open (deleted)");
  expect_map_name(mb, "/memfd:map-only (deleted)");
  expect_map_name(mc, "/memfd:map-private (deleted)");
  expect_map_name((void*)md, "/memfd:map-fork (deleted)");
  /* A: contents, then one inode for fd and mapping. */
  for (int p = 0; p < PAGES; p++) {
    unsigned char want = p == 3 ? 0xa3 : (unsigned char)(0x10 + p);
    TP_CHECK(ma[p * PAGE + 100] == want, "A page %d byte is %x, expected %x", p, ma[p * PAGE + 100], want);
  }
  TP_CHECK(!memcmp(ma + 5 * PAGE, "fd-write", 8), "A: the fd's write before dump is not in the mapping");
  struct stat st_fd, st_map;
  char mf[64];
  snprintf(mf, sizeof mf, "/proc/self/map_files/%lx-%lx", (unsigned long)ma, (unsigned long)ma + PAGES * PAGE);
  TP_CHECK(fstat(a, &st_fd) == 0 && stat(mf, &st_map) == 0, "stat A");
  TP_CHECK(st_fd.st_ino == st_map.st_ino, "A: fd inode %lu, mapping inode %lu", (unsigned long)st_fd.st_ino,
           (unsigned long)st_map.st_ino);
  TP_CHECK(pwrite(a, "after", 5, 9 * PAGE) == 5 && !memcmp(ma + 9 * PAGE, "after", 5),
           "A: a write through the fd does not reach the mapping");
  memcpy(ma + 10 * PAGE, "mapped", 6);
  char got[8] = {0};
  TP_CHECK(pread(a, got, 6, 10 * PAGE) == 6 && !memcmp(got, "mapped", 6), "A: a write through the mapping does not reach the fd");
  /* B */
  for (int p = 0; p < PAGES; p++)
    TP_CHECK(mb[p * PAGE] == (unsigned char)(0x40 + p), "B page %d is %x", p, mb[p * PAGE]);
  TP_CHECK(mb[7 * PAGE + 1] == 0xb7, "B: the mapping's write is lost");
  /* C: the private page stays private; the file and the untouched pages are the file's. */
  TP_CHECK(mc[PAGE] == 0xc1 && mc[2 * PAGE - 1] == 0xc1, "C: private page is %x", mc[PAGE]);
  TP_CHECK(mc[2 * PAGE] == 0x72 && mc[0] == 0x70, "C: untouched pages %x %x", mc[0], mc[2 * PAGE]);
  TP_CHECK(pread(c, got, 1, PAGE) == 1 && (unsigned char)got[0] == 0x71, "C: the file's page 1 is %x",
           (unsigned char)got[0]);
  TP_CHECK(pwrite(c, "\x99", 1, 4 * PAGE) == 1 && mc[4 * PAGE] == 0x99,
           "C: an untouched private page no longer follows the file");
  /* D */
  TP_CHECK(md[1] == 0x22222222, "D: the child's write before dump is %x", md[1]);
  md[2] = 0x33333333;
  kill(child, SIGTERM);
  int status;
  TP_CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0,
           "D: child status %x", status);
  TP_CHECK(md[3] == 0x44444444, "D: the child's new write did not reach the parent: memory is no longer shared");
  tp_pass();
}
