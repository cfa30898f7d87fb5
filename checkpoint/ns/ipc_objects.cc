#include "checkpoint/ns/ipc_objects.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <climits>
#include <cstdio>
#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "checkpoint/base/sys.h"
#include "checkpoint/image/catalog.h"
#include "checkpoint/image/image.h"
#include "checkpoint/mem/shmem.h"
#include "ipc-msg.pb.h"
#include "ipc-sem.pb.h"
#include "ipc-shm.pb.h"

#ifndef MSG_COPY
#define MSG_COPY 040000
#endif

namespace crshim::ns {

namespace {

constexpr uint32_t kShmPagesIdBase = 0x50000000;  // pages-N.img ids of shm contents (process ids count from 1)
constexpr size_t kPageSize = 4096;
constexpr uint64_t kMaxShmSize = 1ull << 36;
constexpr uint32_t kMaxMsgSize = 1u << 24;

std::string image_name(const char* what, uint32_t ns_id) {
  return std::string("ipcns-") + what + "-" + std::to_string(ns_id) + ".img";
}

uint64_t round_up(uint64_t v, uint64_t to) { return (v + to - 1) / to * to; }

// Runs `fn` on a thread of ours that joined the IPC namespace of `pid`. An IPC namespace belongs to a
// thread, so only that thread moves, and SysV calls and /proc/sys/kernel/*_next_id act inside it.
Status in_ipc_namespace(pid_t pid, const std::function<Status()>& fn) {
  std::string ns_path = "/proc/" + std::to_string(pid) + "/ns/ipc";
  auto ns = CR_TRY(sys::open(ns_path, O_RDONLY));
  Status st;
  std::thread t([&] {
    if (::setns(ns.get(), CLONE_NEWIPC) < 0) {
      st = fail(sys_error("setns", ns_path));
      return;
    }
    st = fn();
  });
  t.join();
  return st;
}

ipc_desc_entry desc_of(const struct ipc_perm& p, int id, const UserNs* userns) {
  ipc_desc_entry d;
  d.set_key(uint32_t(p.__key));
  auto owner = owner_in_image(userns, {p.uid, p.gid});
  auto creator = owner_in_image(userns, {p.cuid, p.cgid});
  d.set_uid(owner.uid);
  d.set_gid(owner.gid);
  d.set_cuid(creator.uid);
  d.set_cgid(creator.gid);
  d.set_mode(p.mode);
  d.set_id(uint32_t(id));
  return d;
}

std::string object_name(const char* kind, uint32_t id) { return std::string("SysV ") + kind + " " + std::to_string(id); }

Status pad(image::Writer& w, uint64_t used, uint64_t to) {
  static const char zeros[8] = {};
  uint64_t n = round_up(used, to) - used;
  return n ? w.write_raw(zeros, n) : Status{};
}

// --- dump (on the thread inside the namespace) ---

Status dump_shm(uint32_t ns_id, int dir, const UserNs* userns) {
  struct shm_info info;
  int max = ::shmctl(0, SHM_INFO, reinterpret_cast<struct shmid_ds*>(&info));
  if (max < 0) return fail(sys_error("shmctl(SHM_INFO)", "IPC namespace"));
  std::optional<image::Writer> w;
  for (int idx = 0; idx <= max; idx++) {
    struct shmid_ds ds;
    int id = ::shmctl(idx, SHM_STAT, &ds);
    if (id < 0) {
      if (errno == EINVAL) continue;  // a free slot
      return fail(sys_error("shmctl(SHM_STAT)", "shm index " + std::to_string(idx)));
    }
    std::string what = object_name("shm segment", uint32_t(id));
    if (ds.shm_perm.mode & SHM_DEST)
      return fail(make_error(Errc::unsupported, "dump", what, "a removed segment that is still attached"));
    if (ds.shm_segsz > kMaxShmSize) return fail(make_error(Errc::unsupported, "dump", what, "segment too large"));
    if (!w) w.emplace(CR_TRY(image::Writer::create(dir, image_name("shm", ns_id), image::kind(image::Type::ipcns_shm))));
    ipc_shm_entry e;
    *e.mutable_desc() = desc_of(ds.shm_perm, id, userns);
    e.set_size(ds.shm_segsz);
    e.set_in_pagemaps(true);
    CR_OK(w->write(e));
    // The segment's own shmem file, through a read-only attachment in crshim: data pages only.
    void* p = ::shmat(id, nullptr, SHM_RDONLY);
    if (p == reinterpret_cast<void*>(-1)) return fail(sys_error("shmat", what));
    uint64_t start = reinterpret_cast<uint64_t>(p), end = start + round_up(ds.shm_segsz, kPageSize);
    char range[64];
    snprintf(range, sizeof range, "%llx-%llx", (unsigned long long)start, (unsigned long long)end);
    auto fd = sys::open(std::string("/proc/self/map_files/") + range, O_RDONLY);
    Status st = fd ? mem::dump_shmem_contents(fd->get(), ds.shm_segsz, uint64_t(id), dir, kShmPagesIdBase + uint32_t(idx), what)
                   : fail(fd.error().within(what));
    ::shmdt(p);
    CR_OK(st);
  }
  return w ? w->close() : Status{};
}

Status dump_sem(uint32_t ns_id, int dir, const UserNs* userns) {
  struct seminfo info;
  int max = ::semctl(0, 0, SEM_INFO, &info);
  if (max < 0) return fail(sys_error("semctl(SEM_INFO)", "IPC namespace"));
  std::optional<image::Writer> w;
  for (int idx = 0; idx <= max; idx++) {
    struct semid_ds ds;
    int id = ::semctl(idx, 0, SEM_STAT, &ds);
    if (id < 0) {
      if (errno == EINVAL) continue;
      return fail(sys_error("semctl(SEM_STAT)", "semaphore index " + std::to_string(idx)));
    }
    std::string what = object_name("semaphore set", uint32_t(id));
    std::vector<unsigned short> values(ds.sem_nsems);
    if (::semctl(id, 0, GETALL, values.data()) < 0) return fail(sys_error("semctl(GETALL)", what));
    if (!w) w.emplace(CR_TRY(image::Writer::create(dir, image_name("sem", ns_id), image::kind(image::Type::ipcns_sem))));
    ipc_sem_entry e;
    *e.mutable_desc() = desc_of(ds.sem_perm, id, userns);
    e.set_nsems(uint32_t(ds.sem_nsems));
    CR_OK(w->write(e));
    CR_OK(w->write_raw(values.data(), values.size() * 2));
    CR_OK(pad(*w, values.size() * 2, 8));
  }
  return w ? w->close() : Status{};
}

Status dump_msg(uint32_t ns_id, int dir, const UserNs* userns) {
  struct msginfo info;
  int max = ::msgctl(0, MSG_INFO, reinterpret_cast<struct msqid_ds*>(&info));
  if (max < 0) return fail(sys_error("msgctl(MSG_INFO)", "IPC namespace"));
  std::optional<image::Writer> w;
  for (int idx = 0; idx <= max; idx++) {
    struct msqid_ds ds;
    int id = ::msgctl(idx, MSG_STAT, &ds);
    if (id < 0) {
      if (errno == EINVAL) continue;
      return fail(sys_error("msgctl(MSG_STAT)", "message queue index " + std::to_string(idx)));
    }
    std::string what = object_name("message queue", uint32_t(id));
    if (!w) w.emplace(CR_TRY(image::Writer::create(dir, image_name("msg", ns_id), image::kind(image::Type::ipcns_msg))));
    ipc_msg_entry e;
    *e.mutable_desc() = desc_of(ds.msg_perm, id, userns);
    e.set_qbytes(uint32_t(ds.msg_qbytes));
    e.set_qnum(uint32_t(ds.msg_qnum));
    CR_OK(w->write(e));
    // Every message is at most the queue's byte count long; MSG_COPY reads the n-th without taking it.
    std::vector<char> buf(sizeof(long) + ds.__msg_cbytes + 1);
    for (msgqnum_t n = 0; n < ds.msg_qnum; n++) {
      ssize_t got = ::msgrcv(id, buf.data(), buf.size() - sizeof(long), long(n), IPC_NOWAIT | MSG_COPY | MSG_NOERROR);
      if (got < 0) {
        Error err = sys_error("msgrcv(MSG_COPY)", what);
        if (errno == ENOSYS) err = err.with_hint("the kernel lacks CONFIG_CHECKPOINT_RESTORE");
        return fail(err);
      }
      ipc_msg m;
      long mtype;
      memcpy(&mtype, buf.data(), sizeof mtype);
      m.set_mtype(uint64_t(mtype));
      m.set_msize(uint32_t(got));
      CR_OK(w->write(m));
      CR_OK(w->write_raw(buf.data() + sizeof(long), size_t(got)));
      CR_OK(pad(*w, uint64_t(got), 8));
    }
  }
  return w ? w->close() : Status{};
}

// --- restore (on the thread inside the new namespace) ---

Status set_next_id(const char* what, uint32_t id) {
  std::string path = std::string("/proc/sys/kernel/") + what + "_next_id";
  auto fd = CR_TRY(sys::open(path, O_WRONLY));
  std::string v = std::to_string(id);
  if (::write(fd.get(), v.data(), v.size()) != ssize_t(v.size())) return fail(sys_error("write", path));
  return {};
}

// Runs `make` (the IPC_CREAT call) with this thread's effective ids set to the object's creator as
// the host sees it: the kernel records them as cuid/cgid, which IPC_SET cannot change. Raw syscalls
// change this thread's credentials alone (glibc's wrappers change every thread's); real and saved
// ids stay 0, so the thread becomes root again after. A creator that is root, or that the namespace
// restored into does not map, leaves the object crshim's.
int create_as_creator(const UserNs* userns, const ipc_desc_entry& d, const std::function<int()>& make) {
  auto host = owner_on_host(userns, {d.cuid(), d.cgid()}, "");
  if (!host || ::geteuid() != 0 || (host->uid == 0 && host->gid == 0)) return make();
  if (::syscall(SYS_setresgid, -1, host->gid, -1) < 0) return make();
  if (::syscall(SYS_setresuid, -1, host->uid, -1) < 0) {
    (void)::syscall(SYS_setresgid, -1, 0, -1);
    return make();
  }
  int id = make();
  int err = errno;
  (void)::syscall(SYS_setresuid, -1, 0, -1);
  (void)::syscall(SYS_setresgid, -1, 0, -1);
  errno = err;
  return id;
}

Status check_id(int got, const ipc_desc_entry& d, const std::string& what, const char* op) {
  if (got < 0) return fail(sys_error(op, what));
  if (uint32_t(got) != d.id())
    return fail(make_error(Errc::conflict, "restore", what, "created with id " + std::to_string(got) + " instead"));
  return {};
}

Status restore_shm(uint32_t ns_id, int dir, const UserNs* userns) {
  std::string name = image_name("shm", ns_id);
  auto r = image::Reader::open(dir, name, image::kind(image::Type::ipcns_shm));
  if (!r) return r.error().err == ENOENT ? Status{} : fail(r.error());
  mem::SharedMemory contents(dir);
  for (;;) {
    ipc_shm_entry e;
    bool got = CR_TRY(r->read(e));
    if (!got) break;
    const auto& d = e.desc();
    std::string what = object_name("shm segment", d.id());
    if (e.size() == 0 || e.size() > kMaxShmSize || e.hugetlb_flag())
      return fail(make_error(Errc::unsupported, "restore", what, "empty, huge or hugetlb segments are not supported"));
    CR_OK(set_next_id("shm", d.id()));
    int id = create_as_creator(userns, d, [&] { return ::shmget(key_t(d.key()), e.size(), int(d.mode() & 0777) | IPC_CREAT | IPC_EXCL); });
    CR_OK(check_id(id, d, what, "shmget"));
    struct shmid_ds ds;
    if (::shmctl(id, IPC_STAT, &ds) < 0) return fail(sys_error("shmctl(IPC_STAT)", what));
    // IPC_SET takes ids as crshim's user namespace sees them.
    auto owner = CR_TRY(owner_on_host(userns, {d.uid(), d.gid()}, what));
    ds.shm_perm.uid = owner.uid;
    ds.shm_perm.gid = owner.gid;
    ds.shm_perm.mode = (unsigned short)(d.mode() & 0777);
    if (::shmctl(id, IPC_SET, &ds) < 0) return fail(sys_error("shmctl(IPC_SET)", what));
    std::string data;
    if (e.in_pagemaps()) {
      int obj = CR_TRY(contents.object_fd(d.id(), round_up(e.size(), kPageSize)));
      data.resize(e.size());
      CR_OK(sys::pread_exact(obj, data.data(), data.size(), 0, what));
    } else {
      data = CR_TRY(r->read_raw(e.size()));
      CR_TRY(r->read_raw(round_up(e.size(), 4) - e.size()));
    }
    void* p = ::shmat(id, nullptr, 0);
    if (p == reinterpret_cast<void*>(-1)) return fail(sys_error("shmat", what));
    memcpy(p, data.data(), data.size());
    ::shmdt(p);
  }
  return {};
}

Status restore_sem(uint32_t ns_id, int dir, const UserNs* userns) {
  std::string name = image_name("sem", ns_id);
  auto r = image::Reader::open(dir, name, image::kind(image::Type::ipcns_sem));
  if (!r) return r.error().err == ENOENT ? Status{} : fail(r.error());
  for (;;) {
    ipc_sem_entry e;
    bool got = CR_TRY(r->read(e));
    if (!got) break;
    const auto& d = e.desc();
    std::string what = object_name("semaphore set", d.id());
    if (e.nsems() == 0 || e.nsems() > 65536) return fail(make_error(Errc::corrupt_image, "validate", name, "bad nsems in " + what));
    std::vector<unsigned short> values(e.nsems());
    CR_OK(r->read_raw(values.data(), values.size() * 2));
    CR_TRY(r->read_raw(round_up(values.size() * 2, 8) - values.size() * 2));
    CR_OK(set_next_id("sem", d.id()));
    int id = create_as_creator(userns, d, [&] { return ::semget(key_t(d.key()), int(e.nsems()), int(d.mode() & 0777) | IPC_CREAT | IPC_EXCL); });
    CR_OK(check_id(id, d, what, "semget"));
    if (::semctl(id, 0, SETALL, values.data()) < 0) return fail(sys_error("semctl(SETALL)", what));
    struct semid_ds ds;
    if (::semctl(id, 0, IPC_STAT, &ds) < 0) return fail(sys_error("semctl(IPC_STAT)", what));
    auto owner = CR_TRY(owner_on_host(userns, {d.uid(), d.gid()}, what));
    ds.sem_perm.uid = owner.uid;
    ds.sem_perm.gid = owner.gid;
    ds.sem_perm.mode = (unsigned short)(d.mode() & 0777);
    if (::semctl(id, 0, IPC_SET, &ds) < 0) return fail(sys_error("semctl(IPC_SET)", what));
  }
  return {};
}

Status restore_msg(uint32_t ns_id, int dir, const UserNs* userns) {
  std::string name = image_name("msg", ns_id);
  auto r = image::Reader::open(dir, name, image::kind(image::Type::ipcns_msg));
  if (!r) return r.error().err == ENOENT ? Status{} : fail(r.error());
  for (;;) {
    ipc_msg_entry e;
    bool got = CR_TRY(r->read(e));
    if (!got) break;
    const auto& d = e.desc();
    std::string what = object_name("message queue", d.id());
    CR_OK(set_next_id("msg", d.id()));
    int id = create_as_creator(userns, d, [&] { return ::msgget(key_t(d.key()), int(d.mode() & 0777) | IPC_CREAT | IPC_EXCL); });
    CR_OK(check_id(id, d, what, "msgget"));
    // Owner, mode and capacity first: the queue must hold what it held at dump.
    struct msqid_ds ds;
    if (::msgctl(id, IPC_STAT, &ds) < 0) return fail(sys_error("msgctl(IPC_STAT)", what));
    auto owner = CR_TRY(owner_on_host(userns, {d.uid(), d.gid()}, what));
    ds.msg_perm.uid = owner.uid;
    ds.msg_perm.gid = owner.gid;
    ds.msg_perm.mode = (unsigned short)(d.mode() & 0777);
    ds.msg_qbytes = e.qbytes();
    if (::msgctl(id, IPC_SET, &ds) < 0) return fail(sys_error("msgctl(IPC_SET)", what));
    for (uint32_t n = 0; n < e.qnum(); n++) {
      ipc_msg m;
      got = CR_TRY(r->read(m));
      if (!got || m.msize() > kMaxMsgSize || m.mtype() == 0 || m.mtype() > uint64_t(LONG_MAX))
        return fail(make_error(Errc::corrupt_image, "validate", name, "bad message " + std::to_string(n) + " of " + what));
      std::string buf(sizeof(long), '\0');
      long mtype = long(m.mtype());
      memcpy(buf.data(), &mtype, sizeof mtype);
      buf += CR_TRY(r->read_raw(m.msize()));
      CR_TRY(r->read_raw(round_up(m.msize(), 8) - m.msize()));
      if (::msgsnd(id, buf.data(), m.msize(), IPC_NOWAIT) < 0)
        return fail(sys_error("msgsnd", what, "message " + std::to_string(n)));
    }
  }
  return {};
}

// The owners of the objects of one image, read without making anything (contents skipped).
template <typename Entry>
Status check_owners(const char* what, image::Type type, uint32_t ns_id, int dir, const UserNs* userns,
                    const char* kind) {
  auto r = image::Reader::open(dir, image_name(what, ns_id), image::kind(type));
  if (!r) return r.error().err == ENOENT ? Status{} : fail(r.error());
  for (;;) {
    Entry e;
    if (!CR_TRY(r->read(e))) return {};
    const auto& d = e.desc();
    CR_TRY(owner_on_host(userns, {d.uid(), d.gid()}, object_name(kind, d.id())));
    // Contents are skipped; sizes the restore would refuse end the check (the restore says why).
    if constexpr (std::is_same_v<Entry, ipc_shm_entry>) {
      if (e.in_pagemaps()) continue;
      if (e.size() > kMaxShmSize) return {};
      CR_TRY(r->read_raw(round_up(e.size(), 4)));
    } else if constexpr (std::is_same_v<Entry, ipc_sem_entry>) {
      if (e.nsems() > 65536) return {};
      CR_TRY(r->read_raw(round_up(uint64_t(e.nsems()) * 2, 8)));
    } else {
      for (uint32_t n = 0; n < e.qnum(); n++) {
        ipc_msg m;
        if (!CR_TRY(r->read(m)) || m.msize() > kMaxMsgSize)
          return fail(make_error(Errc::corrupt_image, "validate", image_name(what, ns_id),
                                 "bad message " + std::to_string(n)));
        CR_TRY(r->read_raw(round_up(m.msize(), 8)));
      }
    }
  }
}

}  // namespace

Status check_ipc_owners(uint32_t ns_id, int dir, const UserNs* userns) {
  if (!userns) return {};
  CR_OK(check_owners<ipc_shm_entry>("shm", image::Type::ipcns_shm, ns_id, dir, userns, "shm segment"));
  CR_OK(check_owners<ipc_sem_entry>("sem", image::Type::ipcns_sem, ns_id, dir, userns, "semaphore set"));
  return check_owners<ipc_msg_entry>("msg", image::Type::ipcns_msg, ns_id, dir, userns, "message queue");
}

Status dump_ipc_objects(pid_t pid, uint32_t ns_id, int dir, const UserNs* userns) {
  return in_ipc_namespace(pid, [&]() -> Status {
    CR_OK(dump_shm(ns_id, dir, userns));
    CR_OK(dump_sem(ns_id, dir, userns));
    return dump_msg(ns_id, dir, userns);
  });
}

Status restore_ipc_objects(pid_t pid, uint32_t ns_id, int dir, const UserNs* userns) {
  return in_ipc_namespace(pid, [&]() -> Status {
    CR_OK(restore_shm(ns_id, dir, userns));
    CR_OK(restore_sem(ns_id, dir, userns));
    return restore_msg(ns_id, dir, userns);
  });
}

}  // namespace crshim::ns
