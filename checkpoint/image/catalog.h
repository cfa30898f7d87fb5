// The table of image kinds: magic <-> crit name <-> message types, and CRIU's file names.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "checkpoint/image/image.h"

namespace crshim::image {

// Kinds the engine reads and writes by name. The values index the catalog.
enum class Type {
  inventory, pstree, core, ids, mm, pagemap, fs, fdinfo, files, pipes_data, fifo_data, tty_info, tty_data,
  sk_queues, tcp_stream, remap_fpath, ghost_file, memfd_inode, file_locks, seccomp, cgroup, mnts, utsns,
  ipc_var, ipcns_shm, ipcns_msg, ipcns_sem, netns, netdev, timens, userns, pidns, stats,
};

const Kind& kind(Type type);
// The kind with this image magic (second header word; INVENTORY's single word), or null.
const Kind* find_kind(uint32_t magic);

// CRIU's file names.
std::string core_file(uint32_t vtid);
std::string ids_file(uint32_t vpid);
std::string mm_file(uint32_t vpid);
std::string pagemap_file(uint32_t vpid);
std::string pages_file(uint32_t pages_id);
std::string pagemap_shmem_file(uint64_t shmid);
std::string fs_file(uint32_t vpid);
std::string fdinfo_file(uint32_t files_id);
std::string ghost_file(uint32_t ghost_id);  // a deleted file's contents: ghost-file-<hex id>.img
inline constexpr const char* kInventoryFile = "inventory.img";
inline constexpr const char* kPstreeFile = "pstree.img";
inline constexpr const char* kFilesFile = "files.img";
inline constexpr const char* kMemfdFile = "memfd.img";
inline constexpr const char* kPipesDataFile = "pipes-data.img";
inline constexpr const char* kSeccompFile = "seccomp.img";
inline constexpr const char* kRemapFpathFile = "remap-fpath.img";
inline constexpr const char* kFileLocksFile = "filelocks.img";
inline constexpr const char* kStatsDumpFile = "stats-dump";
inline constexpr const char* kStatsRestoreFile = "stats-restore";

// True for files that carry no magic (pages-N.img, tar payloads, raw net dumps): not decodable.
bool is_raw_file(std::string_view filename);

}  // namespace crshim::image
