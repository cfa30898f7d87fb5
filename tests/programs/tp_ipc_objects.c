/* SysV IPC objects of the program's own IPC namespace (the test starts it under `unshare --ipc`) come
 * back with the same ids, keys, modes, owners and contents: a shm segment with a pattern, a semaphore
 * set with values, a message queue with three messages and a raised byte limit. Ids are not the first
 * ones a namespace hands out, so only restoring the ids themselves gets them right.
 * argv[3] = "attached": the segment stays attached and must come back attached at the same address. */
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>

#include "tp.h"

enum { SHM_SIZE = 3 * 4096 + 100, NSEMS = 4, QBYTES = 5000 };
static const unsigned short sem_values[NSEMS] = {1, 2, 300, 0};
static const struct {
  long type;
  const char* text;
} messages[] = {{1, "first message"}, {7, "second, of type 7"}, {2, "third"}};

struct msgbuf_ {
  long type;
  char text[256];
};

static char pattern(size_t i) { return (char)('A' + i % 23 + i / 4096); }

int main(int argc, char** argv) {
  tp_init(argc, argv);
  /* Burn a few ids so the objects below get sequence numbers other than a fresh namespace's. */
  for (int i = 0; i < 3; i++) {
    int s = shmget(IPC_PRIVATE, 4096, 0600), m = msgget(IPC_PRIVATE, 0600), e = semget(IPC_PRIVATE, 1, 0600);
    TP_CHECK(s >= 0 && m >= 0 && e >= 0, "burn ids");
    shmctl(s, IPC_RMID, NULL);
    msgctl(m, IPC_RMID, NULL);
    semctl(e, 0, IPC_RMID);
  }
  int shm = shmget(0x5ca1ab1e, SHM_SIZE, IPC_CREAT | IPC_EXCL | 0640);
  TP_CHECK(shm >= 0, "shmget: %s", strerror(errno));
  char* p = shmat(shm, NULL, 0);
  TP_CHECK(p != (void*)-1, "shmat");
  for (size_t i = 0; i < SHM_SIZE; i++) p[i] = pattern(i);
  int attached = argc > 3 && !strcmp(argv[3], "attached");
  if (!attached) TP_CHECK(shmdt(p) == 0, "shmdt"); /* attached segments are not supported */
  struct shmid_ds sds;
  TP_CHECK(shmctl(shm, IPC_STAT, &sds) == 0, "shm IPC_STAT");
  sds.shm_perm.uid = 1234;
  sds.shm_perm.gid = 4321;
  TP_CHECK(shmctl(shm, IPC_SET, &sds) == 0, "shm IPC_SET");
  /* A segment nobody wrote: no pages at all. */
  int empty = shmget(IPC_PRIVATE, 8192, 0600);
  TP_CHECK(empty >= 0, "shmget empty");

  int sem = semget(0x5e3a, NSEMS, IPC_CREAT | IPC_EXCL | 0600);
  TP_CHECK(sem >= 0, "semget: %s", strerror(errno));
  TP_CHECK(semctl(sem, 0, SETALL, sem_values) == 0, "SETALL");

  int msq = msgget(0x3e55, IPC_CREAT | IPC_EXCL | 0660);
  TP_CHECK(msq >= 0, "msgget: %s", strerror(errno));
  struct msqid_ds mds;
  TP_CHECK(msgctl(msq, IPC_STAT, &mds) == 0, "msg IPC_STAT");
  mds.msg_qbytes = QBYTES;
  TP_CHECK(msgctl(msq, IPC_SET, &mds) == 0, "msg IPC_SET");
  for (int i = 0; i < 3; i++) {
    struct msgbuf_ m = {messages[i].type, {0}};
    strcpy(m.text, messages[i].text);
    TP_CHECK(msgsnd(msq, &m, strlen(m.text) + 1, IPC_NOWAIT) == 0, "msgsnd %d", i);
  }
  TP_CHECK(shm > 0 && sem > 0 && msq > 0, "ids were not burnt (%d %d %d)", shm, sem, msq);

  tp_ready(argv);
  tp_wait_for_term(NULL);

  TP_CHECK(shmget(0x5ca1ab1e, 0, 0) == shm, "shm key 0x5ca1ab1e now has id %d, was %d", shmget(0x5ca1ab1e, 0, 0), shm);
  TP_CHECK(shmctl(shm, IPC_STAT, &sds) == 0, "shm %d is gone", shm);
  TP_CHECK(sds.shm_segsz == SHM_SIZE, "shm size %zu", (size_t)sds.shm_segsz);
  TP_CHECK((sds.shm_perm.mode & 0777) == 0640, "shm mode %o", sds.shm_perm.mode & 0777);
  TP_CHECK(sds.shm_perm.uid == 1234 && sds.shm_perm.gid == 4321, "shm owner %u:%u", sds.shm_perm.uid,
           sds.shm_perm.gid);
  if (attached) {
    /* The old attachment still shows the segment, and writes through it reach the segment. */
    TP_CHECK(sds.shm_nattch == 1, "the segment has %lu attachments", (unsigned long)sds.shm_nattch);
    for (size_t i = 0; i < SHM_SIZE; i++) TP_CHECK(p[i] == pattern(i), "attached shm byte %zu is %d", i, p[i]);
    p[5000] = '#';
  }
  char* r = shmat(shm, NULL, SHM_RDONLY);
  TP_CHECK(r != (void*)-1, "shmat after restore");
  for (size_t i = 0; i < SHM_SIZE; i++)
    TP_CHECK(r[i] == (attached && i == 5000 ? '#' : pattern(i)), "shm byte %zu is %d", i, r[i]);
  shmdt(r);
  TP_CHECK(shmctl(empty, IPC_STAT, &sds) == 0 && sds.shm_segsz == 8192, "the empty segment %d is gone", empty);
  char* q = shmat(empty, NULL, SHM_RDONLY);
  TP_CHECK(q != (void*)-1 && q[0] == 0 && q[8191] == 0, "the empty segment is not empty");

  TP_CHECK(semget(0x5e3a, 0, 0) == sem, "sem key now has id %d, was %d", semget(0x5e3a, 0, 0), sem);
  unsigned short got[NSEMS] = {0};
  TP_CHECK(semctl(sem, 0, GETALL, got) == 0, "GETALL");
  for (int i = 0; i < NSEMS; i++) TP_CHECK(got[i] == sem_values[i], "semaphore %d is %u", i, got[i]);
  struct semid_ds eds;
  TP_CHECK(semctl(sem, 0, IPC_STAT, &eds) == 0 && (eds.sem_perm.mode & 0777) == 0600, "sem mode");
  struct sembuf op = {2, -300, IPC_NOWAIT};
  TP_CHECK(semop(sem, &op, 1) == 0 && semctl(sem, 2, GETVAL) == 0, "semop on the restored set");

  TP_CHECK(msgget(0x3e55, 0) == msq, "msg key now has id %d, was %d", msgget(0x3e55, 0), msq);
  TP_CHECK(msgctl(msq, IPC_STAT, &mds) == 0, "msg IPC_STAT after restore");
  TP_CHECK(mds.msg_qnum == 3, "%lu messages queued", (unsigned long)mds.msg_qnum);
  TP_CHECK(mds.msg_qbytes == QBYTES, "queue limit %lu", (unsigned long)mds.msg_qbytes);
  TP_CHECK((mds.msg_perm.mode & 0777) == 0660, "msg mode %o", mds.msg_perm.mode & 0777);
  for (int i = 0; i < 3; i++) {
    struct msgbuf_ m;
    memset(&m, 0, sizeof m);
    ssize_t n = msgrcv(msq, &m, sizeof m.text, 0, IPC_NOWAIT);
    TP_CHECK(n == (ssize_t)strlen(messages[i].text) + 1, "message %d: %zd bytes", i, n);
    TP_CHECK(m.type == messages[i].type && !strcmp(m.text, messages[i].text), "message %d: type %ld '%s'", i, m.type,
             m.text);
  }
  tp_pass();
}
