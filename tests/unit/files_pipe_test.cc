// Non-destructive reads of pipes and unix socket queues, and the sock_diag reply parser.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "checkpoint/base/sys.h"
#include "checkpoint/base/unique_fd.h"
#include "checkpoint/files/pipe_data.h"
#include "checkpoint/files/unix_diag.h"

namespace crshim::files {
namespace {

struct Pair {
  UniqueFd a, b;
};

Pair make_pipe() {
  int p[2];
  EXPECT_EQ(::pipe2(p, O_CLOEXEC), 0);
  return {UniqueFd(p[0]), UniqueFd(p[1])};
}

Pair make_socketpair(int type) {
  int sv[2];
  EXPECT_EQ(::socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, sv), 0);
  return {UniqueFd(sv[0]), UniqueFd(sv[1])};
}

std::string read_some(int fd, size_t max) {
  std::string buf(max, '\0');
  ssize_t n = ::recv(fd, buf.data(), buf.size(), MSG_DONTWAIT);
  if (n < 0) n = ::read(fd, buf.data(), buf.size());
  buf.resize(n > 0 ? size_t(n) : 0);
  return buf;
}

TEST(PeekPipe, CopiesWithoutConsuming) {
  auto p = make_pipe();
  std::string data;
  for (int i = 0; i < 40000; i++) data.push_back(char('a' + i % 26));
  // Several writes make several pipe buffers; tee must copy all of them.
  for (size_t off = 0; off < data.size(); off += 1000) ASSERT_EQ(::write(p.b.get(), data.data() + off, 1000), 1000);
  auto got = pipes::peek_pipe(p.a.get(), "test pipe");
  ASSERT_TRUE(got) << got.error().render();
  EXPECT_EQ(*got, data);
  // Still all there for the owner.
  std::string again(data.size(), '\0');
  ASSERT_EQ(::read(p.a.get(), again.data(), again.size()), ssize_t(data.size()));
  EXPECT_EQ(again, data);
}

TEST(PeekPipe, EmptyAndFullLargePipe) {
  auto p = make_pipe();
  auto empty = pipes::peek_pipe(p.a.get(), "empty pipe");
  ASSERT_TRUE(empty) << empty.error().render();
  EXPECT_EQ(*empty, "");
  ASSERT_EQ(::fcntl(p.b.get(), F_SETPIPE_SZ, 256 * 1024), 256 * 1024);
  std::string data(256 * 1024, 'x');
  data[12345] = 'y';
  ::fcntl(p.b.get(), F_SETFL, O_NONBLOCK);
  ASSERT_EQ(::write(p.b.get(), data.data(), data.size()), ssize_t(data.size()));
  auto got = pipes::peek_pipe(p.a.get(), "full pipe");
  ASSERT_TRUE(got) << got.error().render();
  EXPECT_EQ(*got, data);
}

TEST(PeekQueue, DatagramBoundariesAndPeekOffsetKept) {
  auto s = make_socketpair(SOCK_DGRAM);
  for (std::string m : {"one", "two-22", "", "three-333"}) ASSERT_EQ(::send(s.a.get(), m.data(), m.size(), 0), ssize_t(m.size()));
  auto got = unixsk::peek_queue(s.b.get(), SOCK_DGRAM, "dgram");
  ASSERT_TRUE(got) << got.error().render();
  EXPECT_EQ(*got, (std::vector<std::string>{"one", "two-22", "", "three-333"}));
  int off = 0;
  socklen_t len = sizeof off;
  ASSERT_EQ(::getsockopt(s.b.get(), SOL_SOCKET, SO_PEEK_OFF, &off, &len), 0);
  EXPECT_EQ(off, -1);  // peeking with an offset was switched off again
  EXPECT_EQ(read_some(s.b.get(), 100), "one");
  EXPECT_EQ(read_some(s.b.get(), 100), "two-22");
}

TEST(PeekQueue, StreamBytesInOrder) {
  auto s = make_socketpair(SOCK_STREAM);
  std::string data;
  for (int i = 0; i < 5000; i++) data += std::to_string(i) + ",";
  ASSERT_EQ(::send(s.a.get(), data.data(), data.size(), 0), ssize_t(data.size()));
  ASSERT_EQ(::send(s.a.get(), "tail", 4, 0), 4);
  auto got = unixsk::peek_queue(s.b.get(), SOCK_STREAM, "stream");
  ASSERT_TRUE(got) << got.error().render();
  std::string all;
  for (const auto& c : *got) all += c;
  EXPECT_EQ(all, data + "tail");
  EXPECT_EQ(read_some(s.b.get(), 10), data.substr(0, 10));
}

TEST(PeekQueue, SeqpacketEndAfterShutdown) {
  auto s = make_socketpair(SOCK_SEQPACKET);
  ASSERT_EQ(::send(s.a.get(), "rec-A", 5, 0), 5);
  ASSERT_EQ(::send(s.a.get(), "", 0, 0), 0);
  ASSERT_EQ(::send(s.a.get(), "rec-BB", 6, 0), 6);
  ASSERT_EQ(::shutdown(s.a.get(), SHUT_WR), 0);
  auto got = unixsk::peek_queue(s.b.get(), SOCK_SEQPACKET, "seqpacket");
  ASSERT_TRUE(got) << got.error().render();
  EXPECT_EQ(*got, (std::vector<std::string>{"rec-A", "", "rec-BB"}));
}

TEST(PeekQueue, PassedDescriptorsRefused) {
  auto s = make_socketpair(SOCK_DGRAM);
  int passed = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(passed, 0);
  ASSERT_TRUE(sys::send_with_fd(s.a.get(), "x", passed, "test socket"));
  ::close(passed);
  auto got = unixsk::peek_queue(s.b.get(), SOCK_DGRAM, "dgram with fds");
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error().code, Errc::unsupported);
  EXPECT_NE(got.error().message.find("SCM_RIGHTS"), std::string::npos) << got.error().render();
  EXPECT_EQ(read_some(s.b.get(), 10), "x");  // the datagram is still queued
}

// A reply as the kernel lays it out: nlmsghdr, unix_diag_msg, then attributes.
std::vector<uint8_t> diag_reply() {
  std::vector<uint8_t> out;
  auto put = [&](const void* p, size_t n) {
    const uint8_t* b = static_cast<const uint8_t*>(p);
    out.insert(out.end(), b, b + n);
    while (out.size() % 4) out.push_back(0);
  };
  auto attr = [&](uint16_t type, const void* p, size_t n) {
    nlattr a{uint16_t(NLA_HDRLEN + n), type};
    put(&a, sizeof a);
    put(p, n);
  };
  nlmsghdr h{};
  h.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  put(&h, sizeof h);
  unix_diag_msg m{};
  m.udiag_family = AF_UNIX;
  m.udiag_type = SOCK_STREAM;
  m.udiag_state = TCP_LISTEN;
  m.udiag_ino = 4242;
  put(&m, sizeof m);
  attr(UNIX_DIAG_NAME, "/run/x.sock", 12);
  unix_diag_vfs v{77, (8u << 20) | 3};
  attr(UNIX_DIAG_VFS, &v, sizeof v);
  uint32_t icons[2] = {11, 12};
  attr(UNIX_DIAG_ICONS, icons, sizeof icons);
  unix_diag_rqlen q{2, 128};
  attr(UNIX_DIAG_RQLEN, &q, sizeof q);
  uint8_t shut = 3;
  attr(UNIX_DIAG_SHUTDOWN, &shut, 1);
  uint32_t len = uint32_t(out.size());
  memcpy(out.data(), &len, sizeof len);
  nlmsghdr done{};
  done.nlmsg_len = NLMSG_LENGTH(4);
  done.nlmsg_type = NLMSG_DONE;
  put(&done, sizeof done);
  uint32_t zero = 0;
  put(&zero, 4);
  return out;
}

TEST(ParseDiag, ReadsEveryAttribute) {
  auto buf = diag_reply();
  auto got = unixsk::parse_diag(buf, "test");
  ASSERT_TRUE(got) << got.error().render();
  ASSERT_EQ(got->size(), 1u);
  const auto& d = (*got)[0];
  EXPECT_EQ(d.ino, 4242u);
  EXPECT_EQ(d.type, SOCK_STREAM);
  EXPECT_EQ(d.state, TCP_LISTEN);
  EXPECT_EQ(d.name, std::string("/run/x.sock\0", 12));
  ASSERT_TRUE(d.vfs_ino);
  EXPECT_EQ(*d.vfs_ino, 77u);
  EXPECT_EQ(d.vfs_dev, (8u << 20) | 3);
  EXPECT_EQ(d.icons, (std::vector<uint32_t>{11, 12}));
  EXPECT_EQ(d.rqueue, 2u);
  EXPECT_EQ(d.wqueue, 128u);
  EXPECT_EQ(d.shutdown, 3);
  EXPECT_EQ(d.peer, 0u);
}

TEST(ParseDiag, ErrorsAndTruncation) {
  std::vector<uint8_t> buf(NLMSG_LENGTH(sizeof(nlmsgerr)));
  nlmsghdr h{uint32_t(buf.size()), NLMSG_ERROR, 0, 0, 0};
  memcpy(buf.data(), &h, sizeof h);
  nlmsgerr e{};
  e.error = -ENOENT;
  memcpy(buf.data() + NLMSG_HDRLEN, &e, sizeof e);
  auto got = unixsk::parse_diag(buf, "test");
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error().err, ENOENT);

  auto reply = diag_reply();
  reply.resize(40);  // cut inside the attributes: the header's length now exceeds the buffer
  EXPECT_FALSE(unixsk::parse_diag(reply, "test"));
}

TEST(Diag, FindsSocketpairPeerByInode) {
  auto s = make_socketpair(SOCK_STREAM);
  struct stat a, b;
  ASSERT_EQ(::fstat(s.a.get(), &a), 0);
  ASSERT_EQ(::fstat(s.b.get(), &b), 0);
  ASSERT_EQ(::send(s.a.get(), "12345", 5, 0), 5);
  auto d = unixsk::diag_by_ino(uint32_t(b.st_ino));
  ASSERT_TRUE(d) << d.error().render();
  EXPECT_EQ(d->peer, uint32_t(a.st_ino));
  EXPECT_EQ(d->type, SOCK_STREAM);
  EXPECT_EQ(d->state, TCP_ESTABLISHED);
  EXPECT_EQ(d->rqueue, 5u);
  EXPECT_EQ(d->name, "");
  auto missing = unixsk::diag_by_ino(0xfffffff0u);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, Errc::not_found);
}

}  // namespace
}  // namespace crshim::files
