// Inet sock_diag: real sockets are found by inode with their state, ports, addresses and backlog;
// the pre-freeze check names established TCP connections.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <unistd.h>

#include "checkpoint/files/inet.h"

namespace crshim::files::inet {
namespace {

uint32_t ino_of(int fd) {
  struct stat st {};
  EXPECT_EQ(::fstat(fd, &st), 0);
  return uint32_t(st.st_ino);
}

uint16_t port_of(int fd) {
  sockaddr_in a{};
  socklen_t len = sizeof a;
  EXPECT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len), 0);
  return ntohs(a.sin_port);
}

TEST(InetDiag, ListenerConnectionAndUdp) {
  sockaddr_in lo{};
  lo.sin_family = AF_INET;
  lo.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  UniqueFd l(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_TRUE(l);
  ASSERT_EQ(::bind(l.get(), reinterpret_cast<sockaddr*>(&lo), sizeof lo), 0);
  ASSERT_EQ(::listen(l.get(), 13), 0);
  auto d = diag_by_ino(AF_INET, IPPROTO_TCP, ino_of(l.get()));
  ASSERT_TRUE(d) << d.error().render();
  ASSERT_TRUE(d->has_value());
  EXPECT_EQ((*d)->state, TCP_LISTEN);
  EXPECT_EQ((*d)->wqueue, 13u) << "a listener's backlog";
  EXPECT_EQ((*d)->sport, port_of(l.get()));
  EXPECT_EQ((*d)->src[0], htonl(INADDR_LOOPBACK));

  sockaddr_in to = lo;
  to.sin_port = htons(port_of(l.get()));
  UniqueFd c(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_EQ(::connect(c.get(), reinterpret_cast<sockaddr*>(&to), sizeof to), 0);
  d = diag_by_ino(AF_INET, IPPROTO_TCP, ino_of(l.get()));
  ASSERT_TRUE(d && d->has_value());
  EXPECT_EQ((*d)->rqueue, 1u) << "one connection not accepted yet";
  d = diag_by_ino(AF_INET, IPPROTO_TCP, ino_of(c.get()));
  ASSERT_TRUE(d && d->has_value());
  EXPECT_EQ((*d)->state, TCP_ESTABLISHED);
  EXPECT_EQ((*d)->dport, port_of(l.get()));
  EXPECT_EQ(describe(**d), "127.0.0.1:" + std::to_string(port_of(c.get())) + " -> 127.0.0.1:" + std::to_string(port_of(l.get())));
  // The listener's queued connection and both established ends, under each policy.
  std::string why = tcp_problems(getpid(), {});
  EXPECT_NE(why.find("established TCP connection 127.0.0.1:" + std::to_string(port_of(c.get()))), std::string::npos) << why;
  EXPECT_NE(why.find("1 connection(s) not accepted yet (--skip-in-flight drops them)"), std::string::npos) << why;
  why = tcp_problems(getpid(), {.established = true});
  EXPECT_EQ(why.find("established"), std::string::npos) << why;
  EXPECT_NE(why.find("not accepted yet"), std::string::npos) << why;
  EXPECT_EQ(tcp_problems(getpid(), {.established = false, .close = true, .skip_in_flight = true}), "");

  UniqueFd unbound(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  d = diag_by_ino(AF_INET, IPPROTO_TCP, ino_of(unbound.get()));
  ASSERT_TRUE(d);
  EXPECT_FALSE(d->has_value()) << "an unbound socket is not listed";

  UniqueFd u(::socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  sockaddr_in6 lo6{};
  lo6.sin6_family = AF_INET6;
  lo6.sin6_addr = in6addr_loopback;
  if (::bind(u.get(), reinterpret_cast<sockaddr*>(&lo6), sizeof lo6) == 0) {
    d = diag_by_ino(AF_INET6, IPPROTO_UDP, ino_of(u.get()));
    ASSERT_TRUE(d && d->has_value());
    EXPECT_EQ((*d)->state, TCP_CLOSE);
    EXPECT_EQ(describe(**d).rfind("[::1]:", 0), 0u) << describe(**d);
  }
  EXPECT_EQ(tcp_stream_file(0x1234ab), "tcp-stream-1234ab.img");
}

}  // namespace
}  // namespace crshim::files::inet
