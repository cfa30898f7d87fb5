#include "checkpoint/hook_points.h"

namespace crshim {

const char* hook_name(HookPoint point) {
  switch (point) {
    case HookPoint::pre_dump: return "pre-dump";
    case HookPoint::network_lock: return "network-lock";
    case HookPoint::query_ext_files: return "query-ext-files";
    case HookPoint::post_dump: return "post-dump";
    case HookPoint::pre_restore: return "pre-restore";
    case HookPoint::setup_namespaces: return "setup-namespaces";
    case HookPoint::post_setup_namespaces: return "post-setup-namespaces";
    case HookPoint::orphan_pts_master: return "orphan-pts-master";
    case HookPoint::post_restore: return "post-restore";
    case HookPoint::network_unlock: return "network-unlock";
    case HookPoint::pre_resume: return "pre-resume";
    case HookPoint::post_resume: return "post-resume";
    case HookPoint::status_ready: return "status-ready";
  }
  return "unknown";
}

}  // namespace crshim
