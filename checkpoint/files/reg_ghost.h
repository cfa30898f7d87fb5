// Deleted regular files used by mappings rather than fds: carried as ghost files or --link-remap links (shared
// per inode with fds).
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <string>

#include "checkpoint/base/result.h"
#include "checkpoint/base/unique_fd.h"
#include "checkpoint/files/kinds.h"

namespace crshim::files {

// A REG entry for file `path` mapped with open flags `flags` (one per path, flags and inode). When the
// file is deleted (st_nlink 0), it is linked back with --link-remap when the kernel allows, else its
// contents go to a ghost image; both read it through `data_path` (the area's /proc/PID/map_files link);
// `what` names the area in errors.
Result<uint32_t> add_mapped_file(const std::string& path, bool deleted, uint32_t flags, const struct stat& st,
                                 const std::string& data_path, const std::string& what, DumpFiles& files);

// Opens the file a mapping's REG entry `fe` names, with open flags `flags` at offset 0: the re-created
// ghost or the --link-remap link when the file was deleted at dump (the same inode the task's fds get),
// else the path, checked.
Result<UniqueFd> open_mapped_file(const file_entry& fe, uint32_t flags, RestoreFiles& files);

}  // namespace crshim::files
