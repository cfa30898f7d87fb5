/* floor FILE [MIB]: the restore floor. Maps MIB MiB (default: FILE's size) of anonymous memory with
 * MAP_POPULATE and copies that much from FILE, mapped read-only, into it: the least work any restore of
 * that many pages must do (allocate them, then fill them from the image in the page cache).
 * Prints the total seconds on stdout and "populate=S copy=S" on stderr. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char** argv) {
  if (argc < 2 || argc > 3) {
    fprintf(stderr, "usage: %s FILE [MIB]\n", argv[0]);
    return 2;
  }
  int fd = open(argv[1], O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    perror(argv[1]);
    return 1;
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    perror("fstat");
    return 1;
  }
  size_t len = (size_t)st.st_size;
  if (argc == 3) {
    size_t want = (size_t)strtoul(argv[2], NULL, 10) << 20;
    if (want > len) {
      fprintf(stderr, "%s holds %zu bytes, fewer than %s MiB\n", argv[1], len, argv[2]);
      return 1;
    }
    len = want;
  }
  if (len == 0) {
    fprintf(stderr, "%s is empty\n", argv[1]);
    return 1;
  }
  double t0 = now();
  const char* src = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
  if (src == MAP_FAILED) {
    perror("mmap file");
    return 1;
  }
  char* dst = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (dst == MAP_FAILED) {
    perror("mmap anonymous");
    return 1;
  }
  double t1 = now();
  memcpy(dst, src, len);
  double t2 = now();
  /* Read the copy back once so the compiler cannot drop the memcpy. */
  unsigned long sum = 0;
  for (size_t i = 0; i < len; i += 4096) sum += (unsigned char)dst[i];
  printf("%.6f\n", t2 - t0);
  fprintf(stderr, "populate=%.6f copy=%.6f check=%lu\n", t1 - t0, t2 - t1, sum);
  return 0;
}
