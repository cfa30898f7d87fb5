/* Processes that share kernel objects with their parent keep sharing them across checkpoint/restore:
 *   A: clone(CLONE_FILES)              - an fd opened by one is open in the other, both ways
 *   B: clone(CLONE_FS)                 - chdir() and umask() by one are seen by the other
 *   C: clone(CLONE_VM | CLONE_SIGHAND) - memory writes and sigaction() by one are seen by the other
 *   D: fork() with MAP_SHARED anonymous memory - writes are seen both ways
 * Each sharing is set up before the checkpoint and exercised again after restore; kcmp() must say
 * the objects are shared, and must say the ones that should not be shared are not. */
#include "tp.h"

#include <linux/kcmp.h>
#include <limits.h>
#include <sched.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#define STACK_SIZE (256 * 1024)

static char dir1[PATH_MAX], dir2[PATH_MAX];

/* Shared with C (CLONE_VM): the handshake and the words each side writes. */
static volatile int c_phase;
static volatile int c_verdict;
static volatile uint64_t c_word, c_word2, p_word;

static void h_usr1(int sig) { (void)sig; }
static void h_usr2(int sig) { (void)sig; }
static void h_hup(int sig) { (void)sig; }

static void* handler_of(int sig) {
  struct sigaction sa;
  if (sigaction(sig, NULL, &sa) < 0) return NULL;
  return (void*)sa.sa_handler;
}

static void set_handler(int sig, void (*h)(int)) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = h;
  sigaction(sig, &sa, NULL);
}

/* Sleeps without touching anything but the stack (C shares the parent's TLS and errno). */
static void nap(void) {
  struct timespec ts = {0, 2000000};
  syscall(SYS_nanosleep, &ts, NULL);
}

static int same(pid_t a, pid_t b, int type) { return syscall(SYS_kcmp, a, b, type, 0, 0) == 0; }

static int fd_open(int fd) { return fcntl(fd, F_GETFD) >= 0; }

static void dup_null_to(int fd) {
  int n = open("/dev/null", O_RDONLY);
  if (n < 0 || dup2(n, fd) != fd) _exit(90);
  close(n);
}

static int child_a(void* arg) {
  (void)arg;
  tp_result_path = NULL;
  dup_null_to(151);
  while (!tp_term) usleep(5000);
  if (!fd_open(150)) _exit(11);  /* opened by the parent before the checkpoint */
  if (!fd_open(200)) _exit(12);  /* opened by the parent after restore */
  dup_null_to(201);              /* for the parent to find */
  _exit(0);
}

static int child_b(void* arg) {
  (void)arg;
  tp_result_path = NULL;
  if (chdir(dir1) < 0) _exit(90);
  umask(027);
  while (!tp_term) usleep(5000);
  char cwd[PATH_MAX];
  if (!getcwd(cwd, sizeof cwd) || strcmp(cwd, dir2) != 0) _exit(21);  /* the parent's chdir after restore */
  mode_t old = umask(077);
  if (old != 022) _exit(22);
  _exit(0);
}

/* Runs in the parent's memory: raw syscalls and plain stores only. */
static int child_c(void* arg) {
  (void)arg;
  c_word = 0xc0de;
  set_handler(SIGUSR1, h_usr1);
  c_phase = 1;
  while (c_phase != 2) nap();
  int verdict = 1;
  if (p_word != 0xbeef) verdict = 31;
  else if (handler_of(SIGUSR2) != (void*)h_usr2) verdict = 32;
  set_handler(SIGHUP, h_hup);
  c_word2 = 0xf00d;
  c_verdict = verdict;
  c_phase = 3;
  syscall(SYS_exit, 0);
  return 0;
}

static pid_t start(int (*fn)(void*), int flags) {
  char* stack = malloc(STACK_SIZE);
  TP_CHECK(stack != NULL, "malloc");
  pid_t pid = clone(fn, stack + STACK_SIZE, flags | SIGCHLD, NULL);
  TP_CHECK(pid > 0, "clone(%#x): %s", flags, strerror(errno));
  return pid;
}

static void expect_exit(pid_t pid, const char* who) {
  int st;
  TP_CHECK(waitpid(pid, &st, 0) == pid, "waitpid(%s): %s", who, strerror(errno));
  TP_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s failed after restore, status %#x", who, st);
}

static int idle(void* arg) {
  (void)arg;
  for (;;) pause();
  return 0;
}

/* "siblings" mode: E's children F and G share an fd table that E itself gave up (unshare): no
 * clone can recreate that, and restore must refuse it. */
static void siblings(char** argv) {
  int sync[2];
  TP_CHECK(pipe(sync) == 0, "pipe");
  pid_t e = fork();
  TP_CHECK(e >= 0, "fork");
  if (e == 0) {
    start(idle, CLONE_FILES);
    start(idle, CLONE_FILES);
    if (unshare(CLONE_FILES) < 0) _exit(1);
    if (write(sync[1], "x", 1) != 1) _exit(1);
    for (;;) pause();
  }
  char c;
  TP_CHECK(read(sync[0], &c, 1) == 1, "E did not set up its children");
  tp_ready(argv);
  tp_wait_for_term(NULL);
  tp_pass();
}

int main(int argc, char** argv) {
  tp_init(argc, argv);
  if (argc > 3 && strcmp(argv[3], "siblings") == 0) siblings(argv);
  snprintf(dir1, sizeof dir1, "%s.d1", argv[2]);
  snprintf(dir2, sizeof dir2, "%s.d2", argv[2]);
  TP_CHECK(argv[2][0] == '/', "the result path must be absolute");
  mkdir(dir1, 0755);
  mkdir(dir2, 0755);
  umask(022);

  volatile uint32_t* shm = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  TP_CHECK(shm != MAP_FAILED, "mmap");
  shm[0] = 0x5eed;

  dup_null_to(150);
  pid_t a = start(child_a, CLONE_FILES);
  pid_t b = start(child_b, CLONE_FS);
  pid_t c = start(child_c, CLONE_VM | CLONE_SIGHAND);
  pid_t d = fork();
  TP_CHECK(d >= 0, "fork");
  if (d == 0) {
    tp_result_path = NULL;
    shm[1] = 0xd00d;
    while (!tp_term) usleep(5000);
    if (shm[0] != 0x5eed || shm[2] != 0xfeed) _exit(41);  /* the parent's writes, before and after */
    shm[3] = 0xface;
    _exit(0);
  }

  /* Wait for every child's side of the sharing to be in place. */
  char cwd[PATH_MAX];
  for (int i = 0; !(fd_open(151) && getcwd(cwd, sizeof cwd) && strcmp(cwd, dir1) == 0 && c_phase == 1 &&
                    shm[1] == 0xd00d);
       i++) {
    TP_CHECK(i < 2000, "children did not set up their sharing");
    usleep(5000);
  }
  TP_CHECK(handler_of(SIGUSR1) == (void*)h_usr1, "C's sigaction not seen before the checkpoint");
  tp_ready(argv);
  tp_wait_for_term(NULL);

  pid_t me = getpid();
  TP_CHECK(same(me, a, KCMP_FILES), "A does not share the fd table");
  TP_CHECK(!same(me, a, KCMP_VM) && !same(me, a, KCMP_FS), "A shares more than its fd table");
  TP_CHECK(same(me, b, KCMP_FS), "B does not share the fs state");
  TP_CHECK(!same(me, b, KCMP_FILES) && !same(me, b, KCMP_VM), "B shares more than its fs state");
  TP_CHECK(same(me, c, KCMP_VM), "C does not share the address space");
  TP_CHECK(same(me, c, KCMP_SIGHAND), "C does not share the signal handlers");
  TP_CHECK(!same(me, c, KCMP_FILES) && !same(me, c, KCMP_FS), "C shares its fd table or fs state");
  TP_CHECK(!same(me, d, KCMP_VM) && !same(me, d, KCMP_FILES), "D shares its mm or fd table");

  /* A: its fd from before the checkpoint; a new fd each way. */
  TP_CHECK(fd_open(150) && fd_open(151), "fds of the shared table lost");
  dup_null_to(200);
  kill(a, SIGTERM);
  expect_exit(a, "A (CLONE_FILES)");
  TP_CHECK(fd_open(201), "the fd A opened after restore is not in the parent's table");

  /* B: B's chdir/umask from before the checkpoint; the parent's now. */
  TP_CHECK(getcwd(cwd, sizeof cwd) && strcmp(cwd, dir1) == 0, "cwd %s, B had moved it to %s", cwd, dir1);
  mode_t mask = umask(022);
  TP_CHECK(mask == 027, "umask %o, B had set 027", mask);
  TP_CHECK(chdir(dir2) == 0, "chdir");
  kill(b, SIGTERM);
  expect_exit(b, "B (CLONE_FS)");
  mask = umask(022);
  TP_CHECK(mask == 077, "umask %o, B set 077 after restore", mask);

  /* C: memory and handlers both ways. */
  TP_CHECK(c_word == 0xc0de, "C's write before the checkpoint is lost");
  TP_CHECK(handler_of(SIGUSR1) == (void*)h_usr1, "C's SIGUSR1 handler is lost");
  p_word = 0xbeef;
  set_handler(SIGUSR2, h_usr2);
  c_phase = 2;
  for (int i = 0; c_phase != 3; i++) {
    TP_CHECK(i < 2000, "C does not see the parent's memory writes any more");
    usleep(5000);
  }
  TP_CHECK(c_verdict == 1, "C's check failed: %d", c_verdict);
  TP_CHECK(c_word2 == 0xf00d, "C's write after restore not seen");
  TP_CHECK(handler_of(SIGHUP) == (void*)h_hup, "C's sigaction after restore not seen");
  expect_exit(c, "C (CLONE_VM|CLONE_SIGHAND)");

  /* D: shared anonymous memory both ways. */
  shm[2] = 0xfeed;
  kill(d, SIGTERM);
  expect_exit(d, "D (MAP_SHARED)");
  TP_CHECK(shm[3] == 0xface, "D's write after restore not seen: memory no longer shared");
  tp_pass();
}
