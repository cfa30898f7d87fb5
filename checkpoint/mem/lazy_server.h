// The lazy-pages daemon: takes the userfaultfds a lazy restore hands over, serves the restored tasks'
// page faults from the images (or from the lazy dump on the source that holds them) and pushes every
// other page in the background until all are in place.
#pragma once

#include <chrono>
#include <cstdint>

#include "checkpoint/base/log.h"
#include "checkpoint/base/result.h"
#include "checkpoint/base/unique_fd.h"
#include "checkpoint/mem/lazy_remote.h"

namespace crshim::mem {

struct LazyServerOptions {
  int images_dir = -1;
  int work_dir = -1;  // holds lazy-pages.socket
  std::chrono::milliseconds connect_timeout{10000};  // for the restore to connect
  std::chrono::milliseconds push_pause{0};           // between background batches (0: as fast as possible)
  uint64_t push_batch_pages = 256;                   // pages per background UFFDIO_COPY
  uint64_t fault_pages = 16;                         // pages copied per fault (the faulting one and the next ones)
  RemotePages* remote = nullptr;  // lazy-only pages (PE_LAZY) come from the dump that holds them (post-copy)
};

struct LazyServerStats {
  uint64_t tasks = 0;        // address spaces handed over by the restore
  uint64_t forks = 0;        // address spaces of tasks forked after the restore
  uint64_t total_pages = 0;  // lazy pages of the handed-over address spaces
  uint64_t faults = 0;       // page faults served from the images
  uint64_t fault_pages = 0;  // pages copied to serve them
  uint64_t pushed_pages = 0; // pages copied in the background
  uint64_t zero_pages = 0;   // faults on pages the images do not hold
  uint64_t dropped_pages = 0;  // pending pages whose task exited or unmapped them first
  uint64_t remote_pages = 0;   // pages fetched from the lazy dump (refetched ones counted again)
  uint64_t reused_pages = 0;   // pages a forked relative had fetched already
};

// Creates lazy-pages.socket in the work dir (an old one is replaced) and listens on it.
Result<UniqueFd> lazy_listen(int work_dir);

// Serves one restore on `listener` until every page is delivered or every task exited after the
// restore said it completed. Fails when no restore connects in time, the restore ends without
// completing, or the images cannot serve a task (the restore is told and fails).
Result<LazyServerStats> serve_lazy_pages(UniqueFd listener, const LazyServerOptions& opts, Logger& log);

}  // namespace crshim::mem
