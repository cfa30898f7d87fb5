// Hook sinks: action scripts, RPC notifications and OCI hooks, fanned out in a fixed order.
#pragma once

#include "checkpoint/hook_points.h"
#include "hooks/hook_chain.h"
#include "hooks/rpc_notify.h"
#include "hooks/script_hooks.h"
