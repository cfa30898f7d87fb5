// Test helper: a complete single-process image set as plain messages, written with the image library.
#pragma once

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "checkpoint/base/result.h"
#include "checkpoint/base/unique_fd.h"
#include "checkpoint/image/catalog.h"
#include "checkpoint/image/image.h"
#include "core.pb.h"
#include "fdinfo.pb.h"
#include "fs.pb.h"
#include "inventory.pb.h"
#include "mm.pb.h"
#include "pagemap.pb.h"
#include "regfile.pb.h"
#include "seccomp.pb.h"
#include "stats.pb.h"
#include "tests/unit/temp_dir.h"

namespace crshim::imgtest {

using test::TempDir;

// Values the set is built from; tests look for them in decoders' output.
inline constexpr uint32_t kTestPid = 4242;
inline constexpr uint32_t kTestFilesId = 7;
inline constexpr uint32_t kTestPagesId = 1;
inline constexpr const char* kTestComm = "oracle-task";
inline constexpr uint64_t kTestIp = 0x401a2b;
inline constexpr uint64_t kTestSp = 0x7ffd00020f00;
inline constexpr uint64_t kTestTextStart = 0x400000;
inline constexpr uint64_t kTestDataStart = 0x600000;
inline constexpr uint64_t kTestHeapStart = 0x1000000;
inline constexpr uint64_t kTestStackStart = 0x7ffd00000000;
inline constexpr const char* kTestExe = "/usr/bin/oracle-task";
inline constexpr const char* kTestDataFile = "/tmp/oracle-data.txt";
// file ids in files.img
inline constexpr uint32_t kExeId = 1, kDevNullId = 2, kDataFileId = 3, kCwdId = 4, kRootId = 5;

// Everything a single-process dump writes, keyed the way file names are (pid, tid, files_id, pages_id).
struct ImageSetSpec {
  struct Pagemap {
    pagemap_head head;
    std::vector<pagemap_entry> entries;
  };
  std::optional<inventory_entry> inventory;
  std::vector<pstree_entry> pstree;
  std::map<uint32_t, core_entry> cores;
  std::map<uint32_t, task_kobj_ids_entry> ids;
  std::map<uint32_t, mm_entry> mm;
  std::map<uint32_t, Pagemap> pagemaps;
  std::map<uint32_t, std::string> pages;
  std::map<uint32_t, fs_entry> fs;
  std::map<uint32_t, std::vector<fdinfo_entry>> fdinfo;
  std::vector<file_entry> files;
  std::optional<seccomp_entry> seccomp;
  std::optional<stats_entry> stats;
};

inline file_entry make_reg_file(uint32_t id, const std::string& name, uint32_t flags, uint32_t mode) {
  file_entry fe;
  fe.set_type(REG);
  fe.set_id(id);
  reg_file_entry* r = fe.mutable_reg();
  r->set_id(id);
  r->set_flags(flags);
  r->set_pos(id == kDataFileId ? 17 : 0);
  fown_entry* o = r->mutable_fown();
  o->set_uid(0);
  o->set_euid(0);
  o->set_signum(0);
  o->set_pid_type(0);
  o->set_pid(0);
  r->set_name(name);
  r->set_mode(mode);
  return fe;
}

inline vma_entry make_vma(uint64_t start, uint64_t end, uint32_t prot, uint32_t flags, uint32_t status,
                          uint64_t shmid = 0) {
  vma_entry v;
  v.set_start(start);
  v.set_end(end);
  v.set_pgoff(0);
  v.set_shmid(shmid);
  v.set_prot(prot);
  v.set_flags(flags);
  v.set_status(status);
  v.set_fd(-1);
  return v;
}

inline pagemap_entry make_pagemap_entry(uint64_t vaddr, uint64_t nr_pages, uint32_t flags = 4) {
  pagemap_entry pe;
  pe.set_vaddr(vaddr);
  pe.set_compat_nr_pages(0);
  pe.set_flags(flags);
  pe.set_nr_pages(nr_pages);
  return pe;
}

// A live thread's core: registers, FPU, TLS; `leader` adds the task-wide part (tc) with 62 sigactions.
inline core_entry make_core(uint32_t tid, bool leader) {
  core_entry core;
  core.set_mtype(core_entry::X86_64);
  thread_info_x86* ti = core.mutable_thread_info();
  ti->set_clear_tid_addr(0x7f00000a0010 + tid);
  user_x86_regs_entry* g = ti->mutable_gpregs();
  const google::protobuf::Descriptor* d = g->GetDescriptor();
  for (int i = 0; i < d->field_count(); i++) {
    const auto* f = d->field(i);
    if (f->cpp_type() == google::protobuf::FieldDescriptor::CPPTYPE_UINT64)
      g->GetReflection()->SetUInt64(g, f, 0x1000 + uint64_t(f->number()));
  }
  g->set_ip(kTestIp);
  g->set_sp(kTestSp);
  g->set_ax(uint64_t(tid));
  g->set_cs(0x33);
  g->set_ss(0x2b);
  g->set_flags(0x246);
  g->set_mode(NATIVE);
  user_x86_fpregs_entry* fp = ti->mutable_fpregs();
  fp->set_cwd(0x37f);
  fp->set_swd(0);
  fp->set_twd(0);
  fp->set_fop(0);
  fp->set_rip(0);
  fp->set_rdp(0);
  fp->set_mxcsr(0x1f80);
  fp->set_mxcsr_mask(0xffff);
  for (int i = 0; i < 32; i++) fp->add_st_space(uint32_t(i));
  for (int i = 0; i < 64; i++) fp->add_xmm_space(uint32_t(0x100 + i));
  for (int i = 0; i < 3; i++) {
    user_desc_t* t = ti->add_tls();
    t->set_entry_number(uint32_t(12 + i));
    t->set_base_addr(0);
    t->set_limit(0);
    t->set_seg_32bit(false);
    t->set_contents_h(false);
    t->set_contents_l(false);
    t->set_read_exec_only(true);
    t->set_limit_in_pages(false);
    t->set_seg_not_present(true);
    t->set_usable(false);
  }
  if (leader) {
    task_core_entry* tc = core.mutable_tc();
    tc->set_task_state(1);
    tc->set_exit_code(0);
    tc->set_personality(0);
    tc->set_flags(0x400100);
    tc->set_blk_sigset(0x10000);
    tc->set_comm(kTestComm);
    task_timers_entry* tm = tc->mutable_timers();
    for (itimer_entry* it : {tm->mutable_real(), tm->mutable_virt(), tm->mutable_prof()}) {
      it->set_isec(0);
      it->set_iusec(0);
      it->set_vsec(0);
      it->set_vusec(0);
    }
    tm->mutable_real()->set_vsec(30);
    for (int i = 0; i < 16; i++) {
      rlimit_entry* rl = tc->mutable_rlimits()->add_rlimits();
      rl->set_cur(i == 7 ? 1024 : ~0ull);
      rl->set_max(i == 7 ? 4096 : ~0ull);
    }
    for (int sig = 1; sig <= 64; sig++) {
      if (sig == 9 || sig == 19) continue;
      sa_entry* sa = tc->add_sigactions();
      sa->set_sigaction(sig == 15 ? 0x401500 : 0);
      sa->set_flags(sig == 15 ? 0x04000000 : 0);  // SA_RESTORER
      sa->set_restorer(sig == 15 ? 0x401600 : 0);
      sa->set_mask(0);
      sa->set_compat_sigaction(false);
    }
    tc->set_loginuid(0xffffffff);
    tc->set_oom_score_adj(0);
    tc->mutable_signals_s();
  }
  thread_core_entry* tcore = core.mutable_thread_core();
  tcore->set_futex_rla(0x7f00000a0020 + tid);
  tcore->set_futex_rla_len(24);
  tcore->set_sched_nice(0);
  tcore->set_sched_policy(0);
  tcore->set_sched_prio(0);
  if (!leader) tcore->set_blk_sigset(0);
  thread_sas_entry* sas = tcore->mutable_sas();
  sas->set_ss_sp(0);
  sas->set_ss_size(0);
  sas->set_ss_flags(2);  // SS_DISABLE
  creds_entry* c = tcore->mutable_creds();
  c->set_uid(1000);
  c->set_gid(1001);
  c->set_euid(1000);
  c->set_egid(1001);
  c->set_suid(1000);
  c->set_sgid(1001);
  c->set_fsuid(1000);
  c->set_fsgid(1001);
  for (auto* caps : {c->mutable_cap_inh(), c->mutable_cap_prm(), c->mutable_cap_eff(), c->mutable_cap_amb()}) {
    caps->Add(0);
    caps->Add(0);
  }
  c->mutable_cap_bnd()->Add(0xffffffff);
  c->mutable_cap_bnd()->Add(0x1ff);
  c->set_secbits(0);
  c->add_groups(1001);
  c->set_no_new_privs(0);
  tcore->set_seccomp_mode(filter);
  tcore->set_seccomp_filter(0);
  tcore->set_comm(kTestComm);
  tcore->mutable_signals_p();
  return core;
}

// The image set of one live single-threaded process with a text mapping of its executable, data, heap
// and stack, five present pages, stdio on /dev/null, fd 3 on a data file and one seccomp filter.
inline ImageSetSpec single_process_set() {
  ImageSetSpec s;
  const uint32_t pid = kTestPid;
  inventory_entry inv;
  inv.set_img_version(2);
  inv.set_fdinfo_per_id(true);
  task_kobj_ids_entry* root = inv.mutable_root_ids();
  root->set_vm_id(1);
  root->set_files_id(2);
  root->set_fs_id(3);
  root->set_sighand_id(4);
  root->set_pid_ns_id(11);
  root->set_net_ns_id(12);
  root->set_ipc_ns_id(13);
  root->set_uts_ns_id(14);
  root->set_mnt_ns_id(15);
  root->set_user_ns_id(16);
  root->set_cgroup_ns_id(17);
  root->set_time_ns_id(18);
  inv.set_ns_per_id(true);
  inv.set_root_cg_set(1);
  inv.set_lsmtype(NO_LSM);
  inv.set_network_lock_method(2);
  inv.mutable_plugins_entry();
  inv.set_dump_criu_run_id("crshim-test-run");
  s.inventory = inv;

  pstree_entry ps;
  ps.set_pid(pid);
  ps.set_ppid(0);
  ps.set_pgid(pid);
  ps.set_sid(pid);
  ps.add_threads(pid);
  s.pstree.push_back(ps);

  s.cores[pid] = make_core(pid, true);

  task_kobj_ids_entry ids = *root;
  ids.set_vm_id(5);
  ids.set_files_id(kTestFilesId);
  ids.set_fs_id(8);
  ids.set_sighand_id(9);
  s.ids[pid] = ids;

  s.files.push_back(make_reg_file(kExeId, kTestExe, O_RDONLY, 0100755));
  s.files.push_back(make_reg_file(kDevNullId, "/dev/null", O_RDWR, 020666));
  s.files.push_back(make_reg_file(kDataFileId, kTestDataFile, O_RDWR | O_APPEND, 0100644));
  s.files.push_back(make_reg_file(kCwdId, "/tmp", O_RDONLY, 040777));
  s.files.push_back(make_reg_file(kRootId, "/", O_RDONLY, 040755));

  mm_entry mm;
  mm.set_mm_start_code(kTestTextStart);
  mm.set_mm_end_code(kTestTextStart + 0x2000);
  mm.set_mm_start_data(kTestDataStart);
  mm.set_mm_end_data(kTestDataStart + 0x1000);
  mm.set_mm_start_stack(kTestStackStart + 0x20ff0);
  mm.set_mm_start_brk(kTestHeapStart);
  mm.set_mm_brk(kTestHeapStart + 0x21000);
  mm.set_mm_arg_start(kTestStackStart + 0x20100);
  mm.set_mm_arg_end(kTestStackStart + 0x20200);
  mm.set_mm_env_start(kTestStackStart + 0x20200);
  mm.set_mm_env_end(kTestStackStart + 0x20f00);
  mm.set_exe_file_id(kExeId);
  const uint64_t auxv[] = {6, 4096, 3, kTestTextStart + 0x40, 9, kTestIp};  // AT_PAGESZ, AT_PHDR, AT_ENTRY
  for (int i = 0; i < 44; i++) mm.add_mm_saved_auxv(i < 6 ? auxv[i] : 0);
  constexpr uint32_t r = 1, w = 2, x = 4;
  constexpr uint32_t priv = 0x2, anon = 0x20, growsdown = 0x100;
  *mm.add_vmas() = make_vma(kTestTextStart, kTestTextStart + 0x2000, r | x, priv, 0x41, kExeId);
  *mm.add_vmas() = make_vma(kTestDataStart, kTestDataStart + 0x2000, r | w, priv | anon, 0x201);
  *mm.add_vmas() = make_vma(kTestHeapStart, kTestHeapStart + 0x21000, r | w, priv | anon, 0x221);
  *mm.add_vmas() = make_vma(kTestStackStart, kTestStackStart + 0x21000, r | w, priv | anon | growsdown, 0x201);
  mm.set_dumpable(1);
  mm.set_thp_disabled(false);
  s.mm[pid] = mm;

  ImageSetSpec::Pagemap pm;
  pm.head.set_pages_id(kTestPagesId);
  pm.entries.push_back(make_pagemap_entry(kTestDataStart, 2));
  pm.entries.push_back(make_pagemap_entry(kTestHeapStart, 1));
  pm.entries.push_back(make_pagemap_entry(kTestStackStart + 0x1f000, 2));
  s.pagemaps[pid] = pm;
  std::string pages(5 * 4096, '\0');
  for (size_t i = 0; i < pages.size(); i++) pages[i] = char('a' + (i / 4096));
  s.pages[kTestPagesId] = pages;

  fs_entry fs;
  fs.set_cwd_id(kCwdId);
  fs.set_root_id(kRootId);
  fs.set_umask(022);
  s.fs[pid] = fs;

  auto fd = [](uint32_t id, uint32_t num, uint32_t flags) {
    fdinfo_entry e;
    e.set_id(id);
    e.set_flags(flags);
    e.set_type(REG);
    e.set_fd(num);
    return e;
  };
  s.fdinfo[kTestFilesId] = {fd(kDevNullId, 0, 0), fd(kDevNullId, 1, 0), fd(kDevNullId, 2, 0), fd(kDataFileId, 3, 1)};

  seccomp_entry sc;
  seccomp_filter* f = sc.add_seccomp_filters();
  const unsigned char allow[8] = {0x06, 0, 0, 0, 0, 0, 0xff, 0x7f};  // BPF_RET|BPF_K, SECCOMP_RET_ALLOW
  f->set_filter(std::string(reinterpret_cast<const char*>(allow), sizeof allow));
  s.seccomp = sc;

  stats_entry st;
  dump_stats_entry* ds = st.mutable_dump();
  ds->set_freezing_time(120);
  ds->set_frozen_time(3400);
  ds->set_memdump_time(800);
  ds->set_memwrite_time(200);
  ds->set_pages_scanned(73);
  ds->set_pages_skipped_parent(0);
  ds->set_pages_written(5);
  ds->set_pages_lazy(0);
  s.stats = st;
  return s;
}

namespace detail {

inline Status write_all_of(int dir, const std::string& name, image::Type type,
                           const std::vector<const google::protobuf::Message*>& msgs) {
  auto w = CR_TRY(image::Writer::create(dir, name, image::kind(type)));
  for (const auto* m : msgs) CR_OK(w.write(*m));
  return w.close();
}

}  // namespace detail

// Writes every image of `s` into dir through image::Writer, with CRIU's file names.
inline Status write_image_set(int dir, const ImageSetSpec& s) {
  using image::Type;
  using detail::write_all_of;
  if (s.inventory) CR_OK(write_all_of(dir, image::kInventoryFile, Type::inventory, {&*s.inventory}));
  {
    std::vector<const google::protobuf::Message*> v;
    for (const auto& p : s.pstree) v.push_back(&p);
    CR_OK(write_all_of(dir, image::kPstreeFile, Type::pstree, v));
  }
  for (const auto& [tid, core] : s.cores) CR_OK(write_all_of(dir, image::core_file(tid), Type::core, {&core}));
  for (const auto& [pid, ids] : s.ids) CR_OK(write_all_of(dir, image::ids_file(pid), Type::ids, {&ids}));
  for (const auto& [pid, mm] : s.mm) CR_OK(write_all_of(dir, image::mm_file(pid), Type::mm, {&mm}));
  for (const auto& [pid, pm] : s.pagemaps) {
    std::vector<const google::protobuf::Message*> v{&pm.head};
    for (const auto& e : pm.entries) v.push_back(&e);
    CR_OK(write_all_of(dir, image::pagemap_file(pid), Type::pagemap, v));
  }
  for (const auto& [id, data] : s.pages) {
    auto w = CR_TRY(image::Writer::create_raw(dir, image::pages_file(id)));
    CR_OK(w.write_raw(data));
    CR_OK(w.close());
  }
  for (const auto& [pid, fs] : s.fs) CR_OK(write_all_of(dir, image::fs_file(pid), Type::fs, {&fs}));
  for (const auto& [files_id, fds] : s.fdinfo) {
    std::vector<const google::protobuf::Message*> v;
    for (const auto& e : fds) v.push_back(&e);
    CR_OK(write_all_of(dir, image::fdinfo_file(files_id), Type::fdinfo, v));
  }
  {
    std::vector<const google::protobuf::Message*> v;
    for (const auto& f : s.files) v.push_back(&f);
    CR_OK(write_all_of(dir, image::kFilesFile, Type::files, v));
  }
  if (s.seccomp) CR_OK(write_all_of(dir, image::kSeccompFile, Type::seccomp, {&*s.seccomp}));
  if (s.stats) CR_OK(write_all_of(dir, image::kStatsDumpFile, Type::stats, {&*s.stats}));
  return {};
}

}  // namespace crshim::imgtest
