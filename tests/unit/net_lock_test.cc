// The rule texts of the network lock: what iptables-restore and nft are fed, and the lock method a
// restore takes from the inventory.
#include <gtest/gtest.h>

#include "checkpoint/net/net_lock.h"

namespace crshim::net {
namespace {

TcpConnection v4() {
  TcpConnection c;
  c.local = "10.0.0.2";
  c.local_port = 5555;
  c.peer = "10.0.0.1";
  c.peer_port = 80;
  return c;
}

TEST(NetLock, IptablesConnectionRulesAreWhatIptablesSavePrints) {
  auto rules = lockrules::iptables_connection_rules(v4());
  ASSERT_EQ(rules.size(), 2u);
  // Packets from the peer, then packets to it; the same text iptables-save prints, so that a rule can
  // be found again in its output.
  EXPECT_EQ(rules[0],
            "-A INPUT -s 10.0.0.1/32 -d 10.0.0.2/32 -p tcp -m mark ! --mark 0xc114 -m tcp --sport 80 --dport 5555 -j DROP");
  EXPECT_EQ(rules[1],
            "-A OUTPUT -s 10.0.0.2/32 -d 10.0.0.1/32 -p tcp -m mark ! --mark 0xc114 -m tcp --sport 5555 --dport 80 -j DROP");
}

TEST(NetLock, IptablesConnectionRulesIpv6) {
  TcpConnection c;
  c.ipv6 = true;
  c.local = "::1";
  c.local_port = 1;
  c.peer = "fd00::5";
  c.peer_port = 2;
  auto rules = lockrules::iptables_connection_rules(c);
  ASSERT_EQ(rules.size(), 2u);
  EXPECT_EQ(rules[0], "-A INPUT -s fd00::5/128 -d ::1/128 -p tcp -m mark ! --mark 0xc114 -m tcp --sport 2 --dport 1 -j DROP");
  EXPECT_EQ(rules[1], "-A OUTPUT -s ::1/128 -d fd00::5/128 -p tcp -m mark ! --mark 0xc114 -m tcp --sport 1 --dport 2 -j DROP");
}

TEST(NetLock, IptablesApplyInsertsAndDeletes) {
  std::vector<std::string> rules = {"-A INPUT -s 1.2.3.4/32 -j DROP", "-A OUTPUT -d 1.2.3.4/32 -j DROP"};
  EXPECT_EQ(lockrules::iptables_apply(rules, true),
            "*filter\n-I INPUT -s 1.2.3.4/32 -j DROP\n-I OUTPUT -d 1.2.3.4/32 -j DROP\nCOMMIT\n");
  EXPECT_EQ(lockrules::iptables_apply(rules, false),
            "*filter\n-D INPUT -s 1.2.3.4/32 -j DROP\n-D OUTPUT -d 1.2.3.4/32 -j DROP\nCOMMIT\n");
}

TEST(NetLock, IptablesNamespaceLockAndUnlockAreInverse) {
  std::string lock = lockrules::iptables_namespace_lock();
  EXPECT_EQ(lock,
            "*filter\n:CRIU - [0:0]\n-I INPUT -j CRIU\n-I OUTPUT -j CRIU\n-A CRIU -i lo -j ACCEPT\n-A CRIU -o lo -j ACCEPT\n"
            "-A CRIU -m mark --mark 0xc114 -j ACCEPT\n-A CRIU -j DROP\nCOMMIT\n");
  // The unlock empties the chain (declaring it does), removes both jumps and the chain: nothing else.
  EXPECT_EQ(lockrules::iptables_namespace_unlock(),
            "*filter\n:CRIU - [0:0]\n-D INPUT -j CRIU\n-D OUTPUT -j CRIU\n-X CRIU\nCOMMIT\n");
}

TEST(NetLock, NftNamespaceLockDropsAllButLoopback) {
  std::string t = lockrules::nft_table("crshim-0.1.0-00000001");
  EXPECT_EQ(t, "CRIU-crshim-0.1.0-00000001");
  std::string lock = lockrules::nft_namespace_lock(t);
  EXPECT_EQ(lock,
            "add table inet CRIU-crshim-0.1.0-00000001\n"
            "add chain inet CRIU-crshim-0.1.0-00000001 input { type filter hook input priority 0; policy drop; }\n"
            "add chain inet CRIU-crshim-0.1.0-00000001 output { type filter hook output priority 0; policy drop; }\n"
            "add rule inet CRIU-crshim-0.1.0-00000001 input iifname \"lo\" accept\n"
            "add rule inet CRIU-crshim-0.1.0-00000001 output oifname \"lo\" accept\n"
            "add rule inet CRIU-crshim-0.1.0-00000001 input meta mark 0xc114 accept\n"
            "add rule inet CRIU-crshim-0.1.0-00000001 output meta mark 0xc114 accept\n");
  EXPECT_EQ(lockrules::nft_unlock(t), "delete table inet CRIU-crshim-0.1.0-00000001\n");
}

TEST(NetLock, NftConnectionLockAcceptsByDefault) {
  TcpConnection six;
  six.ipv6 = true;
  six.local = "::1";
  six.local_port = 7;
  six.peer = "::1";
  six.peer_port = 8;
  std::string lock = lockrules::nft_connection_lock("T", {v4(), six});
  EXPECT_EQ(lock,
            "add table inet T\n"
            "add chain inet T input { type filter hook input priority 0; policy accept; }\n"
            "add chain inet T output { type filter hook output priority 0; policy accept; }\n"
            "add rule inet T input ip saddr 10.0.0.1 ip daddr 10.0.0.2 tcp sport 80 tcp dport 5555 meta mark != 0xc114 drop\n"
            "add rule inet T output ip saddr 10.0.0.2 ip daddr 10.0.0.1 tcp sport 5555 tcp dport 80 meta mark != 0xc114 drop\n"
            "add rule inet T input ip6 saddr ::1 ip6 daddr ::1 tcp sport 8 tcp dport 7 meta mark != 0xc114 drop\n"
            "add rule inet T output ip6 saddr ::1 ip6 daddr ::1 tcp sport 7 tcp dport 8 meta mark != 0xc114 drop\n");
}

TEST(NetLock, RestoreMethodComesFromTheInventory) {
  restorer::ImageSet set;
  // Images without the field are older ones: iptables, as CRIU falls back to.
  EXPECT_EQ(restore_method(set, std::nullopt), NetLockMethod::iptables);
  set.inventory.set_network_lock_method(1);
  EXPECT_EQ(restore_method(set, std::nullopt), NetLockMethod::nftables);
  set.inventory.set_network_lock_method(2);
  EXPECT_EQ(restore_method(set, std::nullopt), NetLockMethod::skip);
  set.inventory.set_network_lock_method(0);
  EXPECT_EQ(restore_method(set, std::nullopt), NetLockMethod::iptables);
  EXPECT_EQ(restore_method(set, NetLockMethod::skip), NetLockMethod::skip);
  // The engine's enum is the inventory numbering.
  EXPECT_EQ(uint32_t(NetLockMethod::iptables), 0u);
  EXPECT_EQ(uint32_t(NetLockMethod::nftables), 1u);
  EXPECT_EQ(uint32_t(NetLockMethod::skip), 2u);
}

TEST(NetLock, EmptyLockUnlocksNothing) {
  NetworkLock lock;
  EXPECT_TRUE(lock.empty());
  EXPECT_TRUE(bool(lock.unlock()));
  EXPECT_TRUE(bool(lock.abort()));
}

}  // namespace
}  // namespace crshim::net
