// IdMap::by_kcmp: tasks sharing a kernel object get one id, others their own, whatever the order of lookups.
#include <linux/kcmp.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "checkpoint/dump/context.h"

namespace crshim::dumper {
namespace {

TEST(IdMap, ByKcmpGivesSharersOneIdAndEveryOtherObjectItsOwn) {
  // 40 forked children (an mm each) and 8 threads of ours (our mm), looked up in a shuffled order
  // and then again: the kcmp-ordered list must find every one of them.
  std::vector<pid_t> children;
  for (int i = 0; i < 40; i++) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      for (;;) pause();
    }
    children.push_back(pid);
  }
  std::vector<pid_t> tids(8, 0);
  std::vector<std::thread> threads;
  std::atomic<int> started{0};
  std::atomic<bool> stop{false};
  for (size_t i = 0; i < tids.size(); i++)
    threads.emplace_back([&, i] {
      tids[i] = gettid();
      started++;
      while (!stop) usleep(1000);
    });
  while (started < int(tids.size())) usleep(1000);

  std::vector<pid_t> all = children;
  all.insert(all.end(), tids.begin(), tids.end());
  all.push_back(getpid());
  std::shuffle(all.begin(), all.end(), std::mt19937(7));
  IdMap ids;
  std::map<pid_t, uint32_t> first;
  for (pid_t p : all) first[p] = ids.by_kcmp(KCMP_VM, p);
  std::shuffle(all.begin(), all.end(), std::mt19937(11));
  for (pid_t p : all) EXPECT_EQ(ids.by_kcmp(KCMP_VM, p), first[p]) << "pid " << p;

  std::set<uint32_t> child_ids;
  for (pid_t c : children) child_ids.insert(first[c]);
  EXPECT_EQ(child_ids.size(), children.size()) << "every child has its own mm";
  for (pid_t t : tids) EXPECT_EQ(first[t], first[getpid()]) << "threads share our mm";
  EXPECT_EQ(child_ids.count(first[getpid()]), 0u);

  stop = true;
  for (auto& t : threads) t.join();
  for (pid_t c : children) {
    kill(c, SIGKILL);
    waitpid(c, nullptr, 0);
  }
}

}  // namespace
}  // namespace crshim::dumper
