// Post-copy's two ends over a real TCP connection on the loopback: the dump side serves pages of a
// "task" (this process) that its pagemap left lazy, the daemon side fetches them.
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <thread>

#include <gtest/gtest.h>

#include "checkpoint/mem/lazy_remote.h"
#include "checkpoint/mem/page_protocol.h"
#include "checkpoint/mem/page_server.h"

namespace crshim::mem {
namespace {

// A lazy source serving `lazy` ranges of this process as vpid 9, on a loopback port.
class Served {
 public:
  explicit Served(std::vector<Range> lazy) {
    source_.add(9, ::getpid(), std::move(lazy));
    auto server = PageServer::listen("127.0.0.1", 0);
    EXPECT_TRUE(server) << server.error().render();
    port_ = server->port();
    thread_ = std::thread([this, s = std::move(*server)]() mutable {
      auto conn = s.accept();
      if (!conn) {
        status_ = fail(conn.error());
        return;
      }
      status_ = source_.serve(conn->sock.get(), conn->peer, -1, log_, stats_);
    });
  }
  // The serving's outcome, once the client is done.
  Status finish() {
    thread_.join();
    return status_;
  }
  uint16_t port() const { return port_; }
  const LazySourceStats& stats() const { return stats_; }

 private:
  LazyPagesSource source_;
  Logger log_{0};
  LazySourceStats stats_;
  uint16_t port_ = 0;
  Status status_;
  std::thread thread_;
};

struct Mapping {
  explicit Mapping(size_t pages) : size(pages * kPageSize) {
    data = static_cast<char*>(::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    for (size_t i = 0; i < pages; i++) memset(data + i * kPageSize, 'a' + int(i % 26), kPageSize);
  }
  ~Mapping() { ::munmap(data, size); }
  uint64_t at(size_t page) const { return reinterpret_cast<uint64_t>(data) + page * kPageSize; }
  char* data;
  size_t size;
};

TEST(LazyRemote, PagesOfLazyRangesComeFromTheTaskAndCloseEndsTheServing) {
  Mapping m(8);
  // Two adjacent lazy ranges: one request may span both.
  Served served({{m.at(0), m.at(3)}, {m.at(3), m.at(6)}});
  auto remote = RemotePages::connect("127.0.0.1", served.port());
  ASSERT_TRUE(remote) << remote.error().render();
  auto got = (*remote)->get(9, m.at(2), 3);
  ASSERT_TRUE(got) << got.error().render();
  EXPECT_EQ(0, memcmp(*got, m.data + 2 * kPageSize, 3 * kPageSize));
  EXPECT_EQ((*got)[0], 'c');
  ASSERT_TRUE((*remote)->close());
  Status st = served.finish();
  ASSERT_TRUE(st) << st.error().render();
  EXPECT_EQ(served.stats().requests, 1u);
  EXPECT_EQ(served.stats().pages_sent, 3u);
  EXPECT_EQ((*remote)->pages_received(), 3u);
}

TEST(LazyRemote, PagesTheDumpDoesNotHoldAreRefusedWithoutEndingTheServing) {
  Mapping m(4);
  Served served({{m.at(0), m.at(2)}});
  auto remote = RemotePages::connect("127.0.0.1", served.port());
  ASSERT_TRUE(remote) << remote.error().render();
  // Beyond the lazy range, and another pid: ADD {0, 0, 0}, which the daemon reports.
  for (auto [vpid, page, n] : {std::tuple{9u, 1, 2u}, std::tuple{10u, 0, 1u}}) {
    auto got = (*remote)->get(vpid, m.at(page), n);
    ASSERT_FALSE(got);
    EXPECT_NE(got.error().render().find("the dump does not hold them; hint: the images and the dump serving them must be of the same checkpoint"),
              std::string::npos)
        << got.error().render();
  }
  auto ok = (*remote)->get(9, m.at(1), 1);
  ASSERT_TRUE(ok) << ok.error().render();
  EXPECT_EQ((*ok)[5], 'b');
  ASSERT_TRUE((*remote)->close());
  ASSERT_TRUE(served.finish());
}

TEST(LazyRemote, ADaemonGoneBeforeCloseFailsTheServing) {
  Mapping m(1);
  Served served({{m.at(0), m.at(1)}});
  {
    auto remote = RemotePages::connect("127.0.0.1", served.port());
    ASSERT_TRUE(remote) << remote.error().render();
    ASSERT_TRUE((*remote)->get(9, m.at(0), 1));
  }
  Status st = served.finish();
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().render().find("the daemon went away before it had every page"), std::string::npos) << st.error().render();
}

TEST(LazyRemote, AnotherProtocolEndsTheServingWithAHint) {
  Mapping m(1);
  Served served({{m.at(0), m.at(1)}});
  auto c = connect_tcp("127.0.0.1", served.port(), "lazy dump", "");
  ASSERT_TRUE(c) << c.error().render();
  // A page server's request (OPEN2) where the daemon's GET or CLOSE belongs.
  ps::Iov open2;
  open2.cmd = ps::kOpen2;
  ASSERT_EQ(ssize_t(sizeof open2), ::send(c->sock.get(), &open2, sizeof open2, MSG_NOSIGNAL));
  Status st = served.finish();
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().render().find("serve lazy-pages daemon 127.0.0.1:"), std::string::npos) << st.error().render();
  EXPECT_NE(st.error().render().find("unexpected command 4; hint: connect `crshim lazy-pages --page-server` to a lazy dump"),
            std::string::npos)
      << st.error().render();
}

TEST(LazyRemote, ConnectingWithoutADumpSaysWhatToStart) {
  // A port nothing listens on: bound and closed again.
  uint16_t port;
  {
    auto s = PageServer::listen("127.0.0.1", 0);
    ASSERT_TRUE(s);
    port = s->port();
  }
  auto remote = RemotePages::connect("127.0.0.1", port);
  ASSERT_FALSE(remote);
  EXPECT_NE(remote.error().render().find("(ECONNREFUSED); hint: start `crshim dump --lazy-pages --port PORT` on the source first"),
            std::string::npos)
      << remote.error().render();
}

}  // namespace
}  // namespace crshim::mem
