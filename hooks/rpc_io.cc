#include "hooks/rpc_io.h"

#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "checkpoint/base/sys.h"

namespace crshim::rpcio {

Status send_message(int sock, const google::protobuf::MessageLite& msg) {
  // Checked here: protobuf aborts the process when asked to serialize an incomplete message.
  if (!msg.IsInitialized())
    return fail(make_error(Errc::internal, "serialize", msg.GetTypeName(),
                           "missing required fields: " + msg.InitializationErrorString()));
  std::string data;
  if (!msg.SerializePartialToString(&data))
    return fail(make_error(Errc::internal, "serialize", msg.GetTypeName(), "serialization failed"));
  ssize_t n;
  do {
    n = ::send(sock, data.data(), data.size(), MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return fail(sys_error("send", "RPC socket", msg.GetTypeName()));
  if (static_cast<size_t>(n) != data.size())
    return fail(make_error(Errc::system, "send", "RPC socket", "short datagram"));
  return {};
}

Result<std::optional<std::string>> recv_datagram(int sock) {
  char probe;
  ssize_t size;
  // MSG_TRUNC makes a SEQPACKET recv report the datagram's real length without consuming it.
  do {
    size = ::recv(sock, &probe, 1, MSG_PEEK | MSG_TRUNC);
  } while (size < 0 && errno == EINTR);
  if (size < 0) return fail(sys_error("recv", "RPC socket"));
  if (size == 0) return std::optional<std::string>();  // orderly shutdown (every message has a type, so never empty)
  if (static_cast<size_t>(size) > kMaxMessage)
    return fail(make_error(Errc::invalid_argument, "recv", "RPC socket",
                           "message of " + std::to_string(size) + " bytes is too large"));
  std::string buf(static_cast<size_t>(size), '\0');
  ssize_t n;
  do {
    n = ::recv(sock, buf.data(), buf.size(), 0);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return fail(sys_error("recv", "RPC socket"));
  buf.resize(static_cast<size_t>(n));
  return std::optional<std::string>(std::move(buf));
}

Result<bool> recv_message(int sock, google::protobuf::MessageLite& msg) {
  auto dgram = CR_TRY(recv_datagram(sock));
  if (!dgram) return false;
  if (!msg.ParseFromString(*dgram))
    return fail(make_error(Errc::invalid_argument, "parse", msg.GetTypeName(),
                           "malformed message of " + std::to_string(dgram->size()) + " bytes"));
  return true;
}

Result<bool> recv_message_with_fd(int sock, google::protobuf::MessageLite& msg, UniqueFd& fd) {
  std::string buf(kMaxMessage > 65536 ? 65536 : kMaxMessage, '\0');  // acks are a few bytes
  iovec iov{buf.data(), buf.size()};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 4)] = {};
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = control;
  mh.msg_controllen = sizeof control;
  ssize_t n;
  do {
    n = ::recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return fail(sys_error("recvmsg", "RPC socket"));
  // Every fd that arrived is owned here, so none leaks whatever the answer says.
  std::vector<UniqueFd> fds = sys::take_passed_fds(mh);
  if (n == 0) return false;
  if (mh.msg_flags & MSG_TRUNC) return fail(make_error(Errc::invalid_argument, "recvmsg", "RPC socket", "answer too large"));
  if (fds.size() > 1) return fail(make_error(Errc::invalid_argument, "recvmsg", "RPC socket", "more than one fd in an answer"));
  if (!msg.ParseFromArray(buf.data(), int(n)))
    return fail(make_error(Errc::invalid_argument, "parse", msg.GetTypeName(), "malformed message of " + std::to_string(n) + " bytes"));
  if (!fds.empty()) fd = std::move(fds[0]);
  return true;
}

}  // namespace crshim::rpcio
