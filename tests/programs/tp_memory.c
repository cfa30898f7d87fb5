/* Anonymous memory (64 MiB with a checksum), heap and stack data survive checkpoint/restore. */
#include <stdint.h>
#include <sys/mman.h>

#include "tp.h"

#define ANON_SIZE (64ul << 20)

static uint64_t pattern(uint64_t i) { return i * 0x9e3779b97f4a7c15ull ^ (i >> 7); }

int main(int argc, char** argv) {
  tp_init(argc, argv);
  uint64_t* anon = mmap(NULL, ANON_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  TP_CHECK(anon != MAP_FAILED, "mmap: %s", strerror(errno));
  size_t words = ANON_SIZE / 8;
  uint64_t sum = 0;
  for (size_t i = 0; i < words; i++) {
    anon[i] = pattern(i);
    sum += anon[i];
  }
  /* A sparse area: only every 16th page touched, the rest must stay empty after restore. */
  char* sparse = mmap(NULL, 256 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  TP_CHECK(sparse != MAP_FAILED, "mmap sparse");
  for (int p = 0; p < 256; p += 16) sparse[p * 4096 + 5] = (char)p;
  /* A read-only area with data in it. */
  uint32_t* ro = mmap(NULL, 4096 * 4, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  for (int i = 0; i < 4096; i++) ro[i] = 0xabcd0000u + (uint32_t)i;
  mprotect(ro, 4096 * 4, PROT_READ);

  char* heap = malloc(1 << 20);
  for (int i = 0; i < (1 << 20); i++) heap[i] = (char)(i * 7);
  volatile char stack[16384];
  for (int i = 0; i < (int)sizeof stack; i++) stack[i] = (char)(i * 13);

  tp_ready(argv);
  tp_wait_for_term(NULL);

  uint64_t check = 0;
  for (size_t i = 0; i < words; i++) {
    TP_CHECK(anon[i] == pattern(i), "anon word %zu = %llx", i, (unsigned long long)anon[i]);
    check += anon[i];
  }
  TP_CHECK(check == sum, "anon checksum");
  /* Untouched pages must not come back as real pages (checked before reading faults them in). */
  unsigned char vec[256];
  TP_CHECK(mincore(sparse, 256 * 4096, vec) == 0, "mincore");
  int resident = 0;
  for (int p = 0; p < 256; p++) resident += vec[p] & 1;
  TP_CHECK(resident <= 16 + 8, "sparse area has %d resident pages, expected ~16", resident);
  for (int p = 0; p < 256; p++)
    TP_CHECK(sparse[p * 4096 + 5] == (p % 16 ? 0 : (char)p), "sparse page %d", p);
  for (int i = 0; i < 4096; i++) TP_CHECK(ro[i] == 0xabcd0000u + (uint32_t)i, "read-only word %d", i);
  for (int i = 0; i < (1 << 20); i++) TP_CHECK(heap[i] == (char)(i * 7), "heap byte %d", i);
  for (int i = 0; i < (int)sizeof stack; i++) TP_CHECK(stack[i] == (char)(i * 13), "stack byte %d", i);
  /* The heap must still grow after restore (brk restored). */
  void* more = malloc(8 << 20);
  TP_CHECK(more != NULL, "malloc after restore");
  memset(more, 1, 8 << 20);
  tp_pass();
}
