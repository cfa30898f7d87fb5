/* An inotify instance keeps its watches with their wd numbers (with gaps) and masks: after restore,
 * creating a file in the watched directory and modifying a watched file give events with the old wds,
 * and a new watch gets the next wd. argv[3] = a scratch directory. */
#include "tp.h"

#include <stdint.h>
#include <sys/inotify.h>
#include <time.h>

static char dir[2048];

static const char* in_dir(const char* name) {
  static char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  return path;
}

static void touch(const char* name) {
  int fd = open(in_dir(name), O_WRONLY | O_CREAT, 0644);
  TP_CHECK(fd >= 0, "create %s", name);
  close(fd);
}

static int add(int in, const char* name, uint32_t mask) {
  int wd = inotify_add_watch(in, name ? in_dir(name) : dir, mask);
  TP_CHECK(wd > 0, "inotify_add_watch %s: %s", name ? name : dir, strerror(errno));
  return wd;
}

static void drain(int in) {
  char buf[4096];
  while (read(in, buf, sizeof buf) > 0) {
  }
}

/* Reads one event (waiting up to a second); returns its wd and mask and copies the name. */
static void next_event(int in, int* wd, uint32_t* mask, char* name, size_t size) {
  static char buf[4096] __attribute__((aligned(8)));
  static size_t have, at;
  for (int i = 0; at >= have && i < 200; i++) {
    ssize_t n = read(in, buf, sizeof buf);
    if (n > 0) {
      have = (size_t)n;
      at = 0;
    } else {
      usleep(5000);
    }
  }
  TP_CHECK(at < have, "no inotify event");
  struct inotify_event* ev = (struct inotify_event*)(buf + at);
  *wd = ev->wd;
  *mask = ev->mask;
  snprintf(name, size, "%s", ev->len ? ev->name : "");
  at += sizeof *ev + ev->len;
}

static int count_watches(int in) {
  char path[64], buf[4096];
  snprintf(path, sizeof path, "/proc/self/fdinfo/%d", in);
  int f = open(path, O_RDONLY);
  ssize_t n = read(f, buf, sizeof buf - 1);
  close(f);
  TP_CHECK(n > 0, "read %s", path);
  buf[n] = 0;
  int count = 0;
  for (char* p = buf; (p = strstr(p, "inotify wd:")); p++) count++;
  return count;
}

int main(int argc, char** argv) {
  tp_init(argc, argv);
  TP_CHECK(argc >= 4, "usage: tp_inotify READY RESULT DIR");
  snprintf(dir, sizeof dir, "%s", argv[3]);
  touch("a");
  touch("b");
  touch("c");
  touch("d");
  touch("e");
  int in = inotify_init1(IN_NONBLOCK);
  TP_CHECK(in >= 0, "inotify_init1");
  TP_CHECK(add(in, NULL, IN_CREATE) == 1, "dir wd");
  int gap = add(in, "a", IN_MODIFY);
  TP_CHECK(inotify_rm_watch(in, gap) == 0, "rm a");
  TP_CHECK(add(in, "b", IN_MODIFY) == 3, "b wd");
  gap = add(in, "c", IN_ATTRIB);
  TP_CHECK(inotify_rm_watch(in, gap) == 0, "rm c");
  TP_CHECK(add(in, "d", IN_CLOSE_WRITE | IN_ONESHOT) == 5, "d wd");
  drain(in);

  tp_ready(argv);
  tp_wait_for_term(NULL);

  TP_CHECK(count_watches(in) == 3, "%d watches", count_watches(in));
  int wd;
  uint32_t mask;
  char name[256], fresh[64];
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  snprintf(fresh, sizeof fresh, "new-%ld-%ld", (long)ts.tv_sec, ts.tv_nsec);
  touch(fresh);
  next_event(in, &wd, &mask, name, sizeof name);
  TP_CHECK(wd == 1 && mask == IN_CREATE && !strcmp(name, fresh), "create event wd %d mask %x name '%s'", wd, mask, name);
  unlink(in_dir(fresh));
  int fd = open(in_dir("b"), O_WRONLY | O_APPEND);
  TP_CHECK(fd >= 0 && write(fd, "x", 1) == 1, "write b");
  next_event(in, &wd, &mask, name, sizeof name);
  TP_CHECK(wd == 3 && mask == IN_MODIFY, "modify event wd %d mask %x", wd, mask);
  close(fd);
  fd = open(in_dir("d"), O_WRONLY);
  close(fd);
  next_event(in, &wd, &mask, name, sizeof name);
  TP_CHECK(wd == 5 && mask == IN_CLOSE_WRITE, "close event wd %d mask %x", wd, mask);
  next_event(in, &wd, &mask, name, sizeof name);
  TP_CHECK(wd == 5 && mask == IN_IGNORED, "one-shot watch not removed: wd %d mask %x", wd, mask);
  /* The same inode keeps its wd; a new one gets the next number. */
  TP_CHECK(add(in, NULL, IN_CREATE | IN_MASK_ADD) == 1, "dir wd changed");
  int next = add(in, "e", IN_ATTRIB);
  TP_CHECK(next == 6, "new watch got wd %d", next);
  TP_CHECK(fcntl(in, F_GETFL) & O_NONBLOCK, "O_NONBLOCK lost");
  tp_pass();
}
