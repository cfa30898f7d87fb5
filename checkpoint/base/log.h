// CRIU-style log: levels -v0..-v4 and lines "(sec.usec) pid: Error (file:line): message", so tools
// that grep CRIU logs keep working. One Logger per job; nothing global.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <mutex>
#include <string>

#include "checkpoint/base/result.h"
#include "checkpoint/base/unique_fd.h"

namespace crshim {

enum class LogLevel { msg = 0, error = 1, warn = 2, info = 3, debug = 4 };

class Logger {
 public:
  // Logs to stderr at `level` until open_file() is called.
  explicit Logger(int level = 2);
  Logger(const Logger&) = delete;
  Logger& operator=(const Logger&) = delete;

  // Sends the log to `path` (relative to dirfd); "-" keeps stderr.
  Status open_file(int dirfd, const std::string& path);
  // Sends the log to an already open fd (takes ownership).
  void set_fd(UniqueFd fd);
  void set_level(int level) { level_ = level; }
  // --log-format json: one JSON object per line ({"time","pid","level","file","line","msg"}) for log
  // collectors, instead of CRIU's text lines.
  void set_json(bool on) { json_ = on; }
  int level() const { return level_; }
  // Mirror errors (level <= error) to stderr as well, for a log that goes to a file.
  void set_echo_errors(bool on) { echo_errors_ = on; }

  void log(LogLevel lvl, const char* file, int line, const char* fmt, ...)
      __attribute__((format(printf, 5, 6)));
  void log_error(const char* file, int line, const Error& e);

  // The first error line written, without the prefix (RPC cr_errmsg).
  std::string first_error() const;
  // Where the log goes, for "see LOG for details" hints.
  const std::string& path() const { return path_; }

 private:
  int level_;
  bool echo_errors_ = false;
  bool json_ = false;
  UniqueFd fd_;
  std::string path_ = "-";
  std::string first_error_;
  std::chrono::steady_clock::time_point start_;
  pid_t main_pid_;
  mutable std::mutex mu_;
};

}  // namespace crshim

#define LOG_MSG(lg, ...) (lg).log(::crshim::LogLevel::msg, __FILE__, __LINE__, __VA_ARGS__)
#define LOG_ERROR(lg, ...) (lg).log(::crshim::LogLevel::error, __FILE__, __LINE__, __VA_ARGS__)
#define LOG_WARN(lg, ...) (lg).log(::crshim::LogLevel::warn, __FILE__, __LINE__, __VA_ARGS__)
#define LOG_INFO(lg, ...) (lg).log(::crshim::LogLevel::info, __FILE__, __LINE__, __VA_ARGS__)
#define LOG_DEBUG(lg, ...)                                                              \
  do {                                                                                  \
    if ((lg).level() >= 4) (lg).log(::crshim::LogLevel::debug, __FILE__, __LINE__, __VA_ARGS__); \
  } while (0)
