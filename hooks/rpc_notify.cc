#include "hooks/rpc_notify.h"

#include "hooks/rpc_io.h"
#include "rpc.pb.h"

namespace crshim {

Status RpcNotifyHooks::fire(HookPoint point, pid_t pid) {
  const char* name = hook_name(point);
  criu_resp msg;
  msg.set_type(::NOTIFY);
  msg.set_success(true);
  criu_notify* n = msg.mutable_notify();
  n->set_script(name);
  // As CRIU: only these two points carry the root task's pid.
  if (pid > 0 && (point == HookPoint::setup_namespaces || point == HookPoint::post_restore)) n->set_pid(pid);
  LOG_INFO(log_, "Notifying the RPC client: %s", name);
  if (Status st = rpcio::send_message(sock_, msg); !st) return fail(st.error().within(std::string("notify ") + name));

  criu_req ack;
  auto got = rpcio::recv_message(sock_, ack);
  if (!got) return fail(got.error().within(std::string("notify ") + name));
  if (!*got)
    return fail(make_error(Errc::aborted, "notify", name, "the RPC client closed the connection instead of answering"));
  if (ack.type() != ::NOTIFY || !ack.notify_success()) {
    LOG_ERROR(log_, "RPC client answered %s with type %d, notify_success=%d", name, static_cast<int>(ack.type()),
              ack.notify_success() ? 1 : 0);
    return fail(make_error(Errc::aborted, "notify", name, "RPC client reported script error"));
  }
  if (point == HookPoint::query_ext_files && ack.has_opts())
    for (const auto& ext : ack.opts().external()) extra_external_.push_back(ext);
  return {};
}

}  // namespace crshim
