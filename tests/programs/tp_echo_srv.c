/* A TCP echo server to migrate: listens on ADDR:PORT, echoes every byte and checks that each
 * connection's stream is the test pattern (byte n is tp_pattern(n)), so a byte lost, doubled or
 * reordered across a checkpoint is caught where it happens. It also holds MIB MiB of patterned
 * memory, checked after SIGTERM. Each connection its peer closes is logged to LOG as "bytes N".
 * PASS: memory intact, no stream error, at least one connection closed cleanly by its peer and none
 * left open.
 * argv: READY RESULT ADDR PORT MIB LOG */
#include "tp.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/socket.h>

#define MAX_CONNS 4
#define PAGE 4096
/* The stream pattern repeats every PERIOD bytes (a prime): only a loss of a multiple of it could hide. */
#define PERIOD 65521u

static uint8_t tp_pattern(uint64_t n) { return (uint8_t)(((uint32_t)(n % PERIOD) * 2654435761u) >> 13); }

static uint8_t mem_byte(size_t page) { return (uint8_t)(1 + page % 251); }

struct conn {
  int fd;
  uint64_t bytes;
};

static void log_line(const char* path, const char* line) {
  int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  TP_CHECK(fd >= 0, "open %s: %s", path, strerror(errno));
  TP_CHECK(write(fd, line, strlen(line)) == (ssize_t)strlen(line), "write %s: %s", path, strerror(errno));
  close(fd);
}

static void write_all(int fd, const uint8_t* p, size_t len) {
  while (len > 0) {
    ssize_t n = write(fd, p, len);
    if (n < 0 && errno == EINTR) continue;
    TP_CHECK(n > 0, "echo write: %s", strerror(errno));
    p += n;
    len -= (size_t)n;
  }
}

int main(int argc, char** argv) {
  tp_init(argc, argv);
  (void)tp_wait_for_term;  /* this program waits in its own poll loop */
  TP_CHECK(argc == 7, "usage: tp_echo_srv READY RESULT ADDR PORT MIB LOG");
  const char* log = argv[6];
  size_t pages = (size_t)atoi(argv[5]) * 256;
  uint8_t* mem = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  TP_CHECK(mem != MAP_FAILED, "mmap: %s", strerror(errno));
  for (size_t p = 0; p < pages; p++) memset(mem + p * PAGE, mem_byte(p), PAGE);

  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[4]))};
  TP_CHECK(inet_pton(AF_INET, argv[3], &sa.sin_addr) == 1, "bad address %s", argv[3]);
  int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  TP_CHECK(bind(l, (struct sockaddr*)&sa, sizeof sa) == 0 && listen(l, 8) == 0, "listen on %s:%s: %s", argv[3], argv[4],
           strerror(errno));

  struct conn conns[MAX_CONNS];
  int nconns = 0, closed = 0;
  static uint8_t buf[65536];
  tp_ready(argv);
  while (!tp_term) {
    struct pollfd pfd[MAX_CONNS + 1];
    pfd[0] = (struct pollfd){.fd = l, .events = POLLIN};
    for (int i = 0; i < nconns; i++) pfd[i + 1] = (struct pollfd){.fd = conns[i].fd, .events = POLLIN};
    int r = poll(pfd, (nfds_t)nconns + 1, 100);
    if (r < 0 && errno == EINTR) continue;
    TP_CHECK(r >= 0, "poll: %s", strerror(errno));
    for (int i = nconns - 1; i >= 0; i--) {
      if (!pfd[i + 1].revents) continue;
      struct conn* c = &conns[i];
      ssize_t n = read(c->fd, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      TP_CHECK(n >= 0, "read after %llu bytes: %s", (unsigned long long)c->bytes, strerror(errno));
      if (n == 0) {
        char line[64];
        snprintf(line, sizeof line, "bytes %llu\n", (unsigned long long)c->bytes);
        log_line(log, line);
        close(c->fd);
        conns[i] = conns[--nconns];
        closed++;
        continue;
      }
      for (ssize_t k = 0; k < n; k++)
        TP_CHECK(buf[k] == tp_pattern(c->bytes + (uint64_t)k), "stream byte %llu is %#x, expected %#x",
                 (unsigned long long)(c->bytes + (uint64_t)k), buf[k], tp_pattern(c->bytes + (uint64_t)k));
      c->bytes += (uint64_t)n;
      write_all(c->fd, buf, (size_t)n);
    }
    if (pfd[0].revents & POLLIN) {
      int fd = accept4(l, NULL, NULL, SOCK_CLOEXEC);
      if (fd >= 0 && nconns < MAX_CONNS)
        conns[nconns++] = (struct conn){.fd = fd, .bytes = 0};
      else if (fd >= 0)
        close(fd);
    }
  }

  for (size_t p = 0; p < pages; p++)
    for (size_t b = 0; b < PAGE; b += 512)
      TP_CHECK(mem[p * PAGE + b] == mem_byte(p), "page %zu byte %zu is %#x, expected %#x", p, b, mem[p * PAGE + b],
               mem_byte(p));
  TP_CHECK(closed >= 1, "no connection was closed by its peer");
  TP_CHECK(nconns == 0, "%d connection(s) still open", nconns);
  tp_pass();
}
