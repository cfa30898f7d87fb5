// The logger: CRIU's text lines by default, one JSON object per line with --log-format json.
#include "checkpoint/base/log.h"

#include <sys/mman.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <sstream>
#include <string>

namespace crshim {
namespace {

// Everything written to a fresh in-memory file by `fn(log)`.
template <class Fn>
std::string captured(bool json, Fn fn) {
  int fd = ::memfd_create("log", MFD_CLOEXEC);
  EXPECT_GE(fd, 0);
  int reader = ::dup(fd);
  {
    Logger log(4);
    log.set_json(json);
    log.set_fd(UniqueFd(fd));
    fn(log);
  }
  std::string out(65536, '\0');
  ssize_t n = ::pread(reader, out.data(), out.size(), 0);
  ::close(reader);
  out.resize(n > 0 ? size_t(n) : 0);
  return out;
}

TEST(Logger, TextLinesLookLikeCrius) {
  std::string out = captured(false, [](Logger& log) { LOG_ERROR(log, "dump pid %d failed", 42); });
  EXPECT_NE(out.find(") Error (tests/unit/log_test.cc:"), std::string::npos) << out;
  EXPECT_NE(out.find("): dump pid 42 failed\n"), std::string::npos) << out;
  EXPECT_EQ(out.front(), '(');
}

TEST(Logger, JsonLinesParseWithEveryField) {
  std::string out = captured(true, [](Logger& log) {
    LOG_ERROR(log, "open \"%s\": no such file\n", "a\\b\tc");
    LOG_INFO(log, "second line");
    log.set_level(2);
    LOG_INFO(log, "not logged at -v2");
  });
  std::istringstream lines(out);
  std::string line;
  ASSERT_TRUE(std::getline(lines, line));
  auto first = nlohmann::json::parse(line);
  EXPECT_EQ(first["level"], "error");
  EXPECT_EQ(first["msg"], "open \"a\\b\tc\": no such file");
  EXPECT_EQ(first["file"], "tests/unit/log_test.cc");
  EXPECT_GT(first["line"].get<int>(), 0);
  EXPECT_EQ(first["pid"].get<int>(), int(getpid()));
  EXPECT_GE(first["time"].get<double>(), 0.0);
  ASSERT_TRUE(std::getline(lines, line));
  auto second = nlohmann::json::parse(line);
  EXPECT_EQ(second["level"], "info");
  EXPECT_EQ(second["msg"], "second line");
  EXPECT_FALSE(std::getline(lines, line)) << "a line below the level was written: " << line;
}

}  // namespace
}  // namespace crshim
