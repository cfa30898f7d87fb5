// CRIU RPC framing: one serialized protobuf message per SOCK_SEQPACKET datagram, no length prefix.
#pragma once

#include <optional>
#include <string>

#include <google/protobuf/message_lite.h>

#include "checkpoint/base/result.h"
#include "checkpoint/base/unique_fd.h"

namespace crshim::rpcio {

// Requests larger than this are refused rather than allocated (CRIU sizes them with MSG_PEEK|MSG_TRUNC).
inline constexpr size_t kMaxMessage = 16u << 20;

// Sends `msg` as one datagram (MSG_NOSIGNAL: a vanished client is an error, not a SIGPIPE).
Status send_message(int sock, const google::protobuf::MessageLite& msg);

// Receives one datagram. nullopt when the peer closed the connection.
Result<std::optional<std::string>> recv_datagram(int sock);

// Receives and parses one datagram into `msg`; false when the peer closed the connection.
// A datagram that does not parse is an Errc::invalid_argument error.
Result<bool> recv_message(int sock, google::protobuf::MessageLite& msg);
// The same, also taking the one fd the datagram may carry as SCM_RIGHTS (else `fd` stays empty).
Result<bool> recv_message_with_fd(int sock, google::protobuf::MessageLite& msg, UniqueFd& fd);

}  // namespace crshim::rpcio
