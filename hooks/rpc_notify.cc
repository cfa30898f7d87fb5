#include "hooks/rpc_notify.h"

#include <sys/socket.h>

#include <cstring>

#include "checkpoint/base/sys.h"
#include "hooks/rpc_io.h"
#include "rpc.pb.h"

namespace crshim {

namespace {

// One datagram carrying `msg` and `fd` as SCM_RIGHTS, as CRIU sends orphan-pts-master.
Status send_message_with_fd(int sock, const criu_resp& msg, int fd) {
  if (!msg.IsInitialized())
    return fail(make_error(Errc::internal, "serialize", msg.GetTypeName(), "missing required fields"));
  std::string data;
  if (!msg.SerializePartialToString(&data)) return fail(make_error(Errc::internal, "serialize", msg.GetTypeName(), "serialization failed"));
  return sys::send_with_fd(sock, data, fd, "RPC socket");
}

}  // namespace

Status RpcNotifyHooks::fire(HookPoint point, pid_t pid) { return notify(point, pid, -1); }

Result<UniqueFd> RpcNotifyHooks::request_fd(const std::string& key) {
  constexpr const char* kAction = "req-inherit-fd";
  criu_resp msg;
  msg.set_type(::NOTIFY);
  msg.set_success(true);
  msg.mutable_notify()->set_script(kAction);
  msg.mutable_notify()->set_crshim_inherit_fd_key(key);
  LOG_INFO(log_, "Asking the RPC client for the file of %s", key.c_str());
  CR_OK_IN(rpcio::send_message(sock_, msg), std::string("notify ") + kAction);
  criu_req ack;
  UniqueFd fd;
  bool got = CR_TRY(rpcio::recv_message_with_fd(sock_, ack, fd));
  if (!got) return fail(make_error(Errc::aborted, "notify", kAction, "the RPC client closed the connection instead of answering"));
  if (ack.type() != ::NOTIFY || !ack.notify_success())
    return fail(make_error(Errc::aborted, "inherit-fd", key, "the RPC client declined to pass this file"));
  if (!fd)
    return fail(make_error(Errc::invalid_argument, "inherit-fd", key, "the RPC client's answer carried no file")
                    .with_hint("attach the fd to the NOTIFY answer as SCM_RIGHTS"));
  return fd;
}

Status RpcNotifyHooks::fire_fd(HookPoint point, pid_t pid, int fd) { return notify(point, pid, fd); }

Status RpcNotifyHooks::notify(HookPoint point, pid_t pid, int fd) {
  const char* name = hook_name(point);
  criu_resp msg;
  msg.set_type(::NOTIFY);
  msg.set_success(true);
  criu_notify* n = msg.mutable_notify();
  n->set_script(name);
  // As CRIU: only these two points carry the root task's pid.
  if (pid > 0 && (point == HookPoint::setup_namespaces || point == HookPoint::post_restore)) n->set_pid(pid);
  LOG_INFO(log_, "Notifying the RPC client: %s%s", name, fd >= 0 ? " (with a file)" : "");
  Status sent = fd >= 0 ? send_message_with_fd(sock_, msg, fd) : rpcio::send_message(sock_, msg);
  if (!sent) return fail(sent.error().within(std::string("notify ") + name));

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
