/* vmas READY_FILE [COUNT]: creates COUNT (default 5000) one-page VMAs with alternating protections,
 * so the kernel cannot merge them; each holds one touched page. */
#include <sys/mman.h>

#include "ready.h"

int main(int argc, char** argv) {
  if (argc < 2 || argc > 3) {
    fprintf(stderr, "usage: %s READY_FILE [COUNT]\n", argv[0]);
    return 2;
  }
  long count = argc == 3 ? strtol(argv[2], NULL, 10) : 5000;
  if (count <= 0) {
    fprintf(stderr, "bad count\n");
    return 2;
  }
  long page = sysconf(_SC_PAGESIZE);
  size_t len = (size_t)count * (size_t)page;
  char* mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) bench_die("mmap");
  for (long i = 0; i < count; i++) mem[i * page] = (char)(i | 1);
  /* Every odd page read-only: the region splits into COUNT VMAs. */
  for (long i = 1; i < count; i += 2)
    if (mprotect(mem + i * page, (size_t)page, PROT_READ) != 0) bench_die("mprotect");
  bench_ready(argv[1]);
  bench_idle();
}
