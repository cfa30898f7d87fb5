// Socket options every socket family carries in sk_opts_entry (SOL_SOCKET level), read from the
// stolen fd; each family adds its own after these.
#pragma once

#include <string>

#include "checkpoint/base/result.h"
#include "sk-opts.pb.h"

namespace crshim::files::sock {

// getsockopt() of one int option; errors name the option and `what`.
Result<int> get_int(int fd, int level, int opt, const char* name, const std::string& what);

// Buffer sizes, timeouts, SO_REUSEADDR, SO_PRIORITY, SO_RCVLOWAT, SO_MARK.
Result<sk_opts_entry> dump_common_opts(int fd, const std::string& what);

}  // namespace crshim::files::sock
