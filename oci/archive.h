// Checkpoint archives in podman's layout: checkpoint/ (the images, descriptors.json), spec.dump (the
// bundle's config.json) and, for an overlay rootfs, its changes: rootfs-diff.tar (what the upper layer
// holds) and deleted.files (a JSON list of the paths its whiteouts hide). Packed and unpacked with tar
// (compression chosen by the file suffix). When the bundle names the image its rootfs came from (see
// kExportImageAnnotations), config.dump too: the container record `podman container restore --import`
// recreates the container from, on that image in podman's storage.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "checkpoint/base/log.h"
#include "checkpoint/base/result.h"

namespace crshim::oci {

inline constexpr const char* kRootfsDiffFile = "rootfs-diff.tar";
inline constexpr const char* kDeletedFilesFile = "deleted.files";
inline constexpr const char* kPodmanConfigFile = "config.dump";

// Bundle annotations config.dump is made from. The image name, first found of these (crshim's own,
// then the ones CRI-O and containerd's CRI put in their bundles); without one no config.dump is written.
inline constexpr const char* kExportImageAnnotations[] = {"io.crshim.export.image", "io.kubernetes.cri-o.ImageName",
                                                          "io.kubernetes.cri.image-name"};
// The image's ID in podman's storage; default: the image name, which podman's storage resolves too.
inline constexpr const char* kExportImageIdAnnotation = "io.crshim.export.image-id";
// The container's name for podman; default: the bundle directory's name (or crshim-<id prefix> when
// that is no valid podman name). `podman container restore --import --name` overrides it.
inline constexpr const char* kExportNameAnnotation = "io.crshim.export.name";
// The OCI runtime podman restores with (podman refuses a --runtime other than this); default: runc.
inline constexpr const char* kExportRuntimeAnnotation = "io.crshim.export.runtime";

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

// podman's config.dump for the bundle config `spec_json` (config.json's text) of the bundle directory
// `bundle`, the container getting the ID `id` (64 hex digits); "" when the bundle names no image.
Result<std::string> podman_config_dump(std::string_view spec_json, const std::string& bundle, const std::string& id);

// Packs `images_dir` as checkpoint/ and `bundle`/config.json as spec.dump into `archive`; when
// `rootfs` is an overlay mount, its changes as rootfs-diff.tar and deleted.files too; config.dump when
// the bundle names its image.
Status export_archive(const std::string& archive, const std::string& images_dir, const std::string& bundle,
                      const std::string& rootfs, Logger& log);
// Unpacks `archive` into the existing empty directory `dir`; returns dir/checkpoint, which must exist.
Result<std::string> import_archive(const std::string& archive, const std::string& dir);
// Applies an unpacked archive's rootfs changes (in `dir`) to `rootfs`: extracts rootfs-diff.tar, then
// removes what deleted.files lists, as podman does. Nothing to do when the archive has neither.
Status apply_rootfs_diff(const std::string& dir, const std::string& rootfs, Logger& log);

}  // namespace crshim::oci
