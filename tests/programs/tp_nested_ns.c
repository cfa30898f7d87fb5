/* UTS and IPC namespaces inside the tree: the root stays in the namespaces it was started in; its
 * child C unshares new UTS and IPC namespaces, names its host, makes a SysV shared memory segment and
 * a message queue there and forks G, which lives in them too. After restore: the root still sees its
 * own host name; C and G see C's host name, the segment's contents and the queued
 * message, and share one UTS and one IPC namespace, which are not the root's.
 * Options after the contract arguments: "sibling": the root also forks S, which unshares a UTS
 * namespace of its own; "cgroup": C unshares a cgroup namespace too, and must see its cgroups as it
 * saw them (the namespace rooted where it was) after restore. */
#include "tp.h"

#include <sched.h>
#include <stdint.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define SHM_SIZE (64 * 1024)
static const char kNested[] = "crshim-nested";
static const char kSibling[] = "crshim-sibling";

struct msg {
  long type;
  char text[32];
};

static ino_t ns_ino(pid_t pid, const char* ns) {
  char path[64];
  struct stat st;
  snprintf(path, sizeof path, "/proc/%d/ns/%s", (int)pid, ns);
  TP_CHECK(stat(path, &st) == 0, "stat %s: %s", path, strerror(errno));
  return st.st_ino;
}

static void check_host(const char* want, const char* who) {
  char name[128] = "";
  TP_CHECK(gethostname(name, sizeof name) == 0, "%s: gethostname: %s", who, strerror(errno));
  TP_CHECK(strcmp(name, want) == 0, "%s: host name '%s', expected '%s'", who, name, want);
}

/* C's segment and queue, seen from C or G. */
static void check_ipc(int shmid, int msqid, const char* who, int take_message) {
  unsigned char* p = shmat(shmid, NULL, SHM_RDONLY);
  TP_CHECK(p != (void*)-1, "%s: shmat %d: %s", who, shmid, strerror(errno));
  for (int i = 0; i < SHM_SIZE; i++) TP_CHECK(p[i] == (unsigned char)(i * 7 + 3), "%s: segment byte %d = %u", who, i, p[i]);
  shmdt(p);
  if (take_message) {
    struct msg m;
    TP_CHECK(msgrcv(msqid, &m, sizeof m.text, 0, IPC_NOWAIT) == (ssize_t)sizeof m.text, "%s: msgrcv: %s", who, strerror(errno));
    TP_CHECK(strcmp(m.text, "queued before") == 0 && m.type == 5, "%s: message '%s' type %ld", who, m.text, m.type);
  }
}

/* Waits for SIGTERM, checks, and exits 0 (a failure exits non-zero through tp_fail). */
static void child_wait(void (*check)(void)) {
  tp_result_path = NULL; /* verdicts go to the parent as exit codes */
  while (!tp_term) usleep(5000);
  check();
  _exit(0);
}

static int g_shmid, g_msqid;
static char g_cgroups[4096];  /* /proc/self/cgroup as C saw it in its own cgroup namespace */

static void read_cgroups(char* buf, size_t size) {
  int fd = open("/proc/self/cgroup", O_RDONLY);
  TP_CHECK(fd >= 0, "open /proc/self/cgroup: %s", strerror(errno));
  ssize_t n = read(fd, buf, size - 1);
  TP_CHECK(n > 0, "read /proc/self/cgroup: %s", strerror(errno));
  buf[n] = 0;
  close(fd);
}
static void check_g(void) {
  check_host(kNested, "G");
  check_ipc(g_shmid, g_msqid, "G", 0);
}
static void check_s(void) { check_host(kSibling, "S"); }

static pid_t g;
static void check_c(void) {
  check_host(kNested, "C");
  if (g_cgroups[0]) {
    char now[sizeof g_cgroups];
    read_cgroups(now, sizeof now);
    TP_CHECK(strcmp(now, g_cgroups) == 0, "C: cgroups '%s', were '%s'", now, g_cgroups);
  }
  check_ipc(g_shmid, g_msqid, "C", 1);
  TP_CHECK(ns_ino(g, "uts") == ns_ino(getpid(), "uts") && ns_ino(g, "ipc") == ns_ino(getpid(), "ipc"),
           "C and G do not share their namespaces");
  kill(g, SIGTERM);
  int st;
  TP_CHECK(waitpid(g, &st, 0) == g && WIFEXITED(st) && WEXITSTATUS(st) == 0, "G failed (status 0x%x)", st);
  _exit(0);
}

static pid_t reap_ok(pid_t pid, const char* who) {
  kill(pid, SIGTERM);
  int st;
  TP_CHECK(waitpid(pid, &st, 0) == pid, "waitpid %s: %s", who, strerror(errno));
  TP_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s failed (status 0x%x)", who, st);
  return pid;
}

int main(int argc, char** argv) {
  tp_init(argc, argv);
  int sibling = 0, cgroup = 0;
  for (int i = 3; i < argc; i++) {
    sibling |= strcmp(argv[i], "sibling") == 0;
    cgroup |= strcmp(argv[i], "cgroup") == 0;
  }
  char root_host[128] = "";
  TP_CHECK(gethostname(root_host, sizeof root_host) == 0, "gethostname");
  int ready[2];
  TP_CHECK(pipe(ready) == 0, "pipe");

  pid_t c = fork();
  TP_CHECK(c >= 0, "fork C");
  if (c == 0) {
    TP_CHECK(unshare(CLONE_NEWUTS | CLONE_NEWIPC | (cgroup ? CLONE_NEWCGROUP : 0)) == 0, "C: unshare: %s", strerror(errno));
    if (cgroup) read_cgroups(g_cgroups, sizeof g_cgroups);
    TP_CHECK(sethostname(kNested, strlen(kNested)) == 0, "C: sethostname: %s", strerror(errno));
    g_shmid = shmget(IPC_PRIVATE, SHM_SIZE, IPC_CREAT | 0600);
    TP_CHECK(g_shmid >= 0, "C: shmget: %s", strerror(errno));
    unsigned char* p = shmat(g_shmid, NULL, 0);
    TP_CHECK(p != (void*)-1, "C: shmat: %s", strerror(errno));
    for (int i = 0; i < SHM_SIZE; i++) p[i] = (unsigned char)(i * 7 + 3);
    shmdt(p);
    g_msqid = msgget(IPC_PRIVATE, IPC_CREAT | 0600);
    TP_CHECK(g_msqid >= 0, "C: msgget: %s", strerror(errno));
    struct msg m = {5, "queued before"};
    TP_CHECK(msgsnd(g_msqid, &m, sizeof m.text, 0) == 0, "C: msgsnd: %s", strerror(errno));
    g = fork();
    TP_CHECK(g >= 0, "C: fork G");
    if (g == 0) child_wait(check_g);
    TP_CHECK(write(ready[1], "c", 1) == 1, "C: write");
    child_wait(check_c);
  }
  pid_t s = -1;
  if (sibling) {
    s = fork();
    TP_CHECK(s >= 0, "fork S");
    if (s == 0) {
      TP_CHECK(unshare(CLONE_NEWUTS) == 0, "S: unshare: %s", strerror(errno));
      TP_CHECK(sethostname(kSibling, strlen(kSibling)) == 0, "S: sethostname: %s", strerror(errno));
      TP_CHECK(write(ready[1], "s", 1) == 1, "S: write");
      child_wait(check_s);
    }
  }
  char byte;
  for (int i = 0; i < (sibling ? 2 : 1); i++) TP_CHECK(read(ready[0], &byte, 1) == 1, "children did not get ready");
  tp_ready(argv);
  tp_wait_for_term(NULL);

  check_host(root_host, "root");
  TP_CHECK(ns_ino(c, "uts") != ns_ino(getpid(), "uts") && ns_ino(c, "ipc") != ns_ino(getpid(), "ipc"),
           "C is in the root's UTS or IPC namespace");
  TP_CHECK((ns_ino(c, "cgroup") != ns_ino(getpid(), "cgroup")) == cgroup, "C's cgroup namespace is %s the root's",
           cgroup ? "" : "not");
  reap_ok(c, "C");
  if (sibling) reap_ok(s, "S");
  tp_pass();
}
