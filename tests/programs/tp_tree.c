/* A 12-process tree over 3 levels: every live process has 2 threads; one zombie; two sessions;
 * three process groups. After restore each process checks its pid, ppid, pgid, sid, thread count and
 * memory, then asks its children to check theirs and collects their verdicts (exit codes).
 *
 *   R (session and group leader)
 *   +- A            +- A1, A2, A3 (A3 is a zombie with exit code 7)
 *   +- B (setsid)   +- B1, B2 +- B2a
 *   +- C (setpgid)  +- C1 +- C1a   (C1 is pid 1 of a new pid namespace, C1a its pid 2)
 */
#include "tp.h"

#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#define MEM_WORDS (256 * 1024)

struct self {
  const char* name;
  pid_t pid, ppid, pgid, sid;
  uint64_t* mem;
  pid_t kids[4];
  int nkids;
  pid_t zombie;  /* a child left unreaped on purpose */
};

static struct self me;
static __thread uint64_t tls_tag;
static volatile uint64_t worker_tls_seen;
static volatile int worker_stop;

static void* worker(void* arg) {
  (void)arg;
  tls_tag = 0xabc0000000000000ull | (uint64_t)getpid();
  while (!worker_stop) {
    worker_tls_seen = tls_tag;
    usleep(2000);
  }
  return NULL;
}

static uint64_t pattern(size_t i) { return ((uint64_t)me.pid << 32) ^ (i * 2654435761u); }

#define READY_FD 100 /* a child's end of its "I am set up" pipe (nothing else may stay open) */

static void report_ready(void) {
  if (write(READY_FD, "r", 1) != 1) _exit(5);
  close(READY_FD);
}

/* Sets up the state of one process (after fork). */
static void become(const char* name) {
  me.name = name;
  me.pid = getpid();
  me.nkids = 0;
  me.zombie = 0;
  me.mem = malloc(MEM_WORDS * sizeof(uint64_t));
  for (size_t i = 0; i < MEM_WORDS; i++) me.mem[i] = pattern(i);
  pthread_t t;
  worker_stop = 0;
  pthread_create(&t, NULL, worker, NULL);
}

static void record_ids(void) {
  me.ppid = getppid();
  me.pgid = getpgrp();
  me.sid = getsid(0);
}

static int count_threads(void) {
  FILE* f = fopen("/proc/self/status", "r");
  char line[256];
  int n = -1;
  while (f && fgets(line, sizeof line, f))
    if (sscanf(line, "Threads: %d", &n) == 1) break;
  if (f) fclose(f);
  return n;
}

/* Runs in every process after SIGTERM: checks itself, then its subtree. Exit code 0 = all fine. */
static void verify_and_exit(void) {
  TP_CHECK(getpid() == me.pid, "%s: pid %d, expected %d", me.name, getpid(), me.pid);
  /* The root's parent is whoever restored it; everyone else keeps theirs. */
  TP_CHECK(me.name[0] == 'R' || getppid() == me.ppid, "%s: ppid %d, expected %d", me.name, getppid(), me.ppid);
  TP_CHECK(getpgrp() == me.pgid, "%s: pgid %d, expected %d", me.name, getpgrp(), me.pgid);
  TP_CHECK(getsid(0) == me.sid, "%s: sid %d, expected %d", me.name, getsid(0), me.sid);
  TP_CHECK(count_threads() == 2, "%s: %d threads, expected 2", me.name, count_threads());
  for (size_t i = 0; i < MEM_WORDS; i++) TP_CHECK(me.mem[i] == pattern(i), "%s: memory word %zu", me.name, i);
  TP_CHECK(worker_tls_seen == (0xabc0000000000000ull | (uint64_t)me.pid), "%s: worker TLS", me.name);
  if (me.zombie) {
    int st;
    TP_CHECK(waitpid(me.zombie, &st, WNOHANG) == me.zombie, "%s: zombie %d is gone", me.name, me.zombie);
    TP_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 7, "%s: zombie status %x", me.name, st);
  }
  for (int i = 0; i < me.nkids; i++) kill(me.kids[i], SIGTERM);
  for (int i = 0; i < me.nkids; i++) {
    int st;
    TP_CHECK(waitpid(me.kids[i], &st, 0) == me.kids[i], "%s: waitpid %d", me.name, me.kids[i]);
    TP_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s: child %d failed its checks (status %x)", me.name,
             me.kids[i], st);
  }
  worker_stop = 1;
}

/* Forks a child that runs `body`, then waits until the child's subtree reports ready. */
static pid_t spawn(const char* name, void (*body)(void)) {
  int ready[2];
  TP_CHECK(pipe(ready) == 0, "pipe");
  pid_t pid = fork();
  TP_CHECK(pid >= 0, "fork");
  if (pid == 0) {
    tp_result_path = NULL; /* only the root writes the result file */
    dup2(ready[1], READY_FD);
    syscall(SYS_close_range, 3, READY_FD - 1, 0);
    syscall(SYS_close_range, READY_FD + 1, ~0u, 0);
    become(name);
    body();
    record_ids();
    report_ready();
    tp_wait_for_term(NULL);
    verify_and_exit();
    _exit(0);
  }
  close(ready[1]);
  char c;
  TP_CHECK(read(ready[0], &c, 1) == 1, "%s: child %s did not get ready", me.name, name);
  close(ready[0]);
  me.kids[me.nkids++] = pid;
  return pid;
}

static void leaf(void) {}
static void node_a(void) {
  spawn("A1", leaf);
  spawn("A2", leaf);
  pid_t z = fork();
  if (z == 0) _exit(7);
  siginfo_t si;
  TP_CHECK(waitid(P_PID, z, &si, WEXITED | WNOWAIT) == 0, "waitid zombie");  /* a zombie now, left unreaped */
  me.zombie = z;
}
static void node_b2(void) { spawn("B2a", leaf); }
static void node_b(void) {
  TP_CHECK(setsid() == getpid(), "setsid");
  spawn("B1", leaf);
  spawn("B2", node_b2);
}
static void node_c1(void) { spawn("C1a", leaf); }
static void node_c(void) {
  TP_CHECK(setpgid(0, 0) == 0, "setpgid");
  TP_CHECK(unshare(CLONE_NEWPID) == 0, "unshare(CLONE_NEWPID): %s", strerror(errno)); /* C1 is its pid 1 */
  spawn("C1", node_c1);
}

int main(int argc, char** argv) {
  tp_init(argc, argv);
  become("R");
  spawn("A", node_a);
  spawn("B", node_b);
  spawn("C", node_c);
  record_ids();
  tp_ready(argv);
  tp_wait_for_term(NULL);
  verify_and_exit();
  tp_pass();
}
