// Tracee / FrozenProcess / regset tests against real forked children (root).
#include "checkpoint/kernel/tracee.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "checkpoint/kernel/regs.h"
#include "checkpoint/kernel/remote_syscall.h"
#include "tests/kernel/child_process.h"

namespace crshim::kernel {
namespace {

using namespace std::chrono_literals;

using namespace testing;


char task_state(pid_t pid, pid_t tid) {
  std::string s = slurp("/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid) + "/stat");
  auto p = s.rfind(')');
  return p == std::string::npos || p + 2 >= s.size() ? '?' : s[p + 2];
}

std::set<pid_t> task_ids(pid_t pid) {
  std::set<pid_t> out;
  std::string dir = "/proc/" + std::to_string(pid) + "/task";
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d))
      if (e->d_name[0] != '.') out.insert(atoi(e->d_name));
    closedir(d);
  }
  return out;
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

constexpr uint64_t kMagic = 0x5eed'c0de'1234'abcdULL;

// Spins with kMagic held in r12 and xmm15 and checks both; returns 1 when either changed.
long spin_check(uint64_t magic, long iters) {
  long bad;
  asm volatile(
      "movq %[m], %%r12\n\t"
      "movq %[m], %%xmm15\n\t"
      "mov %[n], %%rcx\n\t"
      "xor %[bad], %[bad]\n\t"
      "1:\n\t"
      "cmp %[m], %%r12\n\t"
      "jne 2f\n\t"
      "dec %%rcx\n\t"
      "jnz 1b\n\t"
      "movq %%xmm15, %%rcx\n\t"
      "cmp %[m], %%rcx\n\t"
      "je 3f\n\t"
      "2:\n\t"
      "mov $1, %[bad]\n\t"
      "3:\n\t"
      : [bad] "=&r"(bad)
      : [m] "r"(magic), [n] "r"(iters)
      : "r12", "rcx", "xmm15", "cc");
  return bad;
}

struct Shared {
  std::atomic<long> counter{0};
  std::atomic<int> bad{0};
};

Shared* map_shared() {
  void* p = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? nullptr : new (p) Shared;
}

// A child that blocks SIGUSR2 and spins in spin_check forever, counting rounds in `sh`.
void spawn_register_child(Child& c, Shared* sh) {
  spawn(c, [sh](int out, int) {
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGUSR2);
    sigprocmask(SIG_BLOCK, &s, nullptr);
    say(out, "ready");
    for (;;) {
      if (spin_check(kMagic, 200000)) sh->bad.store(1);
      sh->counter.fetch_add(1);
    }
    return 0;
  });
}

// Interrupts until the thread stopped inside the spin loop (r12 == magic).
bool stop_in_loop(Tracee& t) {
  for (int i = 0; i < 200; ++i) {
    if (!t.interrupt()) return false;
    if (t.saved_regs().r12 == kMagic) return true;
    if (!t.resume()) return false;
    std::this_thread::sleep_for(1ms);
  }
  return false;
}

// ---- fixup_syscall_restart ----

TEST(FixupSyscallRestart, AppliesTheKernelRestartRuleTable) {
  struct Case {
    long orig_rax, rax;
    RestartMode mode;
    long want_rax;
    uint64_t want_rip;
    bool changed;
  };
  const uint64_t ip = 0x401002;
  const Case cases[] = {
      {SYS_read, -kERESTARTSYS, RestartMode::in_place, SYS_read, ip - 2, true},
      {SYS_read, -kERESTARTSYS, RestartMode::image, SYS_read, ip - 2, true},
      {SYS_wait4, -kERESTARTNOINTR, RestartMode::image, SYS_wait4, ip - 2, true},
      {SYS_pause, -kERESTARTNOHAND, RestartMode::in_place, SYS_pause, ip - 2, true},
      {SYS_clock_nanosleep, -kERESTART_RESTARTBLOCK, RestartMode::in_place, SYS_restart_syscall, ip - 2, true},
      {SYS_clock_nanosleep, -kERESTART_RESTARTBLOCK, RestartMode::image, -EINTR, ip, true},
      // Completed syscalls, ordinary errors and user-mode stops are left alone.
      {SYS_read, 5, RestartMode::in_place, 5, ip, false},
      {SYS_read, -EINTR, RestartMode::image, -EINTR, ip, false},
      {SYS_read, -EAGAIN, RestartMode::in_place, -EAGAIN, ip, false},
      {-1, -kERESTARTSYS, RestartMode::in_place, -kERESTARTSYS, ip, false},
      {-1, 42, RestartMode::image, 42, ip, false},
  };
  for (const Case& c : cases) {
    Regs r;
    r.orig_rax = static_cast<unsigned long long>(c.orig_rax);
    r.rax = static_cast<unsigned long long>(c.rax);
    r.rip = ip;
    r.rbx = 7;
    bool changed = fixup_syscall_restart(r, c.mode);
    SCOPED_TRACE("orig_rax=" + std::to_string(c.orig_rax) + " rax=" + std::to_string(c.rax) +
                 " mode=" + std::to_string(static_cast<int>(c.mode)));
    EXPECT_EQ(changed, c.changed);
    EXPECT_EQ(static_cast<long>(r.rax), c.want_rax);
    EXPECT_EQ(r.rip, c.want_rip);
    EXPECT_EQ(static_cast<long>(r.orig_rax), -1L);
    EXPECT_EQ(r.rbx, 7u);
  }
}

// ---- single Tracee ----

TEST(Tracee, InterruptCapturesRegistersXStateAndSigmask) {
  Shared* sh = map_shared();
  ASSERT_NE(sh, nullptr);
  Child c;
  spawn_register_child(c, sh);
  ASSERT_EQ(read_line(c.out), "ready");

  auto t = Tracee::seize(c.pid);
  ASSERT_TRUE(t) << t.error().render();
  EXPECT_EQ(t->stop_kind(), StopKind::running);
  ASSERT_TRUE(stop_in_loop(*t));
  EXPECT_EQ(t->stop_kind(), StopKind::event);
  EXPECT_EQ(task_state(c.pid, c.pid), 't');

  const Regs& r = t->saved_regs();
  EXPECT_FALSE(r.in_syscall());  // stopped in user mode
  EXPECT_NE(r.fs_base, 0u);      // glibc TLS
  EXPECT_NE(r.rsp, 0u);
  EXPECT_EQ(t->saved_sigmask(), 1ULL << (SIGUSR2 - 1));

  auto xs = get_xstate(c.pid);
  ASSERT_TRUE(xs) << xs.error().render();
  EXPECT_GE(xs->bytes.size(), 576u);
  EXPECT_EQ(xs->xfeatures() & 3, 3u);  // x87 | SSE
  EXPECT_NE(xs->xstate_bv() & 2, 0u);  // SSE state is live (xmm15 holds the magic)
  // The reported size matches the highest enabled component (CPUID leaf 0xD, sub-leaf i: size
  // in EAX, offset in EBX).
  uint32_t size_end = 576;
  for (int i = 2; i < 64; ++i) {
    if (!(xs->xfeatures() >> i & 1)) continue;
    uint32_t a, b, cx, d;
    asm volatile("cpuid" : "=a"(a), "=b"(b), "=c"(cx), "=d"(d) : "a"(0xd), "c"(i));
    size_end = std::max(size_end, a + b);
  }
  EXPECT_EQ(xs->bytes.size(), size_end);
  uint64_t xmm15 = 0;
  std::memcpy(&xmm15, xs->bytes.data() + 160 + 15 * 16, 8);
  EXPECT_EQ(xmm15, kMagic);

  auto fp = get_fpregs(c.pid);
  ASSERT_TRUE(fp) << fp.error().render();
  uint64_t fx15 = uint64_t(fp->xmm_space[61]) << 32 | fp->xmm_space[60];
  EXPECT_EQ(fx15, kMagic);

  // Round trips write back exactly what was read.
  ASSERT_TRUE(set_xstate(c.pid, *xs));
  auto xs2 = get_xstate(c.pid);
  ASSERT_TRUE(xs2);
  EXPECT_EQ(xs2->bytes, xs->bytes);
  ASSERT_TRUE(set_fpregs(c.pid, *fp));
  ASSERT_TRUE(set_regs(c.pid, r));
  auto r2 = get_regs(c.pid);
  ASSERT_TRUE(r2);
  EXPECT_TRUE(*r2 == r);

  const long before = sh->counter.load();
  ASSERT_TRUE(t->detach());
  EXPECT_TRUE(eventually([&] { return sh->counter.load() > before + 2; }));
  EXPECT_EQ(sh->bad.load(), 0);
  EXPECT_NE(task_state(c.pid, c.pid), 't');
}

namespace sigtest {
volatile sig_atomic_t g_handled = 0;
void on_usr1(int) { g_handled = g_handled + 1; }
}  // namespace sigtest

TEST(Tracee, InterruptDeliversASignalDequeuedBeforeTheStop) {
  Child c;
  spawn(c, [](int out, int) {
    signal(SIGUSR1, sigtest::on_usr1);
    say(out, "ready");
    int seen = 0;
    for (;;) {
      if (sigtest::g_handled != seen) {
        seen = sigtest::g_handled;
        say(out, "H %d", seen);
      }
    }
    return 0;
  });
  ASSERT_EQ(read_line(c.out), "ready");
  auto t = Tracee::seize(c.pid);
  ASSERT_TRUE(t);
  // With the tracer attached the signal parks the thread in a signal-delivery-stop, which
  // interrupt() then sees before its own stop.
  ASSERT_EQ(::kill(c.pid, SIGUSR1), 0);
  ASSERT_TRUE(eventually([&] { return task_state(c.pid, c.pid) == 't'; }));
  auto r = t->interrupt();
  ASSERT_TRUE(r) << r.error().render();
  ASSERT_EQ(t->delivered_signals(), std::vector<int>{SIGUSR1});
  EXPECT_EQ(t->stop_kind(), StopKind::event);
  ASSERT_TRUE(t->detach());
  EXPECT_EQ(read_line(c.out), "H 1");
  EXPECT_EQ(read_line(c.out, 200), "");  // delivered exactly once
}

TEST(Tracee, GroupStoppedProcessIsReportedAndStaysStoppedAfterDetach) {
  Child c;
  spawn(c, [](int out, int) {
    say(out, "ready");
    for (;;) pause();
    return 0;
  });
  ASSERT_EQ(read_line(c.out), "ready");
  ASSERT_EQ(::kill(c.pid, SIGSTOP), 0);
  ASSERT_TRUE(eventually([&] { return task_state(c.pid, c.pid) == 'T'; }));
  {
    auto fp = FrozenProcess::freeze(c.pid);
    ASSERT_TRUE(fp) << fp.error().render();
    EXPECT_EQ(fp->leader().stop_kind(), StopKind::group);
    EXPECT_EQ(fp->leader().group_stop_signal(), SIGSTOP);
    // Injection runs the stopped thread for a moment; the group stop must survive it.
    auto insn = find_syscall_insn(c.pid);
    ASSERT_TRUE(insn);
    auto ps = PtraceSyscall::begin(fp->leader(), *insn);
    ASSERT_TRUE(ps);
    auto pid = ps->syscall(SYS_getpid);
    ASSERT_TRUE(pid);
    EXPECT_EQ(*pid, c.pid);
    ASSERT_TRUE(ps->restore());
    ASSERT_TRUE(fp->thaw());
  }
  // Detaching reinstates the group stop; SIGCONT still works afterwards.
  EXPECT_TRUE(eventually([&] { return task_state(c.pid, c.pid) == 'T'; }));
  std::this_thread::sleep_for(20ms);
  EXPECT_EQ(task_state(c.pid, c.pid), 'T');
  ASSERT_EQ(::kill(c.pid, SIGCONT), 0);
  EXPECT_TRUE(eventually([&] { return task_state(c.pid, c.pid) == 'S'; }));
}

// ---- FrozenProcess ----

namespace spawner {
void* idle(void*) {
  for (;;) pause();
  return nullptr;
}
void* quick(void*) { return nullptr; }
void* breeder(void*) {
  pthread_attr_t a;
  pthread_attr_init(&a);
  pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&a, 64 * 1024);
  for (;;) {
    pthread_t t;
    pthread_create(&t, &a, quick, nullptr);
    usleep(200);
  }
  return nullptr;
}
}  // namespace spawner

TEST(FrozenProcess, CatchesThreadsCreatedWhileFreezing) {
  Child c;
  spawn(c, [](int out, int) {
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&a, 64 * 1024);
    pthread_t t;
    for (int i = 0; i < 3; ++i) pthread_create(&t, &a, spawner::breeder, nullptr);
    say(out, "ready");
    // Keep creating threads: short-lived ones continuously, long-lived ones up to 30.
    for (int i = 0;; ++i) {
      pthread_create(&t, &a, (i % 50 == 0 && i < 1500) ? spawner::idle : spawner::quick, nullptr);
    }
    return 0;
  });
  ASSERT_EQ(read_line(c.out), "ready");
  ASSERT_TRUE(eventually([&] { return task_ids(c.pid).size() >= 10; }));

  int max_rounds = 0;
  for (int iter = 0; iter < 5; ++iter) {
    auto fp = FrozenProcess::freeze(c.pid);
    ASSERT_TRUE(fp) << fp.error().render();
    std::set<pid_t> frozen;
    for (const auto& t : fp->threads()) {
      frozen.insert(t.tid());
      EXPECT_TRUE(t.stopped());
    }
    // Nothing escaped: the kernel's list is exactly our set, and every one is in a tracing stop.
    EXPECT_EQ(task_ids(c.pid), frozen);
    for (pid_t tid : frozen) EXPECT_EQ(task_state(c.pid, tid), 't') << "tid " << tid;
    EXPECT_GE(fp->rounds(), 2);
    EXPECT_GT(fp->freeze_duration().count(), 0);
    max_rounds = std::max(max_rounds, fp->rounds());
    ASSERT_TRUE(fp->thaw());
    EXPECT_FALSE(fp->frozen());
    std::this_thread::sleep_for(10ms);
  }
  // After thawing the process keeps making threads.
  auto before = task_ids(c.pid);
  EXPECT_TRUE(eventually([&] { return task_ids(c.pid) != before; }));
  RecordProperty("max_rounds", max_rounds);
}

TEST(FrozenProcess, ThawPutsBackClobberedRegistersAndSigmask) {
  Shared* sh = map_shared();
  ASSERT_NE(sh, nullptr);
  Child c;
  spawn_register_child(c, sh);
  ASSERT_EQ(read_line(c.out), "ready");

  // Freeze until the stop lands inside the checking loop.
  std::optional<FrozenProcess> fp;
  for (int i = 0; i < 200; ++i) {
    auto f = FrozenProcess::freeze(c.pid);
    ASSERT_TRUE(f) << f.error().render();
    if (f->leader().saved_regs().r12 == kMagic) {
      fp.emplace(std::move(*f));
      break;
    }
    ASSERT_TRUE(f->thaw());
    std::this_thread::sleep_for(1ms);
  }
  ASSERT_TRUE(fp.has_value());

  // A failed dump may leave any register or the mask changed.
  Regs junk = fp->leader().saved_regs();
  junk.r12 = 0;
  junk.rcx = 1;
  ASSERT_TRUE(set_regs(c.pid, junk));
  ASSERT_TRUE(set_sigmask(c.pid, ~0ULL));
  const long before = sh->counter.load();
  ASSERT_TRUE(fp->thaw());
  EXPECT_TRUE(eventually([&] { return sh->counter.load() > before + 3; }));
  EXPECT_EQ(sh->bad.load(), 0);
  EXPECT_EQ(status_hex(c.pid, "SigBlk"), 1ULL << (SIGUSR2 - 1));

  // Control: the same clobbering without the restore is caught by the child.
  auto t = Tracee::seize(c.pid);
  ASSERT_TRUE(t);
  ASSERT_TRUE(stop_in_loop(*t));
  junk = t->saved_regs();
  junk.r12 = 0;
  ASSERT_TRUE(set_regs(c.pid, junk));
  ASSERT_TRUE(t->detach());
  EXPECT_TRUE(eventually([&] { return sh->bad.load() == 1; }));
}

// A dump that fails in the middle of an injection window, with the window never closed (as if
// its owner crashed out of scope): thaw alone must bring the thread back, in either mode.
TEST(FrozenProcess, ThawAfterAnAbandonedInjectionLeavesTheTargetIntact) {
  Shared* sh = map_shared();
  ASSERT_NE(sh, nullptr);
  Child c;
  spawn_register_child(c, sh);
  ASSERT_EQ(read_line(c.out), "ready");
  auto insn = find_syscall_insn(c.pid);
  ASSERT_TRUE(insn) << insn.error().render();

  for (auto mode : {PtraceSyscall::Mode::single_step, PtraceSyscall::Mode::syscall_stops}) {
    std::optional<FrozenProcess> fp;
    for (int i = 0; i < 200 && !fp; ++i) {
      auto f = FrozenProcess::freeze(c.pid);
      ASSERT_TRUE(f) << f.error().render();
      if (f->leader().saved_regs().r12 == kMagic)
        fp.emplace(std::move(*f));
      else
        std::this_thread::sleep_for(1ms);
    }
    ASSERT_TRUE(fp.has_value());
    PtraceSyscall::Options o;
    o.mode = mode;
    o.pin_cpu = false;
    auto ps = PtraceSyscall::begin(fp->leader(), *insn, o);
    ASSERT_TRUE(ps);
    ASSERT_TRUE(ps->syscall(SYS_getpid));
    auto failed = ps->syscall(SYS_close, -1);
    ASSERT_FALSE(failed);
    EXPECT_EQ(failed.error().err, EBADF);
    // Move the window into storage that is never destroyed, so nothing restores it.
    alignas(PtraceSyscall) unsigned char abandoned[sizeof(PtraceSyscall)];
    new (abandoned) PtraceSyscall(std::move(*ps));
    const long before = sh->counter.load();
    auto r = fp->thaw();
    ASSERT_TRUE(r) << r.error().render();
    EXPECT_TRUE(eventually([&] { return sh->counter.load() > before + 3; }));
    EXPECT_EQ(sh->bad.load(), 0);
    EXPECT_EQ(status_hex(c.pid, "SigBlk"), 1ULL << (SIGUSR2 - 1));
  }
}

TEST(FrozenProcess, KillTerminatesAndReapsEveryThread) {
  Child c;
  spawn(c, [](int out, int) {
    pthread_t t;
    for (int i = 0; i < 3; ++i) pthread_create(&t, nullptr, spawner::idle, nullptr);
    say(out, "ready");
    for (;;) pause();
    return 0;
  });
  ASSERT_EQ(read_line(c.out), "ready");
  ASSERT_TRUE(eventually([&] { return task_ids(c.pid).size() == 4; }));
  auto fp = FrozenProcess::freeze(c.pid);
  ASSERT_TRUE(fp) << fp.error().render();
  ASSERT_EQ(fp->threads().size(), 4u);
  auto r = fp->kill();
  ASSERT_TRUE(r) << r.error().render();
  EXPECT_FALSE(fp->frozen());
  // The tracer (also the parent here) reaped everything, leader included.
  EXPECT_EQ(::kill(c.pid, 0), -1);
  EXPECT_EQ(errno, ESRCH);
  c.pid = -1;
}

TEST(FrozenProcess, FreezingAMissingProcessFailsWithNotFound) {
  Child c;
  spawn(c, [](int, int) { return 0; });
  int st;
  ASSERT_EQ(waitpid(c.pid, &st, 0), c.pid);
  const pid_t gone = c.pid;
  c.pid = -1;
  auto fp = FrozenProcess::freeze(gone);
  ASSERT_FALSE(fp);
  EXPECT_EQ(fp.error().code, Errc::not_found);
  EXPECT_NE(fp.error().render().find(std::to_string(gone)), std::string::npos);
}

TEST(FrozenProcess, ExitedLeaderIsReportedUnsupportedAndNothingStaysTraced) {
  Child c;
  spawn(c, [](int out, int) {
    pthread_t t;
    pthread_create(&t, nullptr, spawner::idle, nullptr);
    say(out, "ready");
    syscall(SYS_exit, 0);  // the leader thread alone exits (pthread_exit would unwind into gtest)
    return 0;
  });
  ASSERT_EQ(read_line(c.out), "ready");
  ASSERT_TRUE(eventually([&] { return task_state(c.pid, c.pid) == 'Z'; }));
  auto fp = FrozenProcess::freeze(c.pid);
  ASSERT_FALSE(fp);
  EXPECT_EQ(fp.error().code, Errc::unsupported);
  EXPECT_NE(fp.error().render().find("zombie"), std::string::npos);
  for (pid_t tid : task_ids(c.pid)) {
    if (tid == c.pid) continue;
    EXPECT_EQ(status_hex(tid, "TracerPid"), 0u);  // decimal 0 reads the same in hex
    EXPECT_NE(task_state(c.pid, tid), 't');
  }
}

TEST(Tracee, SeizingATracedThreadFailsWithAHint) {
  Child c;
  spawn(c, [](int out, int) {
    say(out, "ready");
    for (;;) pause();
    return 0;
  });
  ASSERT_EQ(read_line(c.out), "ready");
  auto a = Tracee::seize(c.pid);
  ASSERT_TRUE(a);
  auto b = Tracee::seize(c.pid);
  ASSERT_FALSE(b);
  EXPECT_EQ(b.error().err, EPERM);
  EXPECT_NE(b.error().hint.find("TracerPid"), std::string::npos);
}

}  // namespace
}  // namespace crshim::kernel
