// --link-remap: deleted-but-open files linked back into their directory (link_remap.N) at dump, so the
// restore reopens the same inode through that name and removes it again.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <cstdint>
#include <string>

#include "checkpoint/base/result.h"
#include "checkpoint/files/kinds.h"

namespace crshim::files {

// Links the deleted file open in crshim as `fd` (inode `st`), which task `pid` knew as `path` (a path in
// the task's root), back into that path's directory under a new name link_remap.N, and adds a REG
// entry (mount `mnt_id`, -1 if unknown) for the name; returns its id. The kernel refuses when the inode
// has no links left and is not an O_TMPFILE file never linked before (ENOENT), or the directory is gone
// or on another filesystem: the error says so and the caller may fall back to a ghost file. The link is
// registered with `files`, which removes it if the dump fails. Linking an O_TMPFILE file uses up its
// linkability for good: after a failed dump or a restore, the next dump makes it a ghost.
Result<uint32_t> link_remap(int fd, const struct stat& st, const std::string& path, pid_t pid, int mnt_id,
                            DumpFiles& files);

// The directory part of an absolute or relative path ("." when there is none) and the last component.
std::pair<std::string, std::string> split_path(const std::string& path);

}  // namespace crshim::files
