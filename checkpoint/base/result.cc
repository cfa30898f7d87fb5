#include "checkpoint/base/result.h"

#include <cerrno>
#include <cstring>

namespace crshim {

const char* errc_name(Errc code) {
  switch (code) {
    case Errc::system: return "system";
    case Errc::corrupt_image: return "corrupt-image";
    case Errc::unsupported: return "unsupported";
    case Errc::invalid_argument: return "invalid-argument";
    case Errc::not_found: return "not-found";
    case Errc::incompatible: return "incompatible";
    case Errc::conflict: return "conflict";
    case Errc::aborted: return "aborted";
    case Errc::timeout: return "timeout";
    case Errc::internal: return "internal";
  }
  return "unknown";
}

std::string errno_name(int err) {
  const char* name = strerrorname_np(err);
  return name ? name : "E" + std::to_string(err);
}

std::string Error::render() const {
  std::string out;
  for (const auto& c : context) {
    out += c;
    out += ": ";
  }
  out += op;
  if (!object.empty()) {
    if (!op.empty()) out += ' ';
    out += object;
  }
  if (!message.empty()) {
    out += ": ";
    out += message;
  }
  if (err != 0) {
    out += ": ";
    out += strerrordesc_np(err) ? strerrordesc_np(err) : "unknown error";
    out += " (" + errno_name(err) + ")";
  }
  if (!hint.empty()) {
    out += "; hint: ";
    out += hint;
  }
  return out;
}

Error errno_error(int err, std::string op, std::string object, std::string message) {
  Error e;
  e.code = Errc::system;
  e.err = err;
  e.op = std::move(op);
  e.object = std::move(object);
  e.message = std::move(message);
  // Errors whose cure does not depend on where they happened get it here; callers may override it.
  switch (err) {
    case ENOSPC: e.hint = "free space on that file system, or write the images elsewhere (-D, -W)"; break;
    case EDQUOT: e.hint = "the disk quota is exhausted: raise it, or write the images elsewhere (-D, -W)"; break;
    case EMFILE: e.hint = "raise the open-file limit (ulimit -n) crshim runs with"; break;
    default: break;
  }
  return e;
}

Error sys_error(std::string op, std::string object, std::string message) {
  return errno_error(errno, std::move(op), std::move(object), std::move(message));
}

Error make_error(Errc code, std::string op, std::string object, std::string message) {
  Error e;
  e.code = code;
  e.op = std::move(op);
  e.object = std::move(object);
  e.message = std::move(message);
  return e;
}

}  // namespace crshim
