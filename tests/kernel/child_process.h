// Helpers for kernel tests: a forked child that talks to the test over pipes and dies with it.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include <gtest/gtest.h>

namespace crshim::kernel::testing {

struct Child {
  pid_t pid = -1;
  int out = -1;  // lines from the child
  int in = -1;   // bytes to the child
  Child() = default;
  Child(const Child&) = delete;
  ~Child() {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      int st;
      while (waitpid(pid, &st, __WALL) == pid && !WIFEXITED(st) && !WIFSIGNALED(st)) {
      }
    }
    if (out >= 0) close(out);
    if (in >= 0) close(in);
  }
};

// Runs body(out_fd, in_fd) in a forked child that dies with the test.
template <class F>
void spawn(Child& c, F body) {
  int o[2], i[2];
  ASSERT_EQ(pipe2(o, O_CLOEXEC), 0);
  ASSERT_EQ(pipe2(i, O_CLOEXEC), 0);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    close(o[0]);
    close(i[1]);
    _exit(body(o[1], i[0]));
  }
  close(o[1]);
  close(i[0]);
  c.pid = pid;
  c.out = o[0];
  c.in = i[1];
}

__attribute__((format(printf, 2, 3))) inline void say(int fd, const char* fmt, ...) {
  char buf[256];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof(buf) - 1, fmt, ap);
  va_end(ap);
  buf[n++] = '\n';
  (void)!write(fd, buf, n);
}

// One line from the child, or "" on timeout/EOF.
inline std::string read_line(int fd, int timeout_ms = 3000) {
  std::string line;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    int left = static_cast<int>(
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count());
    pollfd p{fd, POLLIN, 0};
    if (left <= 0 || poll(&p, 1, left) <= 0) return "";
    char c;
    if (read(fd, &c, 1) != 1) return "";
    if (c == '\n') return line;
    line += c;
  }
}

inline std::string slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// A hex field of /proc/TID/status ("SigBlk", "CapEff"), or all ones when missing.
inline uint64_t status_hex(pid_t tid, const std::string& key) {
  std::istringstream in(slurp("/proc/" + std::to_string(tid) + "/status"));
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(key + ":", 0) == 0) return std::stoull(line.substr(key.size() + 1), nullptr, 16);
  return ~0ULL;
}

}  // namespace crshim::kernel::testing
