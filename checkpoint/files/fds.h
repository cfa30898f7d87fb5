// The fd table of a process: the pre-freeze support check and the dump into fdinfo/files entries.
#pragma once

#include <sys/types.h>

#include <vector>

#include "checkpoint/base/result.h"
#include "checkpoint/files/kinds.h"
#include "fdinfo.pb.h"

namespace crshim::files {

// Every fd of `pid` in fd order with its link and stat (crshim's own write-tracking uffd left out);
// fdinfo only when `with_info` (the task must be frozen for positions to mean anything).
Result<std::vector<OpenFd>> list_fds(pid_t pid, bool with_info);

// Checks, before anything is frozen, that every fd of `pid` is of a kind we can dump; the error
// lists every unsupported fd (process, fd number, what it is).
Status check_fds_supported(pid_t pid, bool shell_job);

// Describes every open fd of the frozen process `pid` (whose pid in the image is `vpid`), returning its
// fdinfo entries; the file locks it holds go to filelocks.img, or are an error without --file-locks.
Result<std::vector<fdinfo_entry>> dump_fds(pid_t pid, uint32_t vpid, DumpFiles& files);

}  // namespace crshim::files
