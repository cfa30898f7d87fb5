#include "checkpoint/kernel/remote.h"

namespace crshim::kernel {

Result<uint64_t> Remote::put(const void* data, size_t size, bool append) {
  if (!append) used_ = 0;
  size_t at = (used_ + 15) & ~size_t(15);
  if (at + size > size_)
    return fail(make_error(Errc::internal, "remote arguments", "pid " + std::to_string(pid_), "scratch area too small"));
  CR_OK(write_mem(pid_, scratch_ + at, std::span<const uint8_t>(static_cast<const uint8_t*>(data), size)));
  used_ = at + size;
  return scratch_ + at;
}

Status Remote::get(uint64_t addr, void* out, size_t size) {
  return read_mem(pid_, addr, std::span<uint8_t>(static_cast<uint8_t*>(out), size));
}

}  // namespace crshim::kernel
