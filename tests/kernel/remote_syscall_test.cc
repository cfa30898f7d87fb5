// Remote syscall tests: injected syscalls in real forked children, and proof that the children
// carry on undisturbed (interrupted read/sleep/poll, pending signals, handlers, seccomp).
#include "checkpoint/kernel/remote_syscall.h"
#include "tests/kernel/child_process.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "checkpoint/kernel/tracee.h"

namespace crshim::kernel {

// Readable test names for the parameterised suite.
void PrintTo(PtraceSyscall::Mode m, std::ostream* os) {
  *os << (m == PtraceSyscall::Mode::single_step ? "single_step" : m == PtraceSyscall::Mode::syscall_stops ? "syscall_stops" : "automatic");
}

namespace {

using namespace std::chrono_literals;

// ---- child process helpers ----

using namespace testing;

std::vector<std::string> words(const std::string& s) {
  std::istringstream in(s);
  std::vector<std::string> w;
  for (std::string x; in >> x;) w.push_back(x);
  return w;
}

char task_state(pid_t pid) {
  std::string s = slurp("/proc/" + std::to_string(pid) + "/stat");
  auto p = s.rfind(')');
  return p == std::string::npos || p + 2 >= s.size() ? '?' : s[p + 2];
}

template <class Pred>
bool eventually(Pred p, std::chrono::milliseconds limit = 3000ms) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (p()) return true;
    std::this_thread::sleep_for(2ms);
  }
  return p();
}

// Waits until the thread sits in syscall `nr` (first field of /proc/.../syscall).
bool blocked_in(pid_t pid, pid_t tid, long nr) {
  const std::string path = "/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid) + "/syscall";
  return eventually([&] {
    auto w = words(slurp(path));
    return !w.empty() && w[0] == std::to_string(nr);
  });
}

// The kernel's struct sigaction for rt_sigaction.
struct KernelSigaction {
  uint64_t handler;
  uint64_t flags;
  uint64_t restorer;
  uint64_t mask;
};

Result<KernelSigaction> query_sigaction(RemoteSyscall& rs, pid_t pid, uint64_t scratch, int sig) {
  CR_OK(rs.syscall(SYS_rt_sigaction, sig, 0, static_cast<long>(scratch), 8));
  KernelSigaction ks{};
  CR_OK(read_mem(pid, scratch, {reinterpret_cast<uint8_t*>(&ks), sizeof(ks)}));
  return ks;
}

// A child serving one-byte commands from `in` while blocked in poll() (a RESTARTBLOCK syscall):
// 'p' -> "P <getppid() result> <errno>", 't' -> raise(SIGTRAP) then "T <traps seen>", 'q' -> exit.
namespace cmd {
volatile sig_atomic_t g_traps = 0;
void on_trap(int, siginfo_t*, void*) { g_traps = g_traps + 1; }

template <class Setup>
int serve(int out, int in, Setup setup) {
  setup(out);
  say(out, "ready");
  for (;;) {
    pollfd p{in, POLLIN, 0};
    int n = poll(&p, 1, -1);
    if (n < 0) {
      say(out, "POLL %d", errno);  // an early EINTR would show up here
      continue;
    }
    char c;
    if (read(in, &c, 1) != 1) return 3;
    if (c == 'p') {
      errno = 0;
      long r = syscall(SYS_getppid);
      say(out, "P %ld %d", r, errno);
    } else if (c == 't') {
      raise(SIGTRAP);
      say(out, "T %d", static_cast<int>(g_traps));
    } else if (c == 'q') {
      return 0;
    }
  }
}
}  // namespace cmd

void spawn_cmd_child(Child& c, void (*setup)(int out)) {
  spawn(c, [setup](int out, int in) { return cmd::serve(out, in, setup); });
}

// ---- tests ----

TEST(RemoteSyscall, FindSyscallInsnPointsIntoTheVdso) {
  Child c;
  spawn_cmd_child(c, [](int) {});
  ASSERT_EQ(read_line(c.out), "ready");
  auto insn = find_syscall_insn(c.pid);
  ASSERT_TRUE(insn) << insn.error().render();
  std::istringstream maps(slurp("/proc/" + std::to_string(c.pid) + "/maps"));
  bool inside = false;
  for (std::string line; std::getline(maps, line);) {
    if (line.find("[vdso]") == std::string::npos) continue;
    uint64_t lo = std::stoull(line.substr(0, line.find('-')), nullptr, 16);
    uint64_t hi = std::stoull(line.substr(line.find('-') + 1), nullptr, 16);
    inside = *insn >= lo && *insn + 2 <= hi;
    EXPECT_EQ(line.substr(line.find(' ') + 1, 4), "r-xp");
  }
  EXPECT_TRUE(inside);
  uint8_t bytes[2] = {};
  ASSERT_TRUE(read_mem(c.pid, *insn, bytes));
  EXPECT_EQ(bytes[0], 0x0f);
  EXPECT_EQ(bytes[1], 0x05);
}

// Three threads: main spinning (and owning a SIGUSR1 handler), R blocked in read(), S in a 600 ms
// clock_nanosleep. Each gets syscalls injected; afterwards all must behave as if never stopped.
namespace three {
volatile sig_atomic_t g_usr1_from = 0;
void on_usr1(int, siginfo_t* si, void*) { g_usr1_from = si->si_pid; }

struct Fds {
  int out, in;
};
void* reader(void* arg) {
  auto* f = static_cast<Fds*>(arg);
  say(f->out, "R %ld", syscall(SYS_gettid));
  char ch = 0;
  ssize_t n = read(f->in, &ch, 1);
  say(f->out, "RD %zd %c %d", n, ch ? ch : '-', n < 0 ? errno : 0);
  return nullptr;
}
void* sleeper(void* arg) {
  auto* f = static_cast<Fds*>(arg);
  say(f->out, "S %ld", syscall(SYS_gettid));
  timespec t0, t1, d{0, 600'000'000};
  clock_gettime(CLOCK_MONOTONIC, &t0);
  int rc = clock_nanosleep(CLOCK_MONOTONIC, 0, &d, nullptr);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1'000'000;
  say(f->out, "SL %d %ld", rc, ms);
  return nullptr;
}

int body(int out, int in) {
  struct sigaction sa {};
  sa.sa_sigaction = on_usr1;
  sa.sa_flags = SA_SIGINFO;  // no SA_RESTART on purpose
  sigaction(SIGUSR1, &sa, nullptr);
  sigset_t usr1;
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &usr1, nullptr);  // the helpers inherit the block
  static Fds fds;
  fds = {out, in};
  pthread_t t;
  pthread_create(&t, nullptr, reader, &fds);
  pthread_create(&t, nullptr, sleeper, &fds);
  pthread_sigmask(SIG_UNBLOCK, &usr1, nullptr);
  say(out, "M %d %lx %lx %d", getpid(), reinterpret_cast<unsigned long>(&on_usr1),
      reinterpret_cast<unsigned long>(sbrk(0)), out);
  for (;;) {
    asm volatile("" ::: "memory");  // a real user-mode spin, re-reading the flag
    if (g_usr1_from) {
      say(out, "U %d", static_cast<int>(g_usr1_from));
      g_usr1_from = 0;
    }
  }
  return 0;
}
}  // namespace three

class RemoteSyscallModes : public ::testing::TestWithParam<PtraceSyscall::Mode> {};

TEST_P(RemoteSyscallModes, InjectsInEveryThreadAndTheProcessCarriesOn) {
  PtraceSyscall::Options opts;
  opts.mode = GetParam();
  Child c;
  spawn(c, three::body);
  std::map<std::string, std::vector<std::string>> hello;
  for (int i = 0; i < 3; ++i) {
    auto w = words(read_line(c.out));
    ASSERT_FALSE(w.empty());
    hello[w[0]] = w;
  }
  ASSERT_EQ(hello.count("M") + hello.count("R") + hello.count("S"), 3u);
  const pid_t rtid = std::stoi(hello["R"][1]);
  const pid_t stid = std::stoi(hello["S"][1]);
  const uint64_t handler = std::stoull(hello["M"][2], nullptr, 16);
  const uint64_t brk0 = std::stoull(hello["M"][3], nullptr, 16);
  const int child_out = std::stoi(hello["M"][4]);
  ASSERT_TRUE(blocked_in(c.pid, rtid, SYS_read));
  ASSERT_TRUE(blocked_in(c.pid, stid, SYS_clock_nanosleep));

  auto fp = FrozenProcess::freeze(c.pid);
  ASSERT_TRUE(fp) << fp.error().render();
  ASSERT_EQ(fp->threads().size(), 3u);
  Tracee* r = fp->find(rtid);
  Tracee* s = fp->find(stid);
  ASSERT_TRUE(r && s);
  EXPECT_EQ(static_cast<long>(r->saved_regs().orig_rax), SYS_read);
  EXPECT_EQ(static_cast<long>(r->saved_regs().rax), -kERESTARTSYS);
  EXPECT_EQ(static_cast<long>(s->saved_regs().orig_rax), SYS_clock_nanosleep);
  EXPECT_EQ(static_cast<long>(s->saved_regs().rax), -kERESTART_RESTARTBLOCK);

  // Sent while frozen: must stay pending through the injections and arrive after thaw.
  ASSERT_EQ(::kill(c.pid, SIGUSR1), 0);

  auto insn = find_syscall_insn(c.pid);
  ASSERT_TRUE(insn) << insn.error().render();
  {
    auto ps = PtraceSyscall::begin(fp->leader(), *insn, opts);
    ASSERT_TRUE(ps) << ps.error().render();
    EXPECT_EQ(ps->mode(), opts.mode);
    auto pid = ps->syscall(SYS_getpid);
    ASSERT_TRUE(pid) << pid.error().render();
    EXPECT_EQ(*pid, c.pid);

    auto scratch = remote_mmap(*ps, 4096);
    ASSERT_TRUE(scratch) << scratch.error().render();
    const std::string msg = "injected hello\n";
    ASSERT_TRUE(write_mem(c.pid, *scratch, {reinterpret_cast<const uint8_t*>(msg.data()), msg.size()}));
    std::string back(msg.size(), '\0');
    ASSERT_TRUE(read_mem(c.pid, *scratch, {reinterpret_cast<uint8_t*>(back.data()), back.size()}));
    EXPECT_EQ(back, msg);
    // The target itself reads the bytes we wrote: they are really in its memory.
    auto n = ps->syscall(SYS_write, child_out, static_cast<long>(*scratch), static_cast<long>(msg.size()));
    ASSERT_TRUE(n) << n.error().render();
    EXPECT_EQ(*n, static_cast<long>(msg.size()));
    EXPECT_EQ(read_line(c.out), "injected hello");

    auto ks = query_sigaction(*ps, c.pid, *scratch, SIGUSR1);
    ASSERT_TRUE(ks) << ks.error().render();
    EXPECT_EQ(ks->handler, handler);
    EXPECT_TRUE(ks->flags & SA_SIGINFO);
    EXPECT_FALSE(ks->flags & SA_RESTART);
    auto brk = ps->syscall(SYS_brk, 0);
    ASSERT_TRUE(brk);
    EXPECT_EQ(static_cast<uint64_t>(*brk), brk0);
    ASSERT_TRUE(remote_munmap(*ps, *scratch, 4096));
    EXPECT_EQ(ps->calls(), 6u);
    ASSERT_TRUE(ps->restore());
    EXPECT_FALSE(ps->active());
  }
  for (Tracee* t : {r, s}) {
    auto ps = PtraceSyscall::begin(*t, *insn, opts);
    ASSERT_TRUE(ps) << ps.error().render();
    auto tid = ps->syscall(SYS_gettid);
    ASSERT_TRUE(tid) << tid.error().render();
    EXPECT_EQ(*tid, t->tid());
    auto um = ps->syscall(SYS_umask, 022);  // set and put back: a state-changing call
    ASSERT_TRUE(um);
    ASSERT_TRUE(ps->syscall(SYS_umask, *um));
    ASSERT_TRUE(ps->restore());
    // The window put back the interrupted syscall's registers untouched.
    auto now = get_regs(t->tid());
    ASSERT_TRUE(now);
    EXPECT_TRUE(*now == t->saved_regs());
    auto mask = get_sigmask(t->tid());
    ASSERT_TRUE(mask);
    EXPECT_EQ(*mask, t->saved_sigmask());
  }
  ASSERT_TRUE(fp->thaw());
  EXPECT_EQ(status_hex(rtid, "SigBlk"), 1ULL << (SIGUSR1 - 1));

  ASSERT_EQ(write(c.in, "x", 1), 1);
  std::map<std::string, std::vector<std::string>> after;
  for (int i = 0; i < 3; ++i) {
    auto w = words(read_line(c.out, 3000));
    ASSERT_FALSE(w.empty()) << "missing report; got " << after.size();
    after[w[0]] = w;
  }
  // read() restarted and got the byte written after thaw (no EINTR, no -512 leak).
  EXPECT_EQ(after["RD"], (std::vector<std::string>{"RD", "1", "x", "0"}));
  // The pending signal arrived, from us.
  EXPECT_EQ(after["U"], (std::vector<std::string>{"U", std::to_string(getpid())}));
  // The sleep ran its full length.
  ASSERT_EQ(after["SL"].size(), 3u);
  EXPECT_EQ(after["SL"][1], "0");
  EXPECT_GE(std::stol(after["SL"][2]), 600);
}

INSTANTIATE_TEST_SUITE_P(Modes, RemoteSyscallModes,
                         ::testing::Values(PtraceSyscall::Mode::single_step, PtraceSyscall::Mode::syscall_stops),
                         [](const auto& info) {
                           return info.param == PtraceSyscall::Mode::single_step ? std::string("SingleStep")
                                                                                 : std::string("SyscallStops");
                         });

TEST(RemoteSyscall, FailureNamesTheSyscallTheThreadAndErrno) {
  Child c;
  spawn_cmd_child(c, [](int) {});
  ASSERT_EQ(read_line(c.out), "ready");
  auto fp = FrozenProcess::freeze(c.pid);
  ASSERT_TRUE(fp);
  auto insn = find_syscall_insn(c.pid);
  ASSERT_TRUE(insn);
  auto ps = PtraceSyscall::begin(fp->leader(), *insn);
  ASSERT_TRUE(ps);

  auto bad = ps->syscall(SYS_close, 987654);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, Errc::system);
  EXPECT_EQ(bad.error().err, EBADF);
  EXPECT_EQ(bad.error().op, "remote close");
  EXPECT_EQ(bad.error().object, "tid " + std::to_string(c.pid));
  EXPECT_NE(bad.error().render().find("EBADF"), std::string::npos);

  auto unknown = ps->syscall(999);
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().err, ENOSYS);
  EXPECT_EQ(unknown.error().op, "remote syscall 999");

  auto einval = ps->syscall(SYS_munmap, 1, 4096);
  ASSERT_FALSE(einval);
  EXPECT_EQ(einval.error().err, EINVAL);
  EXPECT_EQ(einval.error().op, "remote munmap");

  // Failures do not spoil the window.
  auto pid = ps->syscall(SYS_getpid);
  ASSERT_TRUE(pid);
  EXPECT_EQ(*pid, c.pid);
  ASSERT_TRUE(ps->restore());
  ASSERT_TRUE(fp->thaw());
  ASSERT_EQ(write(c.in, "p", 1), 1);
  EXPECT_EQ(read_line(c.out), "P " + std::to_string(getpid()) + " 0");
}

TEST(RemoteSyscall, WriteMemFallsBackToProcMemForReadOnlyPages) {
  Child c;
  spawn_cmd_child(c, [](int) {});
  ASSERT_EQ(read_line(c.out), "ready");
  auto fp = FrozenProcess::freeze(c.pid);
  ASSERT_TRUE(fp);
  auto insn = find_syscall_insn(c.pid);
  ASSERT_TRUE(insn);
  auto ps = PtraceSyscall::begin(fp->leader(), *insn);
  ASSERT_TRUE(ps);
  auto ro = remote_mmap(*ps, 8192, PROT_READ);
  ASSERT_TRUE(ro) << ro.error().render();

  std::vector<uint8_t> data(8192);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i * 7 + 1);
  // process_vm_writev alone is refused on a read-only page...
  iovec local{data.data(), data.size()}, remote{reinterpret_cast<void*>(*ro), data.size()};
  errno = 0;
  EXPECT_EQ(process_vm_writev(c.pid, &local, 1, &remote, 1, 0), -1);
  EXPECT_EQ(errno, EFAULT);
  // ...and write_mem gets through /proc/PID/mem.
  auto w = write_mem(c.pid, *ro, data);
  ASSERT_TRUE(w) << w.error().render();
  std::vector<uint8_t> back(data.size());
  ASSERT_TRUE(read_mem(c.pid, *ro, back));
  EXPECT_EQ(back, data);

  // PROT_NONE is unreadable for process_vm_readv; read_mem still works.
  ASSERT_TRUE(ps->syscall(SYS_mprotect, static_cast<long>(*ro), 8192, PROT_NONE));
  std::fill(back.begin(), back.end(), 0);
  auto r = read_mem(c.pid, *ro, back);
  ASSERT_TRUE(r) << r.error().render();
  EXPECT_EQ(back, data);
  ASSERT_TRUE(remote_munmap(*ps, *ro, 8192));

  // Unmapped memory is a clean error.
  std::vector<uint8_t> tiny(16);
  auto miss = read_mem(c.pid, *ro, tiny);
  ASSERT_FALSE(miss);
  EXPECT_EQ(miss.error().err, EIO);
}

TEST(RemoteSyscall, SigtrapHandlerSurvivesSingleStepping) {
  Child c;
  spawn_cmd_child(c, [](int out) {
    struct sigaction sa {};
    sa.sa_sigaction = cmd::on_trap;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGTRAP, &sa, nullptr);
    say(out, "H %lx", reinterpret_cast<unsigned long>(&cmd::on_trap));
  });
  auto h = words(read_line(c.out));
  ASSERT_EQ(h.size(), 2u);
  const uint64_t handler = std::stoull(h[1], nullptr, 16);
  ASSERT_EQ(read_line(c.out), "ready");
  ASSERT_TRUE(blocked_in(c.pid, c.pid, SYS_poll));

  auto fp = FrozenProcess::freeze(c.pid);
  ASSERT_TRUE(fp);
  EXPECT_EQ(static_cast<long>(fp->leader().saved_regs().rax), -kERESTART_RESTARTBLOCK);
  auto insn = find_syscall_insn(c.pid);
  ASSERT_TRUE(insn);
  {
    auto ps = PtraceSyscall::begin(fp->leader(), *insn);
    ASSERT_TRUE(ps);
    EXPECT_EQ(ps->mode(), PtraceSyscall::Mode::single_step);
    for (int i = 0; i < 20; ++i) ASSERT_TRUE(ps->syscall(SYS_getpid));
    auto scratch = remote_mmap(*ps, 4096);
    ASSERT_TRUE(scratch);
    auto ks = query_sigaction(*ps, c.pid, *scratch, SIGTRAP);
    ASSERT_TRUE(ks);
    EXPECT_EQ(ks->handler, handler);  // 22 step traps later, still the program's handler
    ASSERT_TRUE(remote_munmap(*ps, *scratch, 4096));
  }
  EXPECT_TRUE(fp->leader().deferred_signals().empty());
  ASSERT_TRUE(fp->thaw());
  // The program never saw our traps, and its own SIGTRAP still reaches its handler.
  ASSERT_EQ(write(c.in, "t", 1), 1);
  EXPECT_EQ(read_line(c.out), "T 1");
}

TEST(RemoteSyscall, IgnoredSigtrapSelectsSyscallStopsAndStaysIgnored) {
  Child c;
  spawn_cmd_child(c, [](int) { signal(SIGTRAP, SIG_IGN); });
  ASSERT_EQ(read_line(c.out), "ready");
  ASSERT_TRUE(blocked_in(c.pid, c.pid, SYS_poll));
  auto fp = FrozenProcess::freeze(c.pid);
  ASSERT_TRUE(fp);
  auto insn = find_syscall_insn(c.pid);
  ASSERT_TRUE(insn);
  {
    auto ps = PtraceSyscall::begin(fp->leader(), *insn);
    ASSERT_TRUE(ps);
    EXPECT_EQ(ps->mode(), PtraceSyscall::Mode::syscall_stops);
    for (int i = 0; i < 5; ++i) {
      auto pid = ps->syscall(SYS_getpid);
      ASSERT_TRUE(pid);
      EXPECT_EQ(*pid, c.pid);
    }
  }
  EXPECT_TRUE(status_hex(c.pid, "SigIgn") & (1ULL << (SIGTRAP - 1)));
  ASSERT_TRUE(fp->thaw());
  EXPECT_TRUE(status_hex(c.pid, "SigIgn") & (1ULL << (SIGTRAP - 1)));
  ASSERT_EQ(write(c.in, "p", 1), 1);  // poll() restarted (no stray EINTR line)
  EXPECT_EQ(read_line(c.out), "P " + std::to_string(getpid()) + " 0");
}

TEST(RemoteSyscall, InjectedSigtrapIgnoreIsNotUndoneByLaterSteps) {
  Child c;
  spawn_cmd_child(c, [](int) {});
  ASSERT_EQ(read_line(c.out), "ready");
  auto fp = FrozenProcess::freeze(c.pid);
  ASSERT_TRUE(fp);
  auto insn = find_syscall_insn(c.pid);
  ASSERT_TRUE(insn);
  {
    auto ps = PtraceSyscall::begin(fp->leader(), *insn);
    ASSERT_TRUE(ps);
    EXPECT_EQ(ps->mode(), PtraceSyscall::Mode::single_step);
    auto scratch = remote_mmap(*ps, 4096);
    ASSERT_TRUE(scratch);
    KernelSigaction ign{reinterpret_cast<uint64_t>(SIG_IGN), 0, 0, 0};
    ASSERT_TRUE(write_mem(c.pid, *scratch, {reinterpret_cast<const uint8_t*>(&ign), sizeof(ign)}));
    ASSERT_TRUE(ps->syscall(SYS_rt_sigaction, SIGTRAP, static_cast<long>(*scratch), 0, 8));
    EXPECT_EQ(ps->mode(), PtraceSyscall::Mode::syscall_stops);
    ASSERT_TRUE(remote_munmap(*ps, *scratch, 4096));
    ASSERT_TRUE(ps->syscall(SYS_getpid));
  }
  ASSERT_TRUE(fp->thaw());
  EXPECT_TRUE(status_hex(c.pid, "SigIgn") & (1ULL << (SIGTRAP - 1)));
}

TEST(RemoteSyscall, SuspendSeccompLetsAFilteredSyscallThrough) {
  if (!tracer_can_suspend_seccomp()) GTEST_SKIP() << "tracer lacks CAP_SYS_ADMIN or is under seccomp";
  Child c;
  spawn_cmd_child(c, [](int) {
    static sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_getppid, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    static sock_fprog prog = {4, f};
    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog);
  });
  ASSERT_EQ(read_line(c.out), "ready");
  auto insn = find_syscall_insn(c.pid);
  ASSERT_TRUE(insn);
  {
    auto fp = FrozenProcess::freeze(c.pid);
    ASSERT_TRUE(fp);
    auto ps = PtraceSyscall::begin(fp->leader(), *insn);
    ASSERT_TRUE(ps);
    auto r = ps->syscall(SYS_getppid);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().err, EPERM);
    EXPECT_EQ(r.error().op, "remote getppid");
  }
  {
    FreezeOptions fo;
    fo.ptrace_options |= PTRACE_O_SUSPEND_SECCOMP;
    auto fp = FrozenProcess::freeze(c.pid, fo);
    ASSERT_TRUE(fp) << fp.error().render();
    auto ps = PtraceSyscall::begin(fp->leader(), *insn);
    ASSERT_TRUE(ps);
    auto r = ps->syscall(SYS_getppid);
    ASSERT_TRUE(r) << r.error().render();
    EXPECT_EQ(*r, getpid());
  }
  // The filter applies again once detached.
  ASSERT_EQ(write(c.in, "p", 1), 1);
  EXPECT_EQ(read_line(c.out), "P -1 " + std::to_string(EPERM));
}

// PTRACE_CONT, unlike PTRACE_DETACH, does not send the thread through the kernel's signal path, so
// after a syscall-stop window the restart of the interrupted poll() depends on us.
TEST(RemoteSyscall, ResumeAfterASyscallStopWindowRestartsTheInterruptedSyscall) {
  Child c;
  spawn_cmd_child(c, [](int) {});
  ASSERT_EQ(read_line(c.out), "ready");
  ASSERT_TRUE(blocked_in(c.pid, c.pid, SYS_poll));
  auto t = Tracee::seize(c.pid);
  ASSERT_TRUE(t);
  auto insn = find_syscall_insn(c.pid);
  ASSERT_TRUE(insn);
  for (auto mode : {PtraceSyscall::Mode::syscall_stops, PtraceSyscall::Mode::single_step}) {
    ASSERT_TRUE(t->interrupt());
    EXPECT_EQ(static_cast<long>(t->saved_regs().rax), -kERESTART_RESTARTBLOCK);
    {
      PtraceSyscall::Options o;
      o.mode = mode;
      auto ps = PtraceSyscall::begin(*t, *insn, o);
      ASSERT_TRUE(ps);
      ASSERT_TRUE(ps->syscall(SYS_getpid));
      ASSERT_TRUE(ps->restore());
    }
    ASSERT_TRUE(t->resume());
    ASSERT_EQ(write(c.in, "p", 1), 1);
    EXPECT_EQ(read_line(c.out), "P " + std::to_string(getpid()) + " 0");
    ASSERT_TRUE(blocked_in(c.pid, c.pid, SYS_poll));
  }
  ASSERT_TRUE(t->detach());  // from a running tracee: interrupts first
  ASSERT_EQ(write(c.in, "p", 1), 1);
  EXPECT_EQ(read_line(c.out), "P " + std::to_string(getpid()) + " 0");
}

// The restore side's entry: a child that stopped itself under PTRACE_TRACEME.
TEST(RemoteSyscall, AdoptedTracemeChildTakesInjectedSyscallsAndRunsOn) {
  Child c;
  spawn(c, [](int out, int) {
    ptrace(PTRACE_TRACEME, 0, nullptr, nullptr);
    raise(SIGSTOP);
    say(out, "running %d", getpid());
    pause();
    return 0;
  });
  auto t = Tracee::adopt(c.pid, PTRACE_O_TRACESYSGOOD | PTRACE_O_EXITKILL, true);
  ASSERT_TRUE(t) << t.error().render();
  EXPECT_EQ(t->stop_kind(), StopKind::signal);
  EXPECT_FALSE(t->seized());
  auto insn = find_syscall_insn(c.pid);
  ASSERT_TRUE(insn);
  {
    PtraceSyscall::Options o;
    o.mode = PtraceSyscall::Mode::syscall_stops;
    EXPECT_FALSE(PtraceSyscall::begin(*t, *insn, o));  // needs PTRACE_INTERRUPT
    auto ps = PtraceSyscall::begin(*t, *insn);
    ASSERT_TRUE(ps) << ps.error().render();
    EXPECT_EQ(ps->mode(), PtraceSyscall::Mode::single_step);
    auto pid = ps->syscall(SYS_getpid);
    ASSERT_TRUE(pid);
    EXPECT_EQ(*pid, c.pid);
  }
  // Detaching from the SIGSTOP stop with no signal lets it run instead of stopping.
  ASSERT_TRUE(t->detach());
  EXPECT_EQ(read_line(c.out), "running " + std::to_string(c.pid));
}

// SIGSTOP cannot be blocked, so it can land in the middle of a window. It must be held back
// until the window is closed and then still take effect.
TEST(RemoteSyscall, SignalArrivingDuringAWindowTakesEffectAfterDetach) {
  for (auto mode : {PtraceSyscall::Mode::single_step, PtraceSyscall::Mode::syscall_stops}) {
    Child c;
    spawn_cmd_child(c, [](int) {});
    ASSERT_EQ(read_line(c.out), "ready");
    auto fp = FrozenProcess::freeze(c.pid);
    ASSERT_TRUE(fp);
    auto insn = find_syscall_insn(c.pid);
    ASSERT_TRUE(insn);
    {
      PtraceSyscall::Options o;
      o.mode = mode;
      auto ps = PtraceSyscall::begin(fp->leader(), *insn, o);
      ASSERT_TRUE(ps);
      ASSERT_TRUE(ps->syscall(SYS_getpid));
      ASSERT_EQ(::kill(c.pid, SIGSTOP), 0);
      for (int i = 0; i < 3; ++i) {
        auto pid = ps->syscall(SYS_getpid);
        ASSERT_TRUE(pid) << pid.error().render();
        EXPECT_EQ(*pid, c.pid);
      }
      ASSERT_EQ(fp->leader().deferred_signals().size(), 1u);
      EXPECT_EQ(fp->leader().deferred_signals()[0].si_signo, SIGSTOP);
      EXPECT_EQ(fp->leader().deferred_signals()[0].si_pid, getpid());
    }
    ASSERT_TRUE(fp->thaw());
    EXPECT_TRUE(eventually([&] { return task_state(c.pid) == 'T'; }));
    ASSERT_EQ(::kill(c.pid, SIGCONT), 0);
    ASSERT_EQ(write(c.in, "p", 1), 1);
    EXPECT_EQ(read_line(c.out), "P " + std::to_string(getpid()) + " 0");
  }
}

// clone_args as of Linux 5.3 (CLONE_ARGS_SIZE_VER0).
struct CloneArgs {
  uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls;
};

TEST(RemoteSyscall, InjectedClone3ReportsTheNewThread) {
  Child c;
  spawn_cmd_child(c, [](int) {});
  ASSERT_EQ(read_line(c.out), "ready");
  auto fp = FrozenProcess::freeze(c.pid);
  ASSERT_TRUE(fp);
  ASSERT_TRUE(fp->leader().set_options(PTRACE_O_TRACESYSGOOD | PTRACE_O_TRACECLONE));
  auto insn = find_syscall_insn(c.pid);
  ASSERT_TRUE(insn);
  auto ps = PtraceSyscall::begin(fp->leader(), *insn);
  ASSERT_TRUE(ps);
  auto scratch = remote_mmap(*ps, 16384);
  ASSERT_TRUE(scratch);
  CloneArgs ca{};
  ca.flags = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM;
  ca.stack = *scratch + 4096;
  ca.stack_size = 8192;
  ASSERT_TRUE(write_mem(c.pid, *scratch, {reinterpret_cast<const uint8_t*>(&ca), sizeof(ca)}));
  auto tid = ps->syscall(SYS_clone3, static_cast<long>(*scratch), sizeof(ca));
  ASSERT_TRUE(tid) << tid.error().render();
  EXPECT_EQ(ps->take_new_tids(), std::vector<pid_t>{static_cast<pid_t>(*tid)});
  EXPECT_EQ(access(("/proc/" + std::to_string(c.pid) + "/task/" + std::to_string(*tid)).c_str(), F_OK), 0);

  {
    // The new thread starts stopped, returning 0 from clone3 right after our syscall instruction.
    auto nt = Tracee::adopt(static_cast<pid_t>(*tid), PTRACE_O_TRACESYSGOOD, true);
    ASSERT_TRUE(nt) << nt.error().render();
    EXPECT_EQ(nt->saved_regs().rip, *insn + 2);
    EXPECT_EQ(nt->saved_regs().rax, 0u);
    EXPECT_EQ(nt->saved_regs().rsp, *scratch + 4096 + 8192);
    auto ps2 = PtraceSyscall::begin(*nt, *insn);
    ASSERT_TRUE(ps2);
    auto ex = ps2->syscall(SYS_exit, 0);
    ASSERT_TRUE(ex) << ex.error().render();
    EXPECT_TRUE(nt->gone());
  }
  EXPECT_TRUE(eventually([&] {
    return access(("/proc/" + std::to_string(c.pid) + "/task/" + std::to_string(*tid)).c_str(), F_OK) != 0;
  }));
  ASSERT_TRUE(remote_munmap(*ps, *scratch, 16384));
  ASSERT_TRUE(ps->restore());
  ASSERT_TRUE(fp->thaw());
  ASSERT_EQ(write(c.in, "p", 1), 1);
  EXPECT_EQ(read_line(c.out), "P " + std::to_string(getpid()) + " 0");
}

TEST(RemoteSyscall, SingleStepCallCostIsRecorded) {
  Child c;
  spawn_cmd_child(c, [](int) {});
  ASSERT_EQ(read_line(c.out), "ready");
  auto fp = FrozenProcess::freeze(c.pid);
  ASSERT_TRUE(fp);
  auto insn = find_syscall_insn(c.pid);
  ASSERT_TRUE(insn);
  auto ps = PtraceSyscall::begin(fp->leader(), *insn);
  ASSERT_TRUE(ps);
  constexpr int kCalls = 500;
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < kCalls; ++i) {
    auto pid = ps->syscall(SYS_getpid);
    ASSERT_TRUE(pid);
    ASSERT_EQ(*pid, c.pid);
  }
  double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / kCalls;
  RecordProperty("us_per_call", std::to_string(us));
  std::printf("injected getpid: %.1f us per call (freeze took %.3f ms)\n", us,
              std::chrono::duration<double, std::milli>(fp->freeze_duration()).count());
  EXPECT_LT(us, 2000.0);
}

}  // namespace
}  // namespace crshim::kernel
