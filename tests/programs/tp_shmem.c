/* Shared anonymous memory stays shared between a parent and its child across checkpoint/restore:
 * each sees the other's old and new writes; a sparse object keeps its holes. */
#include <stdint.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "tp.h"

#define SIZE (4u << 20)

static volatile sig_atomic_t child_term;
static void on_child_term(int sig) { (void)sig; child_term = 1; }

int main(int argc, char** argv) {
  tp_init(argc, argv);
  uint32_t* shared = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  TP_CHECK(shared != MAP_FAILED, "mmap");
  char* sparse = mmap(NULL, 64 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  sparse[10 * 4096] = 42;
  for (uint32_t i = 0; i < SIZE / 8; i++) shared[i] = 0x11110000u + i;  /* first half: parent */
  int sync[2];
  TP_CHECK(pipe(sync) == 0, "pipe");
  pid_t child = fork();
  if (child == 0) {
    tp_result_path = NULL;
    signal(SIGTERM, on_child_term);
    for (uint32_t i = SIZE / 8; i < SIZE / 4; i++) shared[i] = 0x22220000u + i;  /* second half: child */
    close(sync[0]);
    close(sync[1]);
    while (!child_term) usleep(5000);
    /* After restore: the parent's words are visible, and a new word reaches the parent. */
    for (uint32_t i = 0; i < SIZE / 8; i++)
      if (shared[i] != 0x11110000u + i) _exit(2);
    shared[SIZE / 4 - 1] = 0xc0ffee;
    _exit(0);
  }
  close(sync[1]);
  char c;
  TP_CHECK(read(sync[0], &c, 1) == 0, "waiting for the child");  /* EOF: the child wrote its half */
  close(sync[0]);
  tp_ready(argv);
  tp_wait_for_term(NULL);
  for (uint32_t i = SIZE / 8; i < SIZE / 4; i++)
    TP_CHECK(shared[i] == 0x22220000u + i, "child's word %u = %x", i, shared[i]);
  TP_CHECK(sparse[10 * 4096] == 42, "sparse shared data");
  unsigned char vec[64];
  TP_CHECK(mincore(sparse, 64 * 4096, vec) == 0, "mincore");
  kill(child, SIGTERM);
  int st;
  TP_CHECK(waitpid(child, &st, 0) == child && WIFEXITED(st) && WEXITSTATUS(st) == 0, "child saw status %x", st);
  TP_CHECK(shared[SIZE / 4 - 1] == 0xc0ffee, "the child's new write did not reach the parent: memory is no longer shared");
  tp_pass();
}
