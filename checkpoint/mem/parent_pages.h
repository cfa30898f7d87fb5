// Restore side of incremental dumps: pages a pagemap entry marks PE_PARENT live in the images of the
// dump before (the "parent" link of the images dir), or further up that chain.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <sys/types.h>

#include <utility>

#include "checkpoint/base/progress.h"
#include "checkpoint/base/result.h"
#include "checkpoint/base/unique_fd.h"

namespace crshim::mem {

class ParentChain {
 public:
  explicit ParentChain(int images_dir) : images_dir_(images_dir) {}

  // Where the pages of [vaddr, vaddr + nr_pages pages) of process `vpid` are: runs of the pages image
  // of some ancestor. A page no ancestor holds makes the image set corrupt.
  struct Run {
    int dir;                // images dir of that ancestor (owned by the chain)
    std::string pages;      // its pages image
    uint64_t vaddr, nr_pages;
    uint64_t page_offset;   // in that pages image, in pages
  };
  Result<std::vector<Run>> resolve(uint32_t vpid, uint64_t vaddr, uint64_t nr_pages);

 private:
  struct Entry {
    uint64_t start, end;  // addresses
    bool present;         // else: in the next parent
    uint64_t page_offset;
  };
  struct Level {
    UniqueFd dir;
    std::map<uint32_t, std::pair<std::string, std::vector<Entry>>> pagemaps;  // vpid -> pages image, entries
  };
  Result<Level*> level(size_t depth);
  Result<const std::pair<std::string, std::vector<Entry>>*> pagemap(size_t depth, uint32_t vpid);
  Status resolve_at(size_t depth, uint32_t vpid, uint64_t start, uint64_t end, std::vector<Run>& out);

  int images_dir_;
  std::vector<std::unique_ptr<Level>> levels_;  // [0] = the parent of images_dir_
};

// Writes the pieces {vaddr, nr_pages} of process `vpid` that an incremental dump left to its parent
// images into `pid` (`mem_fd`: its /proc/PID/mem, for pages the mapping refuses), from whichever
// ancestor holds them, each pages image read once in order. Returns the pages written; each run is
// also reported to `progress`.
Result<uint64_t> restore_from_parents(pid_t pid, int mem_fd, int images_dir, uint32_t vpid,
                                      const std::vector<std::pair<uint64_t, uint64_t>>& pieces, ProgressSink* progress);

}  // namespace crshim::mem
