/* Incremental dumps: 64 MiB of memory with a known pattern. On SIGUSR1 it rewrites exactly 1000
 * pages (every 7th from page 100) and reports it in DIR/changed; after restore it checks every page,
 * so a page taken from the wrong (older) image is caught.
 * argv: READY RESULT DIR */
#include "tp.h"

#include <stdint.h>
#include <sys/mman.h>

#define PAGES 16384
#define PAGE 4096

static volatile sig_atomic_t change_requested;
static unsigned char* mem;
static int changed;
static const char* dir;

static void on_usr1(int sig) {
  (void)sig;
  change_requested = 1;
}

static unsigned char expected(size_t page) {
  int rewritten = changed && page >= 100 && (page - 100) % 7 == 0 && (page - 100) / 7 < 1000;
  return (unsigned char)(rewritten ? 0xa0 + page % 31 : 1 + page % 251);
}

static void tick(void) {
  if (!change_requested || changed) return;
  changed = 1;
  for (size_t i = 0; i < 1000; i++) memset(mem + (100 + i * 7) * PAGE, expected(100 + i * 7), PAGE);
  char path[4200];
  snprintf(path, sizeof path, "%s/changed", dir);
  tp_write_file(path, "1000\n");
}

int main(int argc, char** argv) {
  tp_init(argc, argv);
  TP_CHECK(argc == 4, "usage: tp_predump READY RESULT DIR");
  dir = argv[3];
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_usr1;
  sigaction(SIGUSR1, &sa, NULL);
  mem = mmap(NULL, (size_t)PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  TP_CHECK(mem != MAP_FAILED, "mmap: %s", strerror(errno));
  for (size_t p = 0; p < PAGES; p++) memset(mem + p * PAGE, expected(p), PAGE);
  tp_ready(argv);
  tp_wait_for_term(tick);
  for (size_t p = 0; p < PAGES; p++)
    for (size_t b = 0; b < PAGE; b += 512)
      TP_CHECK(mem[p * PAGE + b] == expected(p), "page %zu byte %zu is %#x, expected %#x (changed=%d)", p, b,
               mem[p * PAGE + b], expected(p), changed);
  tp_pass();
}
