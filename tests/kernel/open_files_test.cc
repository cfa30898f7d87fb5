// OpenFiles: fds that share one open file description are found, separate opens are not.
#include "checkpoint/files/open_files.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <vector>

namespace crshim::files {
namespace {

TEST(OpenFiles, FindsDupsAndTellsSeparateOpensApart) {
  OpenFiles seen;
  std::vector<int> fds;
  for (int i = 0; i < 300; i++) {
    int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    fds.push_back(fd);
    EXPECT_EQ(seen.find(getpid(), fd), 0u) << "a fresh open is a new file";
    seen.add(getpid(), fd, uint32_t(i + 1));
  }
  for (int i = 0; i < 300; i++) {
    int copy = ::fcntl(fds[size_t(i)], F_DUPFD_CLOEXEC, 0);
    ASSERT_GE(copy, 0);
    EXPECT_EQ(seen.find(getpid(), copy), uint32_t(i + 1)) << "a dup shares its file";
    seen.add(getpid(), copy, 9999);  // already known: keeps the first id
    EXPECT_EQ(seen.find(getpid(), copy), uint32_t(i + 1));
    ::close(copy);
  }
  for (int fd : fds) ::close(fd);
}

}  // namespace
}  // namespace crshim::files
