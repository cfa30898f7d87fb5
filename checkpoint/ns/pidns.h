// The pid namespace of a dumped tree when it is external (--external pid[INO]:KEY): recorded as
// CRIU does in pidns-<id>.img, and at restore the existing namespace --inherit-fd gives for KEY.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "checkpoint/base/log.h"
#include "checkpoint/base/result.h"
#include "checkpoint/engine.h"
#include "checkpoint/restore/images.h"

namespace crshim::ns {

std::string pidns_file(uint32_t ns_id);

// At dump, for a tree whose root `root` (pid `vpid` in its own namespace) is not in the dumper's pid
// namespace: with pid[INO]:KEY among `external` for that namespace's inode, writes its pidns image;
// without, a root that is not the namespace's pid 1 is refused (only a whole namespace is made anew).
Status dump_pidns(pid_t root, pid_t vpid, uint32_t ns_id, const std::vector<std::string>& external, int images_dir,
                  Logger& log);

// At restore: crshim's fd of the existing pid namespace the tree goes into (-1 when the image's pid
// namespace is not external), from --inherit-fd with the image's key; an error when none is given.
Result<int> external_pidns_fd(const restorer::ImageSet& set, const RestoreRequest& req, int images_dir, Logger& log);

}  // namespace crshim::ns
