// What an incremental dump knows of the dump before it (--prev-images-dir): the parent images and
// which write-tracking userfaultfd each process had then.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "checkpoint/base/result.h"
#include "checkpoint/base/unique_fd.h"
#include "checkpoint/mem/pages.h"

namespace crshim::dumper {

// The file, next to the images, that names each process's tracking userfaultfd by inode: a later dump
// trusts the written-page bits only if the same arming is still in place.
inline constexpr const char* kTrackingRecord = "crshim-tracking.txt";

class ParentImages {
 public:
  // Links `parent_img` (relative to the images dir, as CRIU takes it) as "parent" in the images dir,
  // opens it and reads its tracking record.
  static Result<ParentImages> link(int images_dir, const std::string& parent_img);

  // The tracking inode process `vpid` had at the parent dump, 0 when none.
  uint64_t tracking(uint32_t vpid) const;
  // The pages the parent images hold for `vpid`, in themselves or through their own parent.
  Result<std::vector<mem::Range>> covered(uint32_t vpid) const;

 private:
  Result<std::vector<mem::Range>> covered_by_record(uint32_t vpid) const;
  UniqueFd dir_;
  std::map<uint32_t, uint64_t> tracking_;
};

// Writes the tracking record (vpid -> userfaultfd inode) of this dump.
Status write_tracking_record(int images_dir, const std::map<uint32_t, uint64_t>& tracking);

// A dump to a page server keeps its pagemaps there; this record, next to its other images, says
// which pages each process's pagemap covers, for covered() in the next incremental dump.
inline constexpr const char* kCoverageRecord = "crshim-pages-covered.txt";
Status write_coverage_record(int images_dir, const std::map<uint64_t, std::vector<mem::Range>>& coverage);

}  // namespace crshim::dumper
