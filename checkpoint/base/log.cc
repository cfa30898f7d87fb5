#include "checkpoint/base/log.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdarg>
#include <cstdio>
#include <cstring>

#include "checkpoint/base/sys.h"

namespace crshim {

Logger::Logger(int level) : level_(level), start_(std::chrono::steady_clock::now()), main_pid_(getpid()) {}

Status Logger::open_file(int dirfd, const std::string& path) {
  if (path == "-") return {};
  auto fd = CR_TRY(sys::open_at(dirfd, path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0600));
  std::lock_guard lock(mu_);
  fd_ = std::move(fd);
  path_ = path;
  return {};
}

void Logger::set_fd(UniqueFd fd) {
  std::lock_guard lock(mu_);
  fd_ = std::move(fd);
}

// Source paths are logged relative to the project root, like CRIU's "criu/foo.c".
static const char* short_path(const char* file) {
  for (const char* root : {"/checkpoint/", "/shim/", "/hooks/", "/oci/", "/tests/"}) {
    if (const char* p = strstr(file, root)) return p + 1;
  }
  return file;
}

// `text` as a JSON string literal (quotes, backslashes and control characters escaped).
static std::string json_string(std::string_view text) {
  std::string out = "\"";
  for (unsigned char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += char(c);
    } else if (c < 0x20) {
      char esc[8];
      snprintf(esc, sizeof esc, "\\u%04x", c);
      out += esc;
    } else {
      out += char(c);
    }
  }
  return out + "\"";
}

static const char* level_name(LogLevel lvl) {
  switch (lvl) {
    case LogLevel::msg: return "msg";
    case LogLevel::error: return "error";
    case LogLevel::warn: return "warn";
    case LogLevel::info: return "info";
    case LogLevel::debug: return "debug";
  }
  return "?";
}

void Logger::log(LogLevel lvl, const char* file, int line, const char* fmt, ...) {
  if (int(lvl) > level_ && lvl != LogLevel::msg) return;
  char body[4096];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(body, sizeof body, fmt, ap);
  va_end(ap);
  std::string_view text = body;
  while (!text.empty() && text.back() == '\n') text.remove_suffix(1);

  auto us = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start_).count();
  pid_t pid = getpid();
  std::string out;
  if (json_) {
    char head[96];
    snprintf(head, sizeof head, "{\"time\":%lld.%06lld,\"pid\":%d,\"level\":\"%s\",\"file\":", (long long)(us / 1000000),
             (long long)(us % 1000000), int(pid), level_name(lvl));
    out = head + json_string(short_path(file)) + ",\"line\":" + std::to_string(line) + ",\"msg\":" + json_string(text) + "}";
  } else {
    char prefix[160];
    int n = snprintf(prefix, sizeof prefix, "(%02lld.%06lld) ", (long long)(us / 1000000), (long long)(us % 1000000));
    if (pid != main_pid_) n += snprintf(prefix + n, sizeof prefix - size_t(n), "%d: ", pid);
    if (lvl == LogLevel::error)
      n += snprintf(prefix + n, sizeof prefix - size_t(n), "Error (%s:%d): ", short_path(file), line);
    else if (lvl == LogLevel::warn)
      n += snprintf(prefix + n, sizeof prefix - size_t(n), "Warn  (%s:%d): ", short_path(file), line);
    out = prefix;
    out += text;
  }
  out += '\n';

  std::lock_guard lock(mu_);
  if (lvl == LogLevel::error && first_error_.empty()) first_error_ = text;
  int fd = fd_.valid() ? fd_.get() : STDERR_FILENO;
  (void)sys::write_all(fd, out, "log");
  if (fd_.valid() && echo_errors_ && lvl == LogLevel::error) (void)sys::write_all(STDERR_FILENO, out, "stderr");
}

void Logger::log_error(const char* file, int line, const Error& e) { log(LogLevel::error, file, line, "%s", e.render().c_str()); }

std::string Logger::first_error() const {
  std::lock_guard lock(mu_);
  return first_error_;
}

}  // namespace crshim
