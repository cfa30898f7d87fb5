// Connection tracking entries of a network namespace dumped in full: netns-ct-N.img (conntrack
// entries) and netns-exp-N.img (expectations), each a sequence of the netlink messages a ctnetlink
// dump returns, as CRIU writes them. A restore sends each back as a create request.
#pragma once

#include <cstdint>

#include "checkpoint/base/log.h"
#include "checkpoint/base/result.h"

namespace crshim::net {

// Both run on a thread inside the namespace (rtnl::in_netns). Without ctnetlink in the kernel the
// images are written empty.
Status dump_conntrack(uint32_t ns_id, int images_dir, Logger& log);
// An entry the kernel refuses (one that exists already, an expectation whose helper is not set up)
// is a warning: without it the kernel tracks the connection again from its next packet.
Status restore_conntrack(uint32_t ns_id, int images_dir, Logger& log);

}  // namespace crshim::net
