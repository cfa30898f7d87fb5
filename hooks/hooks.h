// Hook sinks: action scripts, RPC notifications and OCI hooks, fanned out in a fixed order.
#pragma once

#include "checkpoint/hook_points.h"
