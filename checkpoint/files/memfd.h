// Memfds reached through a mapping rather than an fd: the MEMFD file entry a memfd-backed VMA refers to.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "checkpoint/base/result.h"
#include "checkpoint/files/kinds.h"

namespace crshim::files {

// True for a mapping /proc shows as a memfd ("/memfd:NAME (deleted)").
inline bool is_memfd_path(const std::string& path) { return path.rfind("/memfd:", 0) == 0; }

// A MEMFD file entry for the memfd mapped at `map_file` (/proc/PID/map_files/<start>-<end>), opened
// with `flags` (O_RDONLY or O_RDWR). The inode goes to memfd.img once, whether it is reached through a
// mapping or an fd; one entry per inode and flags. `what` names the area in errors.
Result<uint32_t> add_mapped_memfd(const std::string& map_file, const std::string& path, uint32_t flags,
                                  const std::string& what, DumpFiles& files);

}  // namespace crshim::files
