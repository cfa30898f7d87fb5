#include "checkpoint/image/catalog.h"

#include <array>
#include <cstdio>

#include "cgroup.pb.h"
#include "core.pb.h"
#include "eventfd.pb.h"
#include "eventpoll.pb.h"
#include "ext-file.pb.h"
#include "fdinfo.pb.h"
#include "fifo.pb.h"
#include "file-lock.pb.h"
#include "fs.pb.h"
#include "fsnotify.pb.h"
#include "ghost-file.pb.h"
#include "inventory.pb.h"
#include "ipc-sem.pb.h"
#include "ipc-shm.pb.h"
#include "ipc-var.pb.h"
#include "memfd.pb.h"
#include "mm.pb.h"
#include "mnt.pb.h"
#include "netdev.pb.h"
#include "ns.pb.h"
#include "pagemap.pb.h"
#include "pidfd.pb.h"
#include "pidns.pb.h"
#include "pipe-data.pb.h"
#include "pipe.pb.h"
#include "regfile.pb.h"
#include "remap-file-path.pb.h"
#include "rlimit.pb.h"
#include "sa.pb.h"
#include "seccomp.pb.h"
#include "siginfo.pb.h"
#include "signalfd.pb.h"
#include "sk-inet.pb.h"
#include "sk-netlink.pb.h"
#include "sk-packet.pb.h"
#include "sk-unix.pb.h"
#include "stats.pb.h"
#include "tcp-stream.pb.h"
#include "timens.pb.h"
#include "timer.pb.h"
#include "timerfd.pb.h"
#include "tty.pb.h"
#include "tun.pb.h"
#include "userns.pb.h"
#include "utsns.pb.h"
#include "vma.pb.h"

namespace crshim::image {

namespace {

uint64_t pipe_payload(const google::protobuf::Message& m) {
  return static_cast<const pipe_data_entry&>(m).bytes();
}
// Raw shm contents only in images older than in_pagemaps; semaphore values padded to 8 bytes.
uint64_t shm_payload(const google::protobuf::Message& m) {
  const auto& e = static_cast<const ipc_shm_entry&>(m);
  return e.in_pagemaps() ? 0 : (e.size() + 3) / 4 * 4;
}
uint64_t sem_payload(const google::protobuf::Message& m) {
  return (uint64_t(static_cast<const ipc_sem_entry&>(m).nsems()) * 2 + 7) / 8 * 8;
}
uint64_t sk_packet_payload(const google::protobuf::Message& m) {
  return static_cast<const sk_packet_entry&>(m).length();
}
uint64_t tcp_stream_payload(const google::protobuf::Message& m) {
  const auto& e = static_cast<const tcp_stream_entry&>(m);
  return uint64_t(e.inq_len()) + e.outq_len();
}

template <class M>
const google::protobuf::Message* proto() {
  return &M::default_instance();
}

// Engine-used kinds first, in the order of `Type`; then kinds we only decode.
const std::array kKinds = {
    Kind{"INVENTORY", 0x58313116, false, nullptr, proto<inventory_entry>(), nullptr},
    Kind{"PSTREE", 0x50273030, false, nullptr, proto<pstree_entry>(), nullptr},
    Kind{"CORE", 0x55053847, false, nullptr, proto<core_entry>(), nullptr},
    Kind{"IDS", 0x54432030, false, nullptr, proto<task_kobj_ids_entry>(), nullptr},
    Kind{"MM", 0x57492820, false, nullptr, proto<mm_entry>(), nullptr},
    Kind{"PAGEMAP", 0x56084025, false, proto<pagemap_head>(), proto<pagemap_entry>(), nullptr},
    Kind{"FS", 0x51403912, false, nullptr, proto<fs_entry>(), nullptr},
    Kind{"FDINFO", 0x56213732, false, nullptr, proto<fdinfo_entry>(), nullptr},
    Kind{"FILES", 0x56303138, false, nullptr, proto<file_entry>(), nullptr},
    Kind{"PIPES_DATA", 0x56453709, false, nullptr, proto<pipe_data_entry>(), pipe_payload},
    Kind{"FIFO_DATA", 0x59333054, false, nullptr, proto<pipe_data_entry>(), pipe_payload},
    Kind{"TTY_INFO", 0x59453036, false, nullptr, proto<tty_info_entry>(), nullptr},
    Kind{"TTY_DATA", 0x59413026, false, nullptr, proto<tty_data_entry>(), nullptr},
    Kind{"SK_QUEUES", 0x56264026, false, nullptr, proto<sk_packet_entry>(), sk_packet_payload},
    Kind{"TCP_STREAM", 0x51465506, false, nullptr, proto<tcp_stream_entry>(), tcp_stream_payload},
    Kind{"REMAP_FPATH", 0x59133954, false, nullptr, proto<remap_file_path_entry>(), nullptr},
    Kind{"GHOST_FILE", 0x52583605, false, proto<ghost_file_entry>(), proto<ghost_chunk_entry>(), nullptr},
    Kind{"MEMFD_INODE", 0x48453499, false, nullptr, proto<memfd_inode_entry>(), nullptr},
    Kind{"FILE_LOCKS", 0x54323616, false, nullptr, proto<file_lock_entry>(), nullptr},
    Kind{"SECCOMP", 0x64413049, false, nullptr, proto<seccomp_entry>(), nullptr},
    Kind{"CGROUP", 0x59383330, false, nullptr, proto<cgroup_entry>(), nullptr},
    Kind{"MNTS", 0x55563928, false, nullptr, proto<mnt_entry>(), nullptr},
    Kind{"UTSNS", 0x54473203, false, nullptr, proto<utsns_entry>(), nullptr},
    Kind{"IPC_VAR", 0x53115007, false, nullptr, proto<ipc_var_entry>(), nullptr},
    Kind{"IPCNS_SHM", 0x46283044, false, nullptr, proto<ipc_shm_entry>(), shm_payload},
    Kind{"IPCNS_MSG", 0x55453737, false, nullptr, nullptr, nullptr},
    Kind{"IPCNS_SEM", 0x59573019, false, nullptr, proto<ipc_sem_entry>(), sem_payload},
    Kind{"NETNS", 0x55933752, false, nullptr, proto<netns_entry>(), nullptr},
    Kind{"NETDEV", 0x57373951, false, nullptr, proto<net_device_entry>(), nullptr},
    Kind{"TIMENS", 0x43114433, false, nullptr, proto<timens_entry>(), nullptr},
    Kind{"USERNS", 0x55474906, false, nullptr, proto<userns_entry>(), nullptr},
    Kind{"PIDNS", 0x61157326, false, nullptr, proto<pidns_entry>(), nullptr},
    Kind{"STATS", 0x57093306, true, nullptr, proto<stats_entry>(), nullptr},
    // Decoded for `show` only (legacy per-type images and rarer objects).
    Kind{"VMAS", 0x54123737, false, nullptr, proto<vma_entry>(), nullptr},
    Kind{"PIPES", 0x56513555, false, nullptr, proto<pipe_entry>(), nullptr},
    Kind{"FIFO", 0x58364939, false, nullptr, proto<fifo_entry>(), nullptr},
    Kind{"SIGACT", 0x55344201, false, nullptr, proto<sa_entry>(), nullptr},
    Kind{"UNIXSK", 0x54373943, false, nullptr, proto<unix_sk_entry>(), nullptr},
    Kind{"INETSK", 0x56443851, false, nullptr, proto<inet_sk_entry>(), nullptr},
    Kind{"PACKETSK", 0x60454618, false, nullptr, proto<packet_sock_entry>(), nullptr},
    Kind{"ITIMERS", 0x57464056, false, nullptr, proto<itimer_entry>(), nullptr},
    Kind{"POSIX_TIMERS", 0x52603957, false, nullptr, proto<posix_timer_entry>(), nullptr},
    Kind{"CREDS", 0x54023547, false, nullptr, proto<creds_entry>(), nullptr},
    Kind{"REG_FILES", 0x50363636, false, nullptr, proto<reg_file_entry>(), nullptr},
    Kind{"EXT_FILES", 0x59255641, false, nullptr, proto<ext_file_entry>(), nullptr},
    Kind{"EVENTFD_FILE", 0x44523722, false, nullptr, proto<eventfd_file_entry>(), nullptr},
    Kind{"EVENTPOLL_FILE", 0x45023858, false, nullptr, proto<eventpoll_file_entry>(), nullptr},
    Kind{"EVENTPOLL_TFD", 0x44433746, false, nullptr, proto<eventpoll_tfd_entry>(), nullptr},
    Kind{"SIGNALFD", 0x57323820, false, nullptr, proto<signalfd_entry>(), nullptr},
    Kind{"INOTIFY_FILE", 0x48424431, false, nullptr, proto<inotify_file_entry>(), nullptr},
    Kind{"INOTIFY_WD", 0x54562009, false, nullptr, proto<inotify_wd_entry>(), nullptr},
    Kind{"TTY_FILES", 0x59433025, false, nullptr, proto<tty_file_entry>(), nullptr},
    Kind{"RLIMIT", 0x57113925, false, nullptr, proto<rlimit_entry>(), nullptr},
    Kind{"FANOTIFY_FILE", 0x55096122, false, nullptr, proto<fanotify_file_entry>(), nullptr},
    Kind{"FANOTIFY_MARK", 0x56506035, false, nullptr, proto<fanotify_mark_entry>(), nullptr},
    Kind{"SIGNAL", 0x59255647, false, nullptr, proto<signal_queue_entry>(), nullptr},
    Kind{"NETLINK_SK", 0x58005614, false, nullptr, proto<netlink_sk_entry>(), nullptr},
    Kind{"NS_FILES", 0x61394011, false, nullptr, proto<ns_file_entry>(), nullptr},
    Kind{"TUNFILE", 0x57143751, false, nullptr, proto<tunfile_entry>(), nullptr},
    Kind{"TIMERFD", 0x50493712, false, nullptr, proto<timerfd_entry>(), nullptr},
    Kind{"PIDFD", 0x54435556, false, nullptr, proto<pidfd_entry>(), nullptr},
    Kind{"CPUINFO", 0x61404013, false, nullptr, nullptr, nullptr},
    Kind{"BINFMT_MISC", 0x67343323, false, nullptr, nullptr, nullptr},
    Kind{"AUTOFS", 0x49353943, false, nullptr, nullptr, nullptr},
    Kind{"BPFMAP_FILE", 0x57506142, false, nullptr, nullptr, nullptr},
    Kind{"BPFMAP_DATA", 0x64324033, false, nullptr, nullptr, nullptr},
    Kind{"APPARMOR", 0x59423047, false, nullptr, nullptr, nullptr},
    Kind{"IRMAP_CACHE", 0x57004059, true, nullptr, nullptr, nullptr},
};

}  // namespace

const Kind& kind(Type type) { return kKinds[size_t(type)]; }

const Kind* find_kind(uint32_t magic) {
  for (const Kind& k : kKinds)
    if (k.magic == magic) return &k;
  return nullptr;
}

std::string core_file(uint32_t vtid) { return "core-" + std::to_string(vtid) + ".img"; }
std::string ids_file(uint32_t vpid) { return "ids-" + std::to_string(vpid) + ".img"; }
std::string mm_file(uint32_t vpid) { return "mm-" + std::to_string(vpid) + ".img"; }
std::string pagemap_file(uint32_t vpid) { return "pagemap-" + std::to_string(vpid) + ".img"; }
std::string pages_file(uint32_t pages_id) { return "pages-" + std::to_string(pages_id) + ".img"; }
std::string pagemap_shmem_file(uint64_t shmid) { return "pagemap-shmem-" + std::to_string(shmid) + ".img"; }
std::string fs_file(uint32_t vpid) { return "fs-" + std::to_string(vpid) + ".img"; }
std::string fdinfo_file(uint32_t files_id) { return "fdinfo-" + std::to_string(files_id) + ".img"; }

std::string ghost_file(uint32_t ghost_id) {
  char name[32];
  snprintf(name, sizeof name, "ghost-file-%x.img", ghost_id);
  return name;
}

bool is_raw_file(std::string_view name) {
  auto starts = [&](std::string_view p) { return name.substr(0, p.size()) == p; };
  auto ends = [&](std::string_view s) { return name.size() >= s.size() && name.substr(name.size() - s.size()) == s; };
  return (starts("pages-") && !starts("pages-shmem")) || ends(".tar.gz.img") || ends(".tar.gz") ||
         starts("ifaddr-") || starts("route-") || starts("route6-") || starts("rule-") || starts("iptables-") ||
         starts("ip6tables-") || starts("nftables-") || starts("netns-ct-") || starts("netns-exp-");
}

}  // namespace crshim::image
