// libFuzzer target: the page-server protocol as it comes off the network. The first byte picks the
// receiver: even, a page server writing a dump's pagemaps and pages into a directory; odd, a lazy dump
// serving pages of a "task" (this process) to a lazy-pages daemon. The rest is what the peer sends,
// cut wherever the input ends. Neither may crash or hang; a page server that fails must leave no
// image behind, and nothing may appear outside its directory.
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "checkpoint/base/unique_fd.h"
#include "checkpoint/mem/lazy_remote.h"
#include "checkpoint/mem/page_server.h"

namespace {

using namespace crshim;

// A directory of our own for the page server, emptied after every input.
struct Scratch {
  std::string path;
  UniqueFd fd;
  Scratch() {
    char tmpl[] = "/tmp/crshim-fuzz-ps.XXXXXX";
    if (!::mkdtemp(tmpl)) abort();
    path = tmpl;
    fd.reset(::open(tmpl, O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!fd) abort();
  }
  ~Scratch() {
    clear();
    (void)::rmdir(path.c_str());
  }
  // The names in the directory, removing them.
  size_t clear() {
    size_t n = 0;
    DIR* d = ::opendir(path.c_str());
    if (!d) abort();
    while (dirent* e = ::readdir(d)) {
      std::string name = e->d_name;
      if (name == "." || name == "..") continue;
      (void)::unlinkat(fd.get(), name.c_str(), 0);
      n++;
    }
    ::closedir(d);
    return n;
  }
};

// Four pages of "task" memory, the middle two of them lazy, as pid 9 of a dump.
struct Task {
  char* mem;
  Task() {
    mem = static_cast<char*>(::mmap(nullptr, 4 * mem::kPageSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    if (mem == MAP_FAILED) abort();
    for (size_t i = 0; i < 4 * mem::kPageSize; i++) mem[i] = char(i * 13);
  }
  uint64_t at(size_t page) const { return reinterpret_cast<uint64_t>(mem) + page * mem::kPageSize; }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Scratch scratch;
  static Task task;
  static bool once = [] {
    ::signal(SIGPIPE, SIG_IGN);
    return true;
  }();
  (void)once;
  if (size < 1) return 0;
  bool lazy = data[0] & 1;
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) abort();
  UniqueFd peer(sv[0]), conn(sv[1]);
  // The peer: sends the input, then reads every answer until the receiver closes.
  std::thread sender([&] {
    size_t done = 1;
    while (done < size) {
      ssize_t n = ::send(peer.get(), data + done, size - done, MSG_NOSIGNAL);
      if (n <= 0) break;
      done += size_t(n);
    }
    ::shutdown(peer.get(), SHUT_WR);
  });
  std::thread reader([&] {
    char buf[65536];
    while (::recv(peer.get(), buf, sizeof buf, 0) > 0) {
    }
  });
  Logger log(0);
  Status st;
  if (lazy) {
    mem::LazyPagesSource source;
    source.add(9, ::getpid(), {{task.at(1), task.at(3)}});
    mem::LazySourceStats stats;
    st = source.serve(conn.get(), "fuzz", -1, log, stats);
  } else {
    st = mem::PageServer::serve(conn.get(), scratch.fd.get(), log, "fuzz", true);
  }
  conn.reset();
  sender.join();
  reader.join();
  size_t left = scratch.clear();
  if (!st && left) {
    fprintf(stderr, "a page server that failed left %zu images: %s\n", left, st.error().render().c_str());
    abort();
  }
  if (!st && st.error().message.empty() && st.error().err == 0) {
    fprintf(stderr, "an error with neither message nor errno: %s\n", st.error().render().c_str());
    abort();
  }
  return 0;
}
