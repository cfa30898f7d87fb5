/* fds READY_FILE DATA_FILE [COUNT]: opens COUNT (default 5000) descriptors, alternately /dev/null and
 * DATA_FILE (created if missing), each with its own open file description. */
#include <sys/resource.h>

#include "ready.h"

int main(int argc, char** argv) {
  if (argc < 3 || argc > 4) {
    fprintf(stderr, "usage: %s READY_FILE DATA_FILE [COUNT]\n", argv[0]);
    return 2;
  }
  long count = argc == 4 ? strtol(argv[3], NULL, 10) : 5000;
  if (count <= 0) {
    fprintf(stderr, "bad count\n");
    return 2;
  }
  /* The default soft limit (1024) is below COUNT; the hard limit can be reached without privilege. */
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) bench_die("getrlimit");
  rl.rlim_cur = rl.rlim_max;
  if (setrlimit(RLIMIT_NOFILE, &rl) != 0) bench_die("setrlimit");
  if (rl.rlim_max != RLIM_INFINITY && (rlim_t)count + 16 > rl.rlim_max) {
    fprintf(stderr, "RLIMIT_NOFILE hard limit %llu is too low for %ld fds\n", (unsigned long long)rl.rlim_max,
            count);
    return 1;
  }
  int data = open(argv[2], O_RDWR | O_CREAT, 0644);
  if (data < 0) bench_die("open data file");
  if (write(data, "crshim bench\n", 13) != 13) bench_die("write data file");
  close(data);
  for (long i = 0; i < count; i++) {
    int fd = (i % 2) ? open(argv[2], O_RDONLY) : open("/dev/null", O_RDWR);
    if (fd < 0) bench_die("open");
  }
  bench_ready(argv[1]);
  bench_idle();
}
