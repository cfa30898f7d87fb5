// Hook points fired by the engine; sinks (action scripts, RPC notify, OCI hooks) implement Hooks.
#pragma once

#include <sys/types.h>

#include <string>

#include "checkpoint/base/result.h"

namespace crshim {

// Every action name CRIU defines, in the order they can fire.
enum class HookPoint {
  pre_dump,
  network_lock,
  query_ext_files,
  post_dump,
  pre_restore,
  setup_namespaces,
  post_setup_namespaces,
  orphan_pts_master,
  post_restore,
  network_unlock,
  pre_resume,
  post_resume,
  status_ready,
};

const char* hook_name(HookPoint point);

}  // namespace crshim
