// Checkpoint archives in podman's layout: checkpoint/ (the images, descriptors.json) and spec.dump
// (the bundle's config.json), packed and unpacked with tar (compression chosen by the file suffix).
#pragma once

#include <string>

#include "checkpoint/base/result.h"

namespace crshim::oci {

// Packs `images_dir` as checkpoint/ and `bundle`/config.json as spec.dump into `archive`.
Status export_archive(const std::string& archive, const std::string& images_dir, const std::string& bundle);
// Unpacks `archive` into the existing empty directory `dir`; returns dir/checkpoint, which must exist.
Result<std::string> import_archive(const std::string& archive, const std::string& dir);

}  // namespace crshim::oci
