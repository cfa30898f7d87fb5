/* anon READY_FILE MIB [PERCENT%]: maps MIB MiB of private anonymous memory and touches every page,
 * or PERCENT% of them spread evenly over the region (a sparse address space). */
#include <sys/mman.h>

#include "ready.h"

int main(int argc, char** argv) {
  if (argc < 3 || argc > 4) {
    fprintf(stderr, "usage: %s READY_FILE MIB [PERCENT%%]\n", argv[0]);
    return 2;
  }
  char* end = NULL;
  unsigned long mib = strtoul(argv[2], &end, 10);
  if (*end || mib == 0) {
    fprintf(stderr, "bad size: %s\n", argv[2]);
    return 2;
  }
  unsigned long percent = 100;
  if (argc == 4) {
    percent = strtoul(argv[3], &end, 10);
    if ((*end && strcmp(end, "%") != 0) || percent == 0 || percent > 100) {
      fprintf(stderr, "bad fraction: %s\n", argv[3]);
      return 2;
    }
  }
  long page = sysconf(_SC_PAGESIZE);
  size_t len = (size_t)mib << 20;
  size_t pages = len / (size_t)page;
  char* mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) bench_die("mmap");
  /* The k-th touched page is floor(k * 100 / percent): evenly spread, exactly pages*percent/100 of them.
   * Each page gets a non-zero word so no layer can treat it as a zero page. */
  size_t touched = pages * percent / 100;
  for (size_t k = 0; k < touched; k++) {
    size_t i = k * 100 / percent;
    *(size_t*)(mem + i * (size_t)page) = i + 1;
  }
  bench_ready(argv[1]);
  bench_idle();
}
