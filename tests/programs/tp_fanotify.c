/* A fanotify group keeps its marks: an inode mark (FAN_MODIFY | FAN_CLOSE_WRITE on watched.txt), a mount
 * mark (FAN_OPEN on the scratch directory's mount) and an inode mark with only an ignored mask (FAN_OPEN
 * on ignored.txt, surviving modification). After restore the group reports a write to watched.txt and
 * an open of other.txt, and no open of ignored.txt. argv[3] = a scratch directory that is a mount of its
 * own (so the mount mark sees only this program). With argv[4] = "fs" the group also has a filesystem
 * mark (FAN_MARK_FILESYSTEM); with "perm" a second group waits for FAN_OPEN_PERM on perm.txt (which
 * nothing opens): crshim refuses to dump either. */
#include "tp.h"

#include <sys/fanotify.h>
#include <sys/stat.h>

struct seen {
  int modify_watched, close_write_watched, open_other, open_ignored;
};

static ino_t ino_of(const char* path) {
  struct stat st;
  TP_CHECK(stat(path, &st) == 0, "stat %s", path);
  return st.st_ino;
}

/* Touches the three files, then reads every queued event. */
static struct seen exercise(int fan) {
  int w = open("watched.txt", O_WRONLY);
  TP_CHECK(w >= 0 && write(w, "x", 1) == 1, "write watched.txt");
  close(w);
  int o = open("other.txt", O_RDONLY);
  TP_CHECK(o >= 0, "open other.txt");
  close(o);
  int i = open("ignored.txt", O_RDONLY);
  TP_CHECK(i >= 0, "open ignored.txt");
  close(i);
  ino_t watched = ino_of("watched.txt"), other = ino_of("other.txt"), ignored = ino_of("ignored.txt");
  struct seen s = {0, 0, 0, 0};
  static char buf[65536] __attribute__((aligned(8)));
  for (;;) {
    ssize_t n = read(fan, buf, sizeof buf);
    if (n < 0 && errno == EAGAIN) break;
    TP_CHECK(n > 0, "read fanotify: %s", strerror(errno));
    for (struct fanotify_event_metadata* ev = (void*)buf; FAN_EVENT_OK(ev, n); ev = FAN_EVENT_NEXT(ev, n)) {
      TP_CHECK(ev->vers == FANOTIFY_METADATA_VERSION, "event version %d", ev->vers);
      struct stat st;
      if (ev->fd < 0) continue;
      TP_CHECK(fstat(ev->fd, &st) == 0, "fstat event fd");
      close(ev->fd);
      if (ev->pid != getpid()) continue;
      if (st.st_ino == watched && (ev->mask & FAN_MODIFY)) s.modify_watched++;
      if (st.st_ino == watched && (ev->mask & FAN_CLOSE_WRITE)) s.close_write_watched++;
      if (st.st_ino == other && (ev->mask & FAN_OPEN)) s.open_other++;
      if (st.st_ino == ignored && (ev->mask & FAN_OPEN)) s.open_ignored++;
    }
  }
  return s;
}

static void check(struct seen s, const char* when) {
  TP_CHECK(s.modify_watched >= 1, "%s: no FAN_MODIFY for watched.txt", when);
  TP_CHECK(s.close_write_watched >= 1, "%s: no FAN_CLOSE_WRITE for watched.txt", when);
  TP_CHECK(s.open_other >= 1, "%s: no FAN_OPEN for other.txt (mount mark)", when);
  TP_CHECK(s.open_ignored == 0, "%s: FAN_OPEN for ignored.txt despite its ignored mask", when);
}

int main(int argc, char** argv) {
  tp_init(argc, argv);
  TP_CHECK(argc >= 4 && chdir(argv[3]) == 0, "usage: tp_fanotify READY RESULT DIR");
  const char* names[] = {"watched.txt", "other.txt", "ignored.txt"};
  for (int i = 0; i < 3; i++) {
    int fd = open(names[i], O_RDWR | O_CREAT | O_TRUNC, 0600);
    TP_CHECK(fd >= 0, "create %s", names[i]);
    close(fd);
  }
  int fan = fanotify_init(FAN_CLASS_NOTIF | FAN_NONBLOCK, O_RDONLY | O_LARGEFILE);
  TP_CHECK(fan >= 0, "fanotify_init: %s", strerror(errno));
  TP_CHECK(fanotify_mark(fan, FAN_MARK_ADD, FAN_MODIFY | FAN_CLOSE_WRITE, AT_FDCWD, "watched.txt") == 0, "mark watched");
  TP_CHECK(fanotify_mark(fan, FAN_MARK_ADD | FAN_MARK_MOUNT, FAN_OPEN, AT_FDCWD, ".") == 0, "mark mount: %s",
           strerror(errno));
  TP_CHECK(fanotify_mark(fan, FAN_MARK_ADD | FAN_MARK_IGNORED_MASK | FAN_MARK_IGNORED_SURV_MODIFY, FAN_OPEN, AT_FDCWD,
                         "ignored.txt") == 0,
           "mark ignored");
  if (argc >= 5 && !strcmp(argv[4], "fs"))
    TP_CHECK(fanotify_mark(fan, FAN_MARK_ADD | FAN_MARK_FILESYSTEM, FAN_CLOSE_NOWRITE, AT_FDCWD, ".") == 0,
             "filesystem mark: %s", strerror(errno));
  if (argc >= 5 && !strcmp(argv[4], "perm")) {
    int fd = open("perm.txt", O_RDWR | O_CREAT | O_TRUNC, 0600);
    TP_CHECK(fd >= 0, "create perm.txt");
    close(fd);
    int perm = fanotify_init(FAN_CLASS_CONTENT | FAN_NONBLOCK, O_RDONLY);
    TP_CHECK(perm >= 0, "fanotify_init(FAN_CLASS_CONTENT): %s", strerror(errno));
    TP_CHECK(fanotify_mark(perm, FAN_MARK_ADD, FAN_OPEN_PERM, AT_FDCWD, "perm.txt") == 0, "permission mark: %s",
             strerror(errno));
  }
  check(exercise(fan), "before the dump");
  int flags = fcntl(fan, F_GETFL);
  tp_ready(argv);
  tp_wait_for_term(NULL);
  TP_CHECK(fcntl(fan, F_GETFL) == flags, "status flags %o, were %o", fcntl(fan, F_GETFL), flags);
  check(exercise(fan), "after restore");
  tp_pass();
}
