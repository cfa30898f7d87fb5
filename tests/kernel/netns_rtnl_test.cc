// rtnetlink client and namespace helpers against a real, fresh network namespace: its links are
// listed from inside it, a veth pair is made across namespaces and deleted by its host end, and
// sockets made with socket_in belong to that namespace.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/if.h>
#include <linux/if_link.h>
#include <linux/sockios.h>
#include <linux/veth.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <thread>

#include "checkpoint/net/rtnl.h"

namespace crshim::net::rtnl {
namespace {

ino_t ino_of(int fd) {
  struct stat st {};
  EXPECT_EQ(::fstat(fd, &st), 0);
  return st.st_ino;
}

// A new network namespace, held by an fd (made on a thread so crshim's own stays as it is).
UniqueFd new_netns() {
  UniqueFd ns;
  std::thread t([&] {
    if (::unshare(CLONE_NEWNET) == 0) ns.reset(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
  });
  t.join();
  return ns;
}

TEST(Rtnl, FreshNamespaceHasOnlyLoopbackDown) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root";
  UniqueFd ns = new_netns();
  ASSERT_GE(ns.get(), 0);
  std::vector<Link> links;
  ASSERT_TRUE(in_netns(ns.get(), [&]() -> Status {
    auto sk = CR_TRY(Socket::open());
    links = CR_TRY(sk.links());
    return {};
  }));
  ASSERT_EQ(links.size(), 1u);
  EXPECT_EQ(links[0].name, "lo");
  EXPECT_EQ(links[0].index, 1);
  EXPECT_EQ(links[0].flags & IFF_UP, 0u);
  EXPECT_EQ(links[0].mtu, 65536u);
}

TEST(Rtnl, SocketInBelongsToTheNamespace) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root";
  UniqueFd ns = new_netns();
  ASSERT_GE(ns.get(), 0);
  auto sk = socket_in(ns.get(), AF_INET, SOCK_DGRAM, 0);
  ASSERT_TRUE(sk) << sk.error().render();
  UniqueFd sk_ns(::ioctl(sk->get(), SIOCGSKNS));
  ASSERT_GE(sk_ns.get(), 0);
  EXPECT_EQ(ino_of(sk_ns.get()), ino_of(ns.get()));
}

TEST(Rtnl, VethAcrossNamespacesGoesWithItsHostEnd) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root";
  UniqueFd ns = new_netns();
  ASSERT_GE(ns.get(), 0);
  UniqueFd host(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
  std::string outer = "crtv" + std::to_string(::getpid() % 100000);
  std::vector<Link> inside;
  ASSERT_TRUE(in_netns(ns.get(), [&]() -> Status {
    auto sk = CR_TRY(Socket::open());
    ifinfomsg ifi{};
    ifi.ifi_index = 7;
    Message m(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, ifi);
    m.put_str(IFLA_IFNAME, "inner0");
    size_t info = m.begin_nest(IFLA_LINKINFO);
    m.put(IFLA_INFO_KIND, "veth", 4);
    size_t data = m.begin_nest(IFLA_INFO_DATA);
    size_t peer = m.begin_nest(VETH_INFO_PEER);
    ifinfomsg peer_ifi{};
    m.put_raw(&peer_ifi, sizeof peer_ifi);
    m.put_str(IFLA_IFNAME, outer);
    m.put_u32(IFLA_NET_NS_FD, uint32_t(host.get()));
    m.end_nest(peer);
    m.end_nest(data);
    m.end_nest(info);
    CR_OK(sk.request(m, "create veth"));
    inside = CR_TRY(sk.links());
    return {};
  }));
  auto hsk = Socket::open();
  ASSERT_TRUE(hsk);
  auto idx = hsk->index_of(outer);
  ASSERT_TRUE(idx) << idx.error().render();
  ASSERT_EQ(inside.size(), 2u);
  EXPECT_EQ(inside[1].name, "inner0");
  EXPECT_EQ(inside[1].index, 7);  // the index asked for
  EXPECT_EQ(inside[1].kind, "veth");
  ASSERT_TRUE(inside[1].link_netnsid.has_value());  // the peer is in another namespace
  EXPECT_EQ(inside[1].link.value_or(-1), *idx);
  ASSERT_TRUE(hsk->delete_link(outer));
  EXPECT_FALSE(hsk->index_of(outer));
  std::vector<Link> after;
  ASSERT_TRUE(in_netns(ns.get(), [&]() -> Status {
    auto sk = CR_TRY(Socket::open());
    after = CR_TRY(sk.links());
    return {};
  }));
  EXPECT_EQ(after.size(), 1u);  // deleting the host end took the inner end too
}

TEST(Rtnl, RefusedRequestCarriesTheKernelsReason) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root";
  UniqueFd ns = new_netns();
  ASSERT_GE(ns.get(), 0);
  Status st = in_netns(ns.get(), [&]() -> Status {
    auto sk = CR_TRY(Socket::open());
    return sk.delete_link("nosuchlink0");
  });
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().err, ENODEV);
  EXPECT_NE(st.error().render().find("nosuchlink0"), std::string::npos);
}

}  // namespace
}  // namespace crshim::net::rtnl
