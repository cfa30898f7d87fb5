// File handles of watched inodes (inotify): fdinfo's hex form, fh_entry's u64 words, and reopening the
// inode through open_by_handle_at on a mount of its filesystem.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "checkpoint/base/result.h"
#include "checkpoint/base/unique_fd.h"
#include "checkpoint/kernel/proc.h"
#include "fh.pb.h"

namespace crshim::files::anon {

inline constexpr size_t kMaxHandleBytes = 128;  // MAX_HANDLE_SZ
inline constexpr int kHandleWords = 16;          // fh_entry.handle always carries this many words

// The handle bytes of fdinfo's "f_handle:" hex text, which must be `bytes` long.
Result<std::string> handle_from_hex(std::string_view hex, int bytes, const std::string& what);
// fh_entry{bytes, type, handle}: the bytes as 16 native-endian u64 words, zero padded.
fh_entry to_fh_entry(int type, const std::string& handle);
// The handle bytes of an fh_entry (bounded by kMaxHandleBytes and the words present).
Result<std::string> handle_bytes(const fh_entry& fh, const std::string& what);

// Opens (O_PATH) the inode behind handle (`type`, `handle`) on the filesystem with device `sdev` (the
// kernel's major << 20 | minor), trying each mount of it in `mounts`, whose mount points are taken
// under `root` ("/proc/PID/root" for a task's view, "" for crshim's). `mnt_id` gets the mount used.
// The inode must have number `ino`.
Result<UniqueFd> open_by_handle(const std::vector<proc::MountInfo>& mounts, const std::string& root, uint32_t sdev,
                                int type, const std::string& handle, uint64_t ino, int* mnt_id,
                                const std::string& what);

}  // namespace crshim::files::anon
