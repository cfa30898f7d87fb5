/* Demo workload: counts up every 200 ms, printing each value to stdout with its pid. */
#include <stdio.h>
#include <unistd.h>

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  for (unsigned long n = 1;; n++) {
    printf("counter %lu (pid %d)\n", n, getpid());
    usleep(200000);
  }
}
