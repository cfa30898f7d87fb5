// The dump-wide table of open-file objects (files.img): ids from 1, one entry per distinct object.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <cstdint>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "checkpoint/base/result.h"
#include "checkpoint/files/open_files.h"
#include "fdinfo.pb.h"

namespace crshim::files {

class FileTable {
 public:
  // A path-named file (regular file, directory, device node) opened with `flags` at `pos`.
  // Objects used only by name (cwd, root, exe, mappings) share one entry per (path, flags).
  uint32_t add_reg(const std::string& path, uint32_t flags, uint64_t pos, const struct stat& st, int mnt_id,
                   bool shareable);
  // The open file behind fd `fd` of `pid`: fds that share one struct file (dup, fork) get one id,
  // found with kcmp among the files with the same inode.
  uint32_t add_open_reg(pid_t pid, int fd, const std::string& path, uint32_t flags, uint64_t pos,
                        const struct stat& st, int mnt_id);
  // Marks REG entry `id` as external: its name is the --external key, and nothing else about it holds.
  void mark_external(uint32_t id);
  // Adds an arbitrary entry; `entry.id` is assigned here and returned.
  uint32_t add(file_entry entry);

  const std::vector<file_entry>& entries() const { return entries_; }
  Status write(int images_dir) const;

 private:
  std::vector<file_entry> entries_;
  std::map<std::tuple<std::string, uint32_t, uint64_t, uint64_t>, uint32_t> shared_;  // (path, flags, dev, ino)
  std::map<std::pair<uint64_t, uint64_t>, OpenFiles> open_;  // (dev, ino) -> open files seen
};

// Reads files.img into a map by id, checking that every payload's id matches its entry.
Result<std::map<uint32_t, file_entry>> read_file_table(int images_dir);

}  // namespace crshim::files
