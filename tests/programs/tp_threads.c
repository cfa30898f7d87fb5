/* Threads keep their TIDs, TLS, stacks and SSE/AVX register state across checkpoint/restore. */
#include <immintrin.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/syscall.h>

#include "tp.h"

#define NTHREADS 3

static __thread uint64_t tls_value;
static volatile int stop_workers;
static volatile int workers_ready;
static volatile int worker_failed;
static pid_t tids[NTHREADS];

static void* worker(void* arg) {
  int idx = (int)(intptr_t)arg;
  tids[idx] = (pid_t)syscall(SYS_gettid);
  tls_value = 0x1111111111111111ull * (uint64_t)(idx + 1);
  /* A value that lives only in ymm registers across the sleeps below. */
  __m256i v = _mm256_set_epi64x(idx + 1, idx + 2, idx + 3, idx + 4);
  __sync_fetch_and_add(&workers_ready, 1);
  uint64_t rounds = 0;
  while (!stop_workers) {
    __asm__ volatile("" : "+x"(v));
    struct timespec ts = {0, 2000000};
    nanosleep(&ts, NULL);
    __asm__ volatile("" : "+x"(v));
    rounds++;
  }
  int64_t lanes[4];
  _mm256_storeu_si256((__m256i*)lanes, v);
  if (lanes[0] != idx + 4 || lanes[3] != idx + 1) worker_failed = 1;
  if (tls_value != 0x1111111111111111ull * (uint64_t)(idx + 1)) worker_failed = 2;
  if (tids[idx] != (pid_t)syscall(SYS_gettid)) worker_failed = 3;
  return (void*)(uintptr_t)rounds;
}

int main(int argc, char** argv) {
  tp_init(argc, argv);
  tls_value = 42;
  pthread_t th[NTHREADS];
  for (int i = 0; i < NTHREADS; i++) pthread_create(&th[i], NULL, worker, (void*)(intptr_t)i);
  while (workers_ready < NTHREADS) usleep(1000);
  __m128d x = _mm_set_pd(1.5, -2.25);
  pid_t pid = getpid();
  tp_ready(argv);
  tp_wait_for_term(NULL);
  __asm__ volatile("" : "+x"(x));
  stop_workers = 1;
  for (int i = 0; i < NTHREADS; i++) {
    void* r;
    TP_CHECK(pthread_join(th[i], &r) == 0, "join %d", i);
  }
  TP_CHECK(worker_failed == 0, "worker check %d failed", worker_failed);
  TP_CHECK(tls_value == 42, "main TLS");
  double d[2];
  _mm_storeu_pd(d, x);
  TP_CHECK(d[0] == -2.25 && d[1] == 1.5, "main xmm");
  TP_CHECK(getpid() == pid, "pid changed from %d to %d", pid, getpid());
  /* Threads can still be created after restore. */
  pthread_t extra;
  TP_CHECK(pthread_create(&extra, NULL, worker, (void*)(intptr_t)0) == 0, "pthread_create after restore");
  stop_workers = 1;
  pthread_join(extra, NULL);
  tp_pass();
}
