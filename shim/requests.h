// Engine requests built from parsed options: one place, shared by the CLI verbs and the RPC server.
#pragma once

#include "checkpoint/engine.h"
#include "shim/options.h"

namespace crshim {

// Options the engine cannot honour yet, for dump and restore: an error listing all of them (the CLI
// never accepts an option it would then ignore).
Status refuse_unsupported(const Options& opts);

DumpRequest dump_request(const Options& opts);
RestoreRequest restore_request(const Options& opts);

}  // namespace crshim
