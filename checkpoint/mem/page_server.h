// Dumps over the network (CRIU's page-server protocol, page_protocol.h): the sending end a dump uses
// with --page-server, and the receiving end behind `crshim page-server` that writes the images.
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "checkpoint/base/log.h"
#include "checkpoint/base/result.h"
#include "checkpoint/base/unique_fd.h"
#include "checkpoint/mem/pages.h"

namespace crshim::mem {

// A TCP connection and the peer's address, for messages.
struct Connection {
  UniqueFd sock;
  std::string peer;
};

// Socket I/O of the protocol, for both of its ends; `what` names the connection in errors.
// Reads exactly `size` bytes; false when the peer closed before the first byte and `eof_ok`.
Result<bool> recv_exact(int sk, void* buf, size_t size, bool eof_ok, const std::string& what);
// Sends every byte `iov` points to, resuming after partial sends (it advances `iov` as it goes).
Status send_iov(int sk, iovec* iov, size_t count, const std::string& what);

// Connects to `address` (IPv4, IPv6 or a host name) port `port`; `what` names the server in errors,
// `hint` says how to start it.
Result<Connection> connect_tcp(const std::string& address, uint16_t port, const std::string& what, const std::string& hint);

// The dump side: one TCP connection to a page server carries every pagemap of the dump.
class PageServerClient : public PageSink {
 public:
  // Connects to `address` (IPv4, IPv6 or a host name) port `port`.
  static Result<std::unique_ptr<PageServerClient>> connect(const std::string& address, uint16_t port);
  // Uses an already connected socket (--ps-socket, RPC ps.fd); the server is told to end at finish().
  static std::unique_ptr<PageServerClient> adopt(UniqueFd sock);

  Result<bool> open(Owner owner, uint64_t id) override;
  Status write(const std::vector<PageEntry>& entries, const char* data) override;
  Status close() override;
  // Tells the server the dump is complete and waits until it says every image is written. Without
  // it the server takes the dump as cut off and removes what it wrote.
  Status finish();
  // Per process (pid in the dump): the pages its pagemap covers, present or left to the parent.
  const std::map<uint64_t, std::vector<Range>>& coverage() const { return coverage_; }

 private:
  PageServerClient(UniqueFd sk, std::string peer, bool force_close)
      : sk_(std::move(sk)), peer_(std::move(peer)), force_close_(force_close) {}
  Status send_all(std::vector<iovec>& iov);
  Status recv_exact(void* buf, size_t size);
  Error net_error(const char* op) const;

  UniqueFd sk_;
  std::string peer_;
  bool force_close_;
  bool open_ = false;
  Owner owner_ = Owner::process;
  uint64_t id_ = 0, dst_ = 0;
  std::map<uint64_t, std::vector<Range>> coverage_;
};

// The receiving side: a listening socket, and the serving of one dumper's connection.
class PageServer {
 public:
  // Listens on `address` ("" = every address, IPv6 and IPv4) port `port` (0 = one the kernel picks).
  static Result<PageServer> listen(const std::string& address, uint16_t port);
  uint16_t port() const { return port_; }

  // Waits for one connection (the listening socket is closed then); a readable `cancel_fd` gives up
  // (Errc::aborted: "cancelled").
  Result<Connection> accept(int cancel_fd = -1);
  // Accepts one connection and serves it (serve()).
  Status serve_one(int images_dir, Logger& log);

  // Receives pagemaps and pages from `conn` into images in `images_dir` until the dumper says the
  // dump is complete and closes the connection. A connection cut early or a malformed request fails,
  // and the images written so far are removed. `wait_eof`: wait for the dumper to close after its
  // final request (off for an inherited socket its owner keeps open).
  static Status serve(int conn, int images_dir, Logger& log, const std::string& peer, bool wait_eof);

 private:
  PageServer(UniqueFd sk, uint16_t port) : sk_(std::move(sk)), port_(port) {}
  UniqueFd sk_;
  uint16_t port_ = 0;
};

}  // namespace crshim::mem
