// Remote syscalls with a scratch area in the target for their in-memory arguments.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "checkpoint/base/result.h"
#include "checkpoint/kernel/remote_syscall.h"

namespace crshim::kernel {

class Remote {
 public:
  Remote(RemoteSyscall& rs, pid_t pid, uint64_t scratch, uint64_t size)
      : rs_(rs), pid_(pid), scratch_(scratch), size_(size) {}

  Result<long> call(long nr, long a1 = 0, long a2 = 0, long a3 = 0, long a4 = 0, long a5 = 0, long a6 = 0) {
    return rs_.syscall(nr, a1, a2, a3, a4, a5, a6);
  }
  // Copies `data` into the scratch area and returns its address in the target. Each call reuses
  // the area from the start unless `append` is set (several arguments of one call).
  Result<uint64_t> put(const void* data, size_t size, bool append = false);
  Result<uint64_t> put_string(const std::string& s, bool append = false) { return put(s.c_str(), s.size() + 1, append); }
  // Reads back `size` bytes the last call left at `addr` (an out-argument in the scratch area).
  Status get(uint64_t addr, void* out, size_t size);

  pid_t pid() const { return pid_; }
  RemoteSyscall& syscalls() { return rs_; }

 private:
  RemoteSyscall& rs_;
  pid_t pid_;
  uint64_t scratch_, size_;
  size_t used_ = 0;
};

}  // namespace crshim::kernel
