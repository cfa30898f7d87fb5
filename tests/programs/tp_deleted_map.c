/* Mappings of deleted files come back with their contents, flags and offsets, still deleted: a private
 * mapping (no fd left) keeps its copy-on-write pages and shows the file elsewhere; two shared mappings of
 * one deleted file (whose fd is still open) see each other's writes and write through to that fd's
 * file; a shared mapping of another deleted file with no fd keeps its contents. argv[3] = a scratch dir. */
#include <sys/mman.h>
#include <sys/stat.h>

#include "tp.h"

enum { PAGE = 4096 };

static void fill(char* buf, size_t len, char seed) {
  for (size_t i = 0; i < len; i++) buf[i] = (char)(seed + i % 251);
}

static int create(const char* name, char seed, size_t len) {
  static char buf[4 * PAGE];
  int fd = open(name, O_RDWR | O_CREAT | O_TRUNC, 0600);
  TP_CHECK(fd >= 0, "create %s", name);
  fill(buf, len, seed);
  TP_CHECK(write(fd, buf, len) == (ssize_t)len, "write %s", name);
  return fd;
}

/* The /proc/self/maps line of the area at `addr`: its flags, offset, inode and path. */
static int area(void* addr, char* perms, unsigned long long* off, unsigned long* ino, char* path) {
  FILE* f = fopen("/proc/self/maps", "r");
  TP_CHECK(f != NULL, "open maps");
  char line[512];
  int found = 0;
  while (fgets(line, sizeof line, f)) {
    unsigned long long start, end;
    path[0] = 0;
    if (sscanf(line, "%llx-%llx %4s %llx %*s %lu %255[^\n]", &start, &end, perms, off, ino, path) < 5) continue;
    if (start == (unsigned long long)(unsigned long)addr) {
      found = 1;
      break;
    }
  }
  fclose(f);
  return found;
}

static void check_area(void* addr, const char* want_perms, unsigned long long want_off, const char* name,
                       unsigned long* ino) {
  char perms[8], path[256];
  unsigned long long off;
  TP_CHECK(area(addr, perms, &off, ino, path), "no area at %p (%s)", addr, name);
  TP_CHECK(!strcmp(perms, want_perms), "%s: perms %s, want %s", name, perms, want_perms);
  TP_CHECK(off == want_off, "%s: offset %llx, want %llx", name, off, want_off);
  const char* tail = strstr(path, name);
  TP_CHECK(tail && !strcmp(tail + strlen(name), " (deleted)"), "%s: path '%s'", name, path);
}

int main(int argc, char** argv) {
  tp_init(argc, argv);
  TP_CHECK(argc >= 4 && chdir(argv[3]) == 0, "usage: tp_deleted_map READY RESULT DIR");
  static char want[4 * PAGE];

  /* Private, from the second page on, one page changed (copy-on-write); no fd kept. */
  int pf = create("private.bin", 'a', 3 * PAGE);
  char* priv = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, pf, PAGE);
  TP_CHECK(priv != MAP_FAILED, "mmap private");
  close(pf);
  memcpy(priv + PAGE, "copy-on-write page", 18);

  /* Shared, mapped twice, fd kept open. */
  int sf = create("shared.bin", 'k', 2 * PAGE);
  char* a = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, sf, 0);
  char* b = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, sf, 0);
  TP_CHECK(a != MAP_FAILED && b != MAP_FAILED, "mmap shared");
  memcpy(a + 10, "written before the dump", 23);

  /* Shared, read-only, no fd kept. */
  int rf = create("alone.bin", 'r', PAGE);
  char* alone = mmap(NULL, PAGE, PROT_READ, MAP_SHARED, rf, 0);
  TP_CHECK(alone != MAP_FAILED, "mmap alone");
  close(rf);

  TP_CHECK(unlink("private.bin") == 0 && unlink("shared.bin") == 0 && unlink("alone.bin") == 0, "unlink");
  tp_ready(argv);
  tp_wait_for_term(NULL);

  unsigned long ino_priv, ino_a, ino_b, ino_alone;
  check_area(priv, "rw-p", PAGE, "private.bin", &ino_priv);
  check_area(a, "rw-s", 0, "shared.bin", &ino_a);
  check_area(b, "rw-s", 0, "shared.bin", &ino_b);
  check_area(alone, "r--s", 0, "alone.bin", &ino_alone);

  fill(want, 3 * PAGE, 'a');
  TP_CHECK(!memcmp(priv, want + PAGE, PAGE), "private mapping: the untouched page differs from the file");
  TP_CHECK(!memcmp(priv + PAGE, "copy-on-write page", 18), "private mapping: the copy-on-write page was lost");
  TP_CHECK(!memcmp(priv + PAGE + 18, want + 2 * PAGE + 18, PAGE - 18), "private mapping: rest of page 2 differs");

  fill(want, 2 * PAGE, 'k');
  memcpy(want + 10, "written before the dump", 23);
  TP_CHECK(!memcmp(a, want, 2 * PAGE), "shared mapping: contents differ");
  TP_CHECK(!memcmp(b, want, 2 * PAGE), "second shared mapping: contents differ");
  struct stat st;
  TP_CHECK(fstat(sf, &st) == 0 && st.st_nlink == 0, "the shared file's fd is no longer on a deleted file");
  TP_CHECK(st.st_ino == ino_a && ino_a == ino_b, "fd and mappings on different inodes (%lu, %lu, %lu)",
           (unsigned long)st.st_ino, ino_a, ino_b);
  TP_CHECK(st.st_size == 2 * PAGE, "shared file size %ld", (long)st.st_size);
  memcpy(a + PAGE + 7, "after restore", 13);
  TP_CHECK(!memcmp(b + PAGE + 7, "after restore", 13), "a write through one shared mapping is not seen in the other");
  char buf[16] = {0};
  TP_CHECK(pread(sf, buf, 13, PAGE + 7) == 13 && !memcmp(buf, "after restore", 13),
           "a write through the shared mapping did not reach the file");
  TP_CHECK(pwrite(sf, "by fd", 5, 100) == 5 && !memcmp(a + 100, "by fd", 5), "a write by fd is not seen in the mapping");

  fill(want, PAGE, 'r');
  TP_CHECK(!memcmp(alone, want, PAGE), "read-only shared mapping: contents differ");
  TP_CHECK(access("private.bin", F_OK) != 0 && access("shared.bin", F_OK) != 0 && access("alone.bin", F_OK) != 0,
           "a deleted file reappeared in the directory");
  tp_pass();
}
