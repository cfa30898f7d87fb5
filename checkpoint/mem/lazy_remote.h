// Post-copy migration between hosts (dump --lazy-pages, lazy-pages --page-server): the dump leaves the
// pages of lazy areas in the frozen tasks and serves them from there, while the destination's
// lazy-pages daemon asks for them as the restored tree touches them. CRIU's page-server protocol
// (page_protocol.h): the daemon sends GET {nr_pages, vaddr, pid}; the dump answers ADD {nr_pages,
// vaddr, pid} followed by the pages, or ADD {0, 0, 0} when it does not hold them; CLOSE (answered
// by an int32 0) says every page arrived.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "checkpoint/base/log.h"
#include "checkpoint/base/result.h"
#include "checkpoint/base/unique_fd.h"
#include "checkpoint/mem/pages.h"

namespace crshim::mem {

struct LazySourceStats {
  uint64_t requests = 0;
  uint64_t pages_sent = 0;
};

// The dump side: which pages each dumped process left lazy, and the serving of them.
class LazyPagesSource {
 public:
  // The pages the pagemap of `vpid` marks lazy (sorted, disjoint), read from the frozen task `pid`.
  void add(uint32_t vpid, pid_t pid, std::vector<Range> lazy);
  // `to` maps the address space of `from` (CLONE_VM): its pagemap is the same.
  void share(uint32_t from, uint32_t to);
  uint64_t pages() const;

  // Serves the daemon on `conn` until it says every page arrived. A connection cut before that, a
  // malformed request or a readable `cancel_fd` fails (Errc::aborted: "cancelled").
  Status serve(int conn, const std::string& peer, int cancel_fd, Logger& log, LazySourceStats& stats);

 private:
  struct Task {
    pid_t pid = 0;
    std::vector<Range> lazy;
  };
  std::map<uint32_t, Task> tasks_;
};

// The destination side: the daemon's connection to the dump that holds the pages.
class RemotePages {
 public:
  static Result<std::unique_ptr<RemotePages>> connect(const std::string& address, uint16_t port);
  // `nr_pages` pages of `vpid` from `vaddr` on; the data stays valid until the next call.
  Result<const char*> get(uint32_t vpid, uint64_t vaddr, uint32_t nr_pages);
  // Says every page arrived: the dump ends, and its tree with it.
  Status close();
  uint64_t pages_received() const { return pages_; }

 private:
  RemotePages(UniqueFd sk, std::string peer) : sk_(std::move(sk)), peer_(std::move(peer)) {}
  UniqueFd sk_;
  std::string peer_;
  std::vector<char> buf_;
  uint64_t pages_ = 0;
};

}  // namespace crshim::mem
