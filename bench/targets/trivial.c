/* trivial READY_FILE: the smallest target; measures the fixed cost of dump and restore. */
#include "ready.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s READY_FILE\n", argv[0]);
    return 2;
  }
  bench_ready(argv[1]);
  bench_idle();
}
