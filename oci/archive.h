// Checkpoint archives in podman's layout: checkpoint/ (the images, descriptors.json), spec.dump (the
// bundle's config.json) and, for an overlay rootfs, its changes: rootfs-diff.tar (what the upper layer
// holds) and deleted.files (a JSON list of the paths its whiteouts hide). Packed and unpacked with tar
// (compression chosen by the file suffix).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "checkpoint/base/log.h"
#include "checkpoint/base/result.h"

namespace crshim::oci {

inline constexpr const char* kRootfsDiffFile = "rootfs-diff.tar";
inline constexpr const char* kDeletedFilesFile = "deleted.files";

// What an overlay's upper directory says changed.
struct RootfsDiff {
  std::vector<std::string> files;    // relative to the upper dir, parents before children
  std::vector<std::string> deleted;  // whiteouts (char 0:0), as podman writes them: "/etc/motd"
  std::vector<std::string> unsupported;  // opaque or redirected directories: "/dir (opaque)"
};

// The upper directory of the overlay mounted exactly at `rootfs` in `mountinfo` (the topmost one),
// "" when that mount is not an overlay. Refuses metacopy overlays: their upper files hold no data.
Result<std::string> overlay_upperdir(std::string_view mountinfo, const std::string& rootfs);
// Walks an overlay upper directory. Sockets are left out (tar cannot carry them).
Result<RootfsDiff> scan_upperdir(const std::string& upper);
// deleted.files (de)serialisation: a JSON array of strings.
std::string deleted_files_json(const std::vector<std::string>& paths);
Result<std::vector<std::string>> parse_deleted_files(std::string_view text);
// Removes `path` ("/a/b" or "a/b") inside `root_fd` (recursively for a directory) without leaving the
// root through symlinks or "..". A path that does not exist is no error.
Status remove_in_root(int root_fd, const std::string& path);

// Packs `images_dir` as checkpoint/ and `bundle`/config.json as spec.dump into `archive`; when
// `rootfs` is an overlay mount, its changes as rootfs-diff.tar and deleted.files too.
Status export_archive(const std::string& archive, const std::string& images_dir, const std::string& bundle,
                      const std::string& rootfs, Logger& log);
// Unpacks `archive` into the existing empty directory `dir`; returns dir/checkpoint, which must exist.
Result<std::string> import_archive(const std::string& archive, const std::string& dir);
// Applies an unpacked archive's rootfs changes (in `dir`) to `rootfs`: extracts rootfs-diff.tar, then
// removes what deleted.files lists, as podman does. Nothing to do when the archive has neither.
Status apply_rootfs_diff(const std::string& dir, const std::string& rootfs, Logger& log);

}  // namespace crshim::oci
