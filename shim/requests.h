// Engine requests built from parsed options: one place, shared by the CLI verbs and the RPC server.
#pragma once

#include "checkpoint/engine.h"
#include "shim/options.h"

namespace crshim {

DumpRequest dump_request(const Options& opts);
RestoreRequest restore_request(const Options& opts);

}  // namespace crshim
