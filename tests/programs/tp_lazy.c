/* Memory for lazy restores: MIB MiB of known anonymous memory (argv[3], default 64), checked on SIGTERM.
 * argv[4] "fork": on SIGTERM a child is forked first and checks the memory too (a fork after a lazy
 * restore, while pages may still be missing); the parent then unmaps, remaps and discards parts to
 * exercise the daemon's view of munmap / mremap / MADV_DONTNEED.
 * argv[4] "tree": a child made before the checkpoint holds its own copy with different contents. */
#include "tp.h"

#include <stdint.h>
#include <sys/mman.h>
#include <sys/wait.h>

static uint64_t pattern(uint64_t i, uint64_t seed) { return (i + seed) * 0x9e3779b97f4a7c15ull ^ (i >> 7); }

static void check_all(const uint64_t* mem, size_t words, uint64_t seed, const char* who) {
  for (size_t i = 0; i < words; i++)
    TP_CHECK(mem[i] == pattern(i, seed), "%s: word %zu = %llx", who, i, (unsigned long long)mem[i]);
}

int main(int argc, char** argv) {
  tp_init(argc, argv);
  size_t mib = argc > 3 ? (size_t)atoi(argv[3]) : 64;
  const char* mode = argc > 4 ? argv[4] : "";
  size_t size = mib << 20, words = size / 8;
  uint64_t* mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  TP_CHECK(mem != MAP_FAILED, "mmap: %s", strerror(errno));
  for (size_t i = 0; i < words; i++) mem[i] = pattern(i, 0);

  pid_t tree_child = -1;
  char child_result[4096];
  snprintf(child_result, sizeof child_result, "%s.child", argv[2]);
  if (strcmp(mode, "tree") == 0) {
    tree_child = fork();
    TP_CHECK(tree_child >= 0, "fork");
    if (tree_child == 0) {
      for (size_t i = 0; i < words; i += 3) mem[i] = pattern(i, 1);
      tp_result_path = child_result;
      while (!tp_term) usleep(5000);
      for (size_t i = 0; i < words; i++)
        TP_CHECK(mem[i] == pattern(i, i % 3 ? 0 : 1), "tree child: word %zu = %llx", i, (unsigned long long)mem[i]);
      _exit(0);
    }
  }
  tp_ready(argv);
  tp_wait_for_term(NULL);

  if (tree_child > 0) {
    kill(tree_child, SIGTERM);
    int st;
    TP_CHECK(waitpid(tree_child, &st, 0) == tree_child, "waitpid tree child");
    TP_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "tree child failed (status %d)", st);
  }
  if (strcmp(mode, "fork") == 0) {
    pid_t c = fork();
    TP_CHECK(c >= 0, "fork after restore");
    if (c == 0) {
      tp_result_path = child_result;
      check_all(mem, words, 0, "forked child");
      /* The child's writes are its own. */
      for (size_t i = 0; i < words; i += 512) mem[i] = 1;
      _exit(0);
    }
    /* Meanwhile: drop the last MiB, move the MiB before it, discard the one before that. */
    size_t mb = 1 << 20, w = mb / 8;
    char* base = (char*)mem;
    TP_CHECK(munmap(base + size - mb, mb) == 0, "munmap");
    void* moved = mremap(base + size - 2 * mb, mb, mb, MREMAP_MAYMOVE | MREMAP_FIXED, base + size - mb);
    TP_CHECK(moved == base + size - mb, "mremap: %s", strerror(errno));
    TP_CHECK(madvise(base + size - 3 * mb, mb, MADV_DONTNEED) == 0, "madvise");
    int st;
    TP_CHECK(waitpid(c, &st, 0) == c, "waitpid");
    TP_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "forked child failed (status %d)", st);
    check_all(mem, words - 3 * w, 0, "parent");
    const uint64_t* m = (const uint64_t*)moved;
    for (size_t i = 0; i < w; i++)
      TP_CHECK(m[i] == pattern(words - 2 * w + i, 0), "moved word %zu = %llx", i, (unsigned long long)m[i]);
    const uint64_t* z = (const uint64_t*)(base + size - 3 * mb);
    for (size_t i = 0; i < w; i++) TP_CHECK(z[i] == 0, "discarded word %zu = %llx", i, (unsigned long long)z[i]);
    /* The parent's memory did not see the child's writes. */
    TP_CHECK(mem[0] == pattern(0, 0), "parent word 0 changed by the child");
  } else {
    check_all(mem, words, 0, "memory");
  }
  tp_pass();
}
