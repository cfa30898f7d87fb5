/* Eventfds keep their counter, semaphore mode, flags and sharing across checkpoint/restore. */
#include "tp.h"

#include <stdint.h>
#include <sys/eventfd.h>

static void fdinfo(int fd, char* buf, size_t size) {
  char path[64];
  snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
  int f = open(path, O_RDONLY);
  TP_CHECK(f >= 0, "open %s", path);
  ssize_t n = read(f, buf, size - 1);
  TP_CHECK(n > 0, "read %s", path);
  buf[n] = 0;
  close(f);
}

int main(int argc, char** argv) {
  tp_init(argc, argv);
  int sem = eventfd(5, EFD_SEMAPHORE | EFD_NONBLOCK);
  TP_CHECK(sem >= 0, "eventfd");
  TP_CHECK(dup2(sem, 40) == 40, "dup2");
  int big = eventfd(0, EFD_CLOEXEC);
  uint64_t v = 0x100000007ull; /* more than eventfd()'s 32-bit initial value */
  TP_CHECK(write(big, &v, sizeof v) == sizeof v, "write big");

  tp_ready(argv);
  tp_wait_for_term(NULL);

  char info[1024];
  fdinfo(sem, info, sizeof info);
  char* count = strstr(info, "eventfd-count:");
  TP_CHECK(count && strtoull(count + 14, NULL, 16) == 5, "semaphore fdinfo: %s", info);
  TP_CHECK(strstr(info, "eventfd-semaphore: 1"), "semaphore mode lost: %s", info);
  /* Semaphore reads give 1 each; the dup shares the counter. */
  for (int i = 0; i < 5; i++) {
    uint64_t r = 0;
    int fd = (i % 2) ? 40 : sem;
    TP_CHECK(read(fd, &r, sizeof r) == sizeof r, "read %d from fd %d: %s", i, fd, strerror(errno));
    TP_CHECK(r == 1, "semaphore read %d gave %llu", i, (unsigned long long)r);
  }
  uint64_t r = 0;
  TP_CHECK(read(40, &r, sizeof r) < 0 && errno == EAGAIN, "counter not exhausted after 5 reads (or not O_NONBLOCK)");
  TP_CHECK(fcntl(sem, F_GETFL) & O_NONBLOCK, "O_NONBLOCK lost");
  TP_CHECK(!(fcntl(sem, F_GETFD) & FD_CLOEXEC), "FD_CLOEXEC appeared");
  TP_CHECK(fcntl(big, F_GETFD) & FD_CLOEXEC, "FD_CLOEXEC lost");
  TP_CHECK(!(fcntl(big, F_GETFL) & O_NONBLOCK), "O_NONBLOCK appeared");
  fdinfo(big, info, sizeof info);
  TP_CHECK(strstr(info, "eventfd-semaphore: 0"), "counter eventfd became a semaphore: %s", info);
  TP_CHECK(read(big, &r, sizeof r) == sizeof r && r == 0x100000007ull, "big counter read %llx", (unsigned long long)r);
  tp_pass();
}
