/* A workload that keeps changing while it is checkpointed again and again: a worker thread rewrites
 * 8 MiB of memory generation by generation, maps and unmaps regions, opens and closes files and
 * passes data through a pipe to itself. It checks its own invariants all the time, so damage done by
 * any one of many dump/restore cycles is caught, and reports the generations it got through. */
#include "tp.h"

#include <pthread.h>
#include <stdint.h>
#include <sys/mman.h>

#define MEM_SIZE (8u << 20)
#define WORDS (MEM_SIZE / sizeof(uint64_t))
#define SLOTS 8

static uint64_t* mem;
static void* slots[SLOTS];
static size_t slot_len[SLOTS];
static int pipefd[2];
static const char* scratch;
static volatile uint64_t generations;
static volatile int worker_failed;
static char worker_why[256];

static uint64_t word(uint64_t gen, size_t i) { return (gen * 0x9e3779b97f4a7c15ull) ^ (i * 0xbf58476d1ce4e5b9ull); }

static void fail_worker(const char* what, uint64_t gen) {
  snprintf(worker_why, sizeof worker_why, "%s at generation %llu", what, (unsigned long long)gen);
  worker_failed = 1;
}

/* One generation: check the previous contents, write the next, churn mappings, files and the pipe. */
static int step(uint64_t gen) {
  for (size_t i = 0; i < WORDS; i += 511)
    if (gen && mem[i] != word(gen - 1, i)) return fail_worker("memory lost a write", gen), 0;
  for (size_t i = 0; i < WORDS; i += 511) mem[i] = word(gen, i);

  unsigned s = (unsigned)(gen % SLOTS);
  if (slots[s]) {
    unsigned char expect = (unsigned char)(s + slot_len[s] / 4096);
    if (((unsigned char*)slots[s])[slot_len[s] - 1] != expect) return fail_worker("mapping lost its contents", gen), 0;
    munmap(slots[s], slot_len[s]);
  }
  slot_len[s] = 4096u * (1 + gen % 17);
  slots[s] = mmap(NULL, slot_len[s], PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (slots[s] == MAP_FAILED) return fail_worker("mmap failed", gen), 0;
  ((unsigned char*)slots[s])[slot_len[s] - 1] = (unsigned char)(s + slot_len[s] / 4096);

  int fd = open(scratch, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return fail_worker("open failed", gen), 0;
  uint64_t back = 0;
  if (pwrite(fd, &gen, sizeof gen, 0) != sizeof gen || pread(fd, &back, sizeof back, 0) != sizeof back || back != gen)
    return close(fd), fail_worker("file round trip failed", gen), 0;
  close(fd);

  if (write(pipefd[1], &gen, sizeof gen) != sizeof gen) return fail_worker("pipe write failed", gen), 0;
  if (read(pipefd[0], &back, sizeof back) != sizeof back || back != gen) return fail_worker("pipe lost data", gen), 0;
  return 1;
}

static void* worker(void* arg) {
  (void)arg;
  for (uint64_t gen = 0; !tp_term && !worker_failed; gen++) {
    if (!step(gen)) break;
    generations = gen + 1;
  }
  return NULL;
}

int main(int argc, char** argv) {
  tp_init(argc, argv);
  static char path[4200];
  snprintf(path, sizeof path, "%s.scratch", argv[2]);
  scratch = path;
  mem = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  TP_CHECK(mem != MAP_FAILED, "mmap: %s", strerror(errno));
  TP_CHECK(pipe2(pipefd, O_CLOEXEC) == 0, "pipe: %s", strerror(errno));
  pthread_t th;
  TP_CHECK(pthread_create(&th, NULL, worker, NULL) == 0, "pthread_create");
  while (generations < 3 && !worker_failed) usleep(1000);
  tp_ready(argv);
  tp_wait_for_term(NULL);
  pthread_join(th, NULL);
  TP_CHECK(!worker_failed, "%s", worker_why);
  /* The count goes to stdout's file for the test's report; it must have moved on while restored. */
  printf("generations %llu\n", (unsigned long long)generations);
  unlink(scratch);
  tp_pass();
}
