// Errors as values: Error carries errno, a stable code, the operation, the object, a context chain
// and a hint; Result<T> is tl::expected<T, Error>.
#pragma once

#include <cerrno>
#include <string>
#include <utility>
#include <vector>

#include <tl/expected.hpp>

namespace crshim {

// Stable error codes: they end up in logs and in RPC cr_errmsg, so never renumber.
enum class Errc {
  system = 1,        // a syscall failed; errno says why
  corrupt_image,     // an image is truncated, oversized or inconsistent
  unsupported,       // a kernel object or option we do not handle
  invalid_argument,  // bad option or request
  not_found,         // a referenced object does not exist
  incompatible,      // image made on a CPU/kernel we cannot restore onto
  conflict,          // e.g. a PID already taken by a live task
  aborted,           // a hook or script asked to stop
  timeout,
  internal,
};

const char* errc_name(Errc code);

struct Error {
  Errc code = Errc::internal;
  int err = 0;                       // errno, 0 when not a system error
  std::string op;                    // what we were doing: "open", "ptrace(PTRACE_SEIZE)"
  std::string object;                // on what: "/proc/42/maps", "pid 42", "core-42.img"
  std::string message;               // details, optional
  std::string hint;                  // what the user can do about it, optional
  std::vector<std::string> context;  // outermost first: "dump pid 42", "memory"

  // One line for the user: "context: op object: message: strerror (ENAME); hint".
  std::string render() const;

  // Adds an outer context level; returns *this to allow chaining.
  Error& within(std::string what) {
    context.insert(context.begin(), std::move(what));
    return *this;
  }
  Error& with_hint(std::string h) {
    hint = std::move(h);
    return *this;
  }
};

template <class T>
using Result = tl::expected<T, Error>;
using Status = tl::expected<void, Error>;

inline tl::unexpected<Error> fail(Error e) { return tl::unexpected<Error>(std::move(e)); }

// An Error for a failed syscall, capturing errno now.
Error sys_error(std::string op, std::string object = {}, std::string message = {});
// An Error for a failed syscall with an explicit errno.
Error errno_error(int err, std::string op, std::string object = {}, std::string message = {});
Error make_error(Errc code, std::string op, std::string object, std::string message = {});

// Symbolic name of an errno value ("ENOENT"), or "E<n>".
std::string errno_name(int err);

}  // namespace crshim

// Propagate failures. CR_TRY yields the value of a Result<T>; CR_OK checks any Result.
#define CR_TRY(expr)                                                       \
  ({                                                                       \
    auto cr_try_result_ = (expr);                                          \
    if (!cr_try_result_) return ::crshim::fail(std::move(cr_try_result_.error())); \
    std::move(*cr_try_result_);                                            \
  })

#define CR_OK(expr)                                                        \
  do {                                                                     \
    auto cr_ok_result_ = (expr);                                           \
    if (!cr_ok_result_) return ::crshim::fail(std::move(cr_ok_result_.error())); \
  } while (0)

// Like CR_OK, adding an outer context level on failure.
#define CR_OK_IN(expr, what)                                               \
  do {                                                                     \
    auto cr_ok_result_ = (expr);                                           \
    if (!cr_ok_result_) {                                                  \
      cr_ok_result_.error().within(what);                                  \
      return ::crshim::fail(std::move(cr_ok_result_.error()));             \
    }                                                                      \
  } while (0)
