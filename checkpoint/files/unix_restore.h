// Restore of unix sockets: every unix socket of the image is rebuilt at once (pairs, names, listeners,
// accepted connections, queued data, shutdown state, options), then handed out one by one.
#pragma once

#include "checkpoint/base/result.h"
#include "checkpoint/base/unique_fd.h"
#include "checkpoint/files/kinds.h"

namespace crshim::files::unixsk {

// crshim's fd for the socket of `fe` (type UNIXSK); the first call builds all of them.
Result<UniqueFd> open_socket(const file_entry& fe, RestoreFiles& files);

// Binds `fd` to `name` (sun_path bytes: a path, or an abstract name starting with NUL), relative to
// `dir` when the path is relative and dir is not empty; paths are looked up inside the restored root
// of `files` when it has one. A stale socket file left at the path by a closed socket is removed first
// unless `replace_stale` is false; a path held by a live socket or by another kind of file is an error.
Status bind_name(const RestoreFiles& files, int fd, const std::string& name, const std::string& dir,
                 bool replace_stale = true);

}  // namespace crshim::files::unixsk
