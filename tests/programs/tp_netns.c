/* Network namespace contents: started inside a prepared namespace, it records what it sees (links with
 * their state and MTU, IPv4/IPv6 addresses, main-table routes, a few sysctls) and after restore checks
 * that it sees the same. Optional argument connect=A.B.C.D:PORT: after restore a TCP connect there must
 * reach the host (accepted or refused, not unreachable or timed out). */
#include "tp.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <stddef.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>

static char snap_before[16384];
static char snap_after[16384];

static void add(char* out, size_t cap, const char* fmt, ...) __attribute__((format(printf, 3, 4)));
static void add(char* out, size_t cap, const char* fmt, ...) {
  size_t len = strlen(out);
  if (len + 1 >= cap) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(out + len, cap - len, fmt, ap);
  va_end(ap);
}

static void add_file_lines(char* out, size_t cap, const char* path, int ipv6) {
  FILE* f = fopen(path, "r");
  if (!f) {
    add(out, cap, "%s: absent\n", path);
    return;
  }
  char line[512];
  while (fgets(line, sizeof line, f)) {
    if (!ipv6) {
      /* Iface Destination Gateway Flags RefCnt Use Metric Mask ...: keep all but the counters. */
      char ifc[64], dst[16], gw[16], mask[16];
      unsigned flags, ref, use, metric;
      if (sscanf(line, "%63s %15s %15s %x %u %u %u %15s", ifc, dst, gw, &flags, &ref, &use, &metric, mask) == 8)
        add(out, cap, "route %s %s %s %x %u %s\n", ifc, dst, gw, flags, metric, mask);
    } else {
      /* dest plen src splen nexthop metric refcnt use flags iface: skip link-local, multicast and
       * host routes (those follow from the addresses), keep the rest without counters. */
      char dst[40], src[40], nh[40], ifc[64];
      unsigned plen, splen, metric, ref, use, flags;
      if (sscanf(line, "%39s %x %39s %x %39s %x %x %x %x %63s", dst, &plen, src, &splen, nh, &metric, &ref, &use,
                 &flags, ifc) != 10)
        continue;
      if (!strncmp(dst, "fe80", 4) || !strncmp(dst, "ff", 2) || plen == 128) continue;
      add(out, cap, "route6 %s/%u via %s metric %x dev %s\n", dst, plen, nh, metric, ifc);
    }
  }
  fclose(f);
}

static void add_sysctl(char* out, size_t cap, const char* name) {
  char path[256], buf[128] = "";
  snprintf(path, sizeof path, "/proc/sys/net/%s", name);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof buf - 1);
  if (fd >= 0) close(fd);
  if (n > 0) buf[n] = 0;
  add(out, cap, "sysctl %s = %s", name, n > 0 ? buf : "absent\n");
}

static void snapshot(char* out, size_t cap) {
  out[0] = 0;
  int sk = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (sk < 0) tp_fail("socket: %s", strerror(errno));
  struct if_nameindex* ni = if_nameindex();
  if (!ni) tp_fail("if_nameindex: %s", strerror(errno));
  for (struct if_nameindex* i = ni; i->if_index; i++) {
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", i->if_name);
    if (ioctl(sk, SIOCGIFFLAGS, &ifr) < 0) tp_fail("SIOCGIFFLAGS %s: %s", i->if_name, strerror(errno));
    int up = !!(ifr.ifr_flags & IFF_UP);
    if (ioctl(sk, SIOCGIFMTU, &ifr) < 0) tp_fail("SIOCGIFMTU %s: %s", i->if_name, strerror(errno));
    int mtu = ifr.ifr_mtu;
    if (ioctl(sk, SIOCGIFHWADDR, &ifr) < 0) tp_fail("SIOCGIFHWADDR %s: %s", i->if_name, strerror(errno));
    const unsigned char* hw = (const unsigned char*)ifr.ifr_hwaddr.sa_data;
    add(out, cap, "link %u %s up=%d mtu=%d hw=%02x:%02x:%02x:%02x:%02x:%02x\n", i->if_index, i->if_name, up, mtu, hw[0],
        hw[1], hw[2], hw[3], hw[4], hw[5]);
  }
  if_freenameindex(ni);
  close(sk);

  struct ifaddrs* ifa;
  if (getifaddrs(&ifa) < 0) tp_fail("getifaddrs: %s", strerror(errno));
  for (struct ifaddrs* a = ifa; a; a = a->ifa_next) {
    if (!a->ifa_addr) continue;
    char addr[INET6_ADDRSTRLEN] = "", mask[INET6_ADDRSTRLEN] = "";
    if (a->ifa_addr->sa_family == AF_INET) {
      inet_ntop(AF_INET, &((struct sockaddr_in*)a->ifa_addr)->sin_addr, addr, sizeof addr);
      inet_ntop(AF_INET, &((struct sockaddr_in*)a->ifa_netmask)->sin_addr, mask, sizeof mask);
    } else if (a->ifa_addr->sa_family == AF_INET6) {
      const struct in6_addr* in6 = &((struct sockaddr_in6*)a->ifa_addr)->sin6_addr;
      if (IN6_IS_ADDR_LINKLOCAL(in6)) continue; /* made by the kernel from the MAC, and only once up */
      inet_ntop(AF_INET6, in6, addr, sizeof addr);
      inet_ntop(AF_INET6, &((struct sockaddr_in6*)a->ifa_netmask)->sin6_addr, mask, sizeof mask);
    } else {
      continue;
    }
    add(out, cap, "addr %s %s/%s\n", a->ifa_name, addr, mask);
  }
  freeifaddrs(ifa);

  add_file_lines(out, cap, "/proc/self/net/route", 0);
  add_file_lines(out, cap, "/proc/self/net/ipv6_route", 1);
  add_sysctl(out, cap, "ipv4/conf/all/forwarding");
  add_sysctl(out, cap, "ipv4/conf/default/rp_filter");
  add_sysctl(out, cap, "ipv4/conf/lo/arp_ignore");
  add_sysctl(out, cap, "ipv6/conf/all/hop_limit");
  add_sysctl(out, cap, "unix/max_dgram_qlen");
}

/* 0 when a TCP connect to addr:port got an answer from the host (connected or refused). */
static int reach(const char* spec, char* why, size_t cap) {
  char host[64];
  int port;
  if (sscanf(spec, "%63[^:]:%d", host, &port) != 2) tp_fail("bad connect= argument %s", spec);
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_port = htons((unsigned short)port);
  if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) tp_fail("bad address %s", host);
  int sk = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (sk < 0) tp_fail("socket: %s", strerror(errno));
  int rc = connect(sk, (struct sockaddr*)&sa, sizeof sa), err = rc < 0 ? errno : 0;
  if (rc < 0 && err == EINPROGRESS) {
    struct pollfd p = {sk, POLLOUT, 0};
    if (poll(&p, 1, 3000) != 1) {
      close(sk);
      snprintf(why, cap, "no answer within 3 s");
      return -1;
    }
    socklen_t len = sizeof err;
    getsockopt(sk, SOL_SOCKET, SO_ERROR, &err, &len);
  }
  close(sk);
  if (err == 0 || err == ECONNREFUSED) return 0;
  snprintf(why, cap, "%s", strerror(err));
  return -1;
}

/* A TCP listener on the namespace's loopback (when lo is up), made before the dump: after restore it
 * must still be there, in this namespace (a restored socket made in another one is not reachable here). */
static int listen_on_loopback(struct sockaddr_in* where) {
  struct ifreq ifr = {0};
  strcpy(ifr.ifr_name, "lo");
  int probe = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  int up = probe >= 0 && ioctl(probe, SIOCGIFFLAGS, &ifr) == 0 && (ifr.ifr_flags & IFF_UP);
  if (probe >= 0) close(probe);
  if (!up) return -1; /* nothing can reach a listener on a loopback that is down */
  int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof *where;
  if (l < 0 || bind(l, (struct sockaddr*)&sa, sizeof sa) < 0 || listen(l, 4) < 0 || getsockname(l, (struct sockaddr*)where, &len) < 0)
    tp_fail("loopback listener: %s", strerror(errno));
  return l;
}

static void check_listener(int l, const struct sockaddr_in* where) {
  int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (c < 0 || connect(c, (const struct sockaddr*)where, sizeof *where) < 0)
    tp_fail("connect to the restored listener on 127.0.0.1:%d: %s", ntohs(where->sin_port), strerror(errno));
  int a = accept(l, NULL, NULL);
  if (a < 0) tp_fail("accept on the restored listener: %s", strerror(errno));
  close(a);
  close(c);
}

/* An abstract unix listener: abstract names belong to a network namespace, so after restore the
 * name must answer here (sock_diag sees the socket only from this namespace too). */
static int listen_abstract(struct sockaddr_un* where, socklen_t* len) {
  memset(where, 0, sizeof *where);
  where->sun_family = AF_UNIX;
  int n = snprintf(where->sun_path + 1, sizeof where->sun_path - 1, "crshim-tp-netns-%d", getpid());
  *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n);
  int l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (l < 0 || bind(l, (struct sockaddr*)where, *len) < 0 || listen(l, 4) < 0) tp_fail("abstract listener: %s", strerror(errno));
  return l;
}

static void check_abstract(int l, const struct sockaddr_un* where, socklen_t len) {
  int c = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (c < 0 || connect(c, (const struct sockaddr*)where, len) < 0)
    tp_fail("connect to the restored abstract unix listener @%s: %s", where->sun_path + 1, strerror(errno));
  int a = accept(l, NULL, NULL);
  if (a < 0) tp_fail("accept on the restored abstract unix listener: %s", strerror(errno));
  close(a);
  close(c);
}

int main(int argc, char** argv) {
  tp_init(argc, argv);
  struct sockaddr_in where;
  int listener = listen_on_loopback(&where);
  struct sockaddr_un abstract;
  socklen_t abstract_len;
  int unix_listener = listen_abstract(&abstract, &abstract_len);
  const char* connect_to = NULL;
  for (int i = 3; i < argc; i++)
    if (!strncmp(argv[i], "connect=", 8)) connect_to = argv[i] + 8;
  snapshot(snap_before, sizeof snap_before);
  tp_ready(argv);
  tp_wait_for_term(NULL);
  snapshot(snap_after, sizeof snap_after);
  if (strcmp(snap_before, snap_after) != 0)
    tp_fail("the network namespace changed.\n--- before\n%s--- after\n%s", snap_before, snap_after);
  if (connect_to) {
    char why[256] = "";
    int ok = -1;
    /* The host end may have come up just now: give ARP and the link a moment. */
    for (int i = 0; i < 3 && ok != 0; i++) ok = reach(connect_to, why, sizeof why);
    if (ok != 0) tp_fail("TCP connect to %s: %s", connect_to, why);
  }
  if (listener >= 0) check_listener(listener, &where);
  check_abstract(unix_listener, &abstract, abstract_len);
  tp_pass();
}
