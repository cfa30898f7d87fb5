#include "checkpoint/kernel/proc.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/auxv.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <string>
#include <thread>

#include "checkpoint/base/sys.h"

namespace crshim::proc {
namespace {

std::string fixture(const std::string& name) {
  auto text = sys::read_file(std::string(CRSHIM_FIXTURES_DIR) + "/proc/" + name);
  EXPECT_TRUE(text.has_value()) << (text ? "" : text.error().render());
  return text ? *text : std::string();
}

// The error is a parse error naming `object` ("/proc/42/maps line 2").
void expect_parse_error(const Error& e, const std::string& object) {
  EXPECT_EQ(e.op, "parse");
  EXPECT_EQ(e.object, object);
  EXPECT_FALSE(e.message.empty());
}

// ---- maps ----------------------------------------------------------------------------------------

TEST(ProcMaps, FixtureGivesEveryVmaWithPermsOffsetsDevicesAndPaths) {
  auto maps = parse_maps(fixture("maps"));
  ASSERT_TRUE(maps) << maps.error().render();
  ASSERT_EQ(maps->size(), 33u);

  const Vma& exe = (*maps)[0];
  EXPECT_EQ(exe.start, 0x55db3f032000u);
  EXPECT_EQ(exe.end, 0x55db3f033000u);
  EXPECT_EQ(exe.size(), 0x1000u);
  EXPECT_EQ(exe.prot, PROT_READ);
  EXPECT_FALSE(exe.shared);
  EXPECT_EQ(exe.pgoff, 0u);
  EXPECT_EQ(exe.dev_major, 0xfeu);
  EXPECT_EQ(exe.dev_minor, 0u);
  EXPECT_EQ(exe.inode, 10953158u);
  EXPECT_EQ(exe.path, "/tmp/build-proc-fix/gen");
  EXPECT_FALSE(exe.deleted);

  EXPECT_EQ((*maps)[1].prot, PROT_READ | PROT_EXEC);
  EXPECT_EQ((*maps)[1].pgoff, 0x1000u);
  EXPECT_EQ((*maps)[4].prot, PROT_READ | PROT_WRITE);
  EXPECT_TRUE((*maps)[5].is_heap());

  const Vma& anon = (*maps)[6];
  EXPECT_EQ(anon.path, "");
  EXPECT_EQ(anon.inode, 0u);
  EXPECT_FALSE(anon.is_special());

  const Vma& shm = (*maps)[20];
  EXPECT_TRUE(shm.shared);
  EXPECT_EQ(shm.path, "/dev/zero");
  EXPECT_TRUE(shm.deleted);
  EXPECT_EQ(shm.dev_major, 0u);
  EXPECT_EQ(shm.dev_minor, 1u);
  EXPECT_EQ(shm.inode, 1024u);

  const Vma& lib = (*maps)[21];
  EXPECT_EQ(lib.path, "/tmp/dir with space/lib file.so");
  EXPECT_TRUE(lib.deleted);
  EXPECT_EQ(lib.pgoff, 0x1000u);
  EXPECT_EQ(lib.inode, 10953155u);

  // This kernel (6.13+) has the vDSO trio.
  EXPECT_TRUE((*maps)[23].is_vvar());
  EXPECT_EQ((*maps)[23].size(), 0x4000u);
  EXPECT_TRUE((*maps)[24].is_vvar_vclock());
  EXPECT_EQ((*maps)[24].size(), 0x2000u);
  EXPECT_TRUE((*maps)[25].is_vdso());
  EXPECT_EQ((*maps)[25].prot, PROT_READ | PROT_EXEC);
  EXPECT_EQ((*maps)[25].start, 0x7f0d52f3d000u);

  EXPECT_TRUE((*maps)[31].is_stack());
  const Vma& vsys = (*maps)[32];
  EXPECT_TRUE(vsys.is_vsyscall());
  EXPECT_EQ(vsys.start, 0xffffffffff600000u);
  EXPECT_EQ(vsys.prot, PROT_EXEC);
}

TEST(ProcMaps, AnonNameIsExposedAndEscapedNewlineDecoded) {
  auto maps = parse_maps(
      "7f0000000000-7f0000002000 rw-p 00000000 00:00 0                          [anon:my buffer]\n"
      "7f0000002000-7f0000003000 rw-s 00000000 00:01 77                         [anon_shmem:x]\n"
      "7f0000003000-7f0000004000 r--p 00000000 08:01 12                         /tmp/a\\012b (deleted)\n");
  ASSERT_TRUE(maps) << maps.error().render();
  ASSERT_EQ(maps->size(), 3u);
  ASSERT_TRUE((*maps)[0].anon_name());
  EXPECT_EQ(*(*maps)[0].anon_name(), "my buffer");
  EXPECT_TRUE((*maps)[0].is_special());
  EXPECT_FALSE((*maps)[1].anon_name());
  EXPECT_EQ((*maps)[2].path, "/tmp/a\nb");
  EXPECT_TRUE((*maps)[2].deleted);
}

TEST(ProcMaps, EmptyFileIsAnEmptyAddressSpace) {
  // Zombies and kernel threads have an empty maps file: not an error.
  auto maps = parse_maps("");
  ASSERT_TRUE(maps);
  EXPECT_TRUE(maps->empty());
}

TEST(ProcMaps, MalformedLinesAreErrorsNamingTheLine) {
  const std::string good = "55db3f032000-55db3f033000 r--p 00000000 fe:00 10953158   /bin/x\n";
  struct Case {
    const char* line;
    const char* why;
  } cases[] = {
      {"55db3f033000-55db3f034000 r--p 0000", "truncated line"},
      {"55db3f033000-55db3f034zzz r--p 00000000 fe:00 1 /x", "garbage address"},
      {"55db3f033000 r--p 00000000 fe:00 1 /x", "no range dash"},
      {"55db3f034000-55db3f033000 r--p 00000000 fe:00 1 /x", "reversed range"},
      {"55db3f033000-55db3f034000 rwzp 00000000 fe:00 1 /x", "bad perms"},
      {"55db3f033000-55db3f034000 r--q 00000000 fe:00 1 /x", "bad share flag"},
      {"55db3f033000-55db3f034000 r--p 0000g000 fe:00 1 /x", "garbage offset"},
      {"55db3f033000-55db3f034000 r--p 00000000 fe00 1 /x", "bad device"},
      {"55db3f033000-55db3f034000 r--p 00000000 fe:00 -1 /x", "negative inode"},
      {"55db3f033000-55db3f034000 r--p 00000000 fe:00 99999999999999999999999 /x", "inode overflow"},
      {"55db3f032000-55db3f034000 r--p 00000000 fe:00 1 /x", "overlaps the previous VMA"},
  };
  for (const auto& c : cases) {
    auto maps = parse_maps(good + c.line + "\n", "/proc/42/maps");
    ASSERT_FALSE(maps) << c.why;
    expect_parse_error(maps.error(), "/proc/42/maps line 2");
  }
}

// ---- smaps ---------------------------------------------------------------------------------------

TEST(ProcSmaps, FixturePairsEveryVmaWithItsVmFlags) {
  auto smaps = parse_smaps(fixture("smaps"));
  ASSERT_TRUE(smaps) << smaps.error().render();
  ASSERT_EQ(smaps->size(), 15u);

  const auto& exe = (*smaps)[0];
  EXPECT_EQ(exe.vma.path, "/tmp/build-proc-fix/gen");
  EXPECT_EQ(exe.vm_flags, vm_bit(VmFlag::rd) | vm_bit(VmFlag::mr) | vm_bit(VmFlag::mw) | vm_bit(VmFlag::me));
  EXPECT_EQ(exe.size_kb, 4u);
  EXPECT_EQ(exe.rss_kb, 4u);
  EXPECT_TRUE(exe.unknown_flags.empty());

  // The anonymous areas the capture program madvise()d, one flag each.
  const VmFlag expected[] = {VmFlag::hg, VmFlag::nh, VmFlag::dd, VmFlag::dc, VmFlag::wf, VmFlag::mg, VmFlag::lo};
  for (size_t i = 0; i < std::size(expected); ++i) {
    const auto& e = (*smaps)[1 + i];
    EXPECT_EQ(e.vma.start, 0x7f0d52d35000u + i * 0x2000) << i;
    EXPECT_TRUE(e.has(expected[i])) << vm_flag_name(expected[i]);
    EXPECT_TRUE(e.has(VmFlag::rd) && e.has(VmFlag::wr) && e.has(VmFlag::ac)) << i;
    EXPECT_EQ(e.rss_kb, 8u) << i;
    EXPECT_EQ(e.anonymous_kb, 8u) << i;
    EXPECT_EQ(e.swap_kb, 0u) << i;
  }
  EXPECT_FALSE((*smaps)[1].has(VmFlag::nh));

  const auto& shm = (*smaps)[8];
  EXPECT_EQ(shm.vma.path, "/dev/zero");
  EXPECT_TRUE(shm.has(VmFlag::sh));
  EXPECT_TRUE(shm.has(VmFlag::ms));

  const auto& vvar = (*smaps)[10];
  EXPECT_TRUE(vvar.vma.is_vvar());
  EXPECT_EQ(vvar.vm_flags, vm_bit(VmFlag::rd) | vm_bit(VmFlag::mr) | vm_bit(VmFlag::pf) | vm_bit(VmFlag::io) |
                               vm_bit(VmFlag::de) | vm_bit(VmFlag::dd));
  EXPECT_TRUE((*smaps)[11].vma.is_vvar_vclock());
  EXPECT_TRUE((*smaps)[12].vma.is_vdso());
  EXPECT_TRUE((*smaps)[12].has(VmFlag::ex));
  EXPECT_TRUE((*smaps)[13].has(VmFlag::gd));
  EXPECT_EQ((*smaps)[14].vm_flags, vm_bit(VmFlag::ex));
}

TEST(ProcSmaps, MadviseMapsTheRestorableFlags) {
  EXPECT_EQ(madvise_for(vm_bit(VmFlag::hg) | vm_bit(VmFlag::rd)), std::vector<int>{MADV_HUGEPAGE});
  EXPECT_EQ(madvise_for(vm_bit(VmFlag::nh)), std::vector<int>{MADV_NOHUGEPAGE});
  EXPECT_EQ(madvise_for(vm_bit(VmFlag::dd) | vm_bit(VmFlag::dc) | vm_bit(VmFlag::wf) | vm_bit(VmFlag::mg)),
            (std::vector<int>{MADV_DONTDUMP, MADV_DONTFORK, MADV_WIPEONFORK, MADV_MERGEABLE}));
  EXPECT_TRUE(madvise_for(vm_bit(VmFlag::rd) | vm_bit(VmFlag::wr) | vm_bit(VmFlag::lo)).empty());
  EXPECT_EQ(madvise_flags().size(), 6u);
  EXPECT_STREQ(vm_flag_name(VmFlag::wf), "wf");
  EXPECT_EQ(vm_flag_from_name("bt"), VmFlag::bt);
  EXPECT_FALSE(vm_flag_from_name("qq"));
}

TEST(ProcSmaps, UnknownCodesAreKeptNotFatal) {
  std::vector<std::string> unknown;
  auto bits = parse_vm_flags("rd wr zz ss ", "smaps", &unknown);
  ASSERT_TRUE(bits);
  EXPECT_EQ(*bits, vm_bit(VmFlag::rd) | vm_bit(VmFlag::wr) | vm_bit(VmFlag::ss));
  EXPECT_EQ(unknown, std::vector<std::string>{"zz"});
}

TEST(ProcSmaps, MalformedInputIsAnError) {
  const std::string header = "7f0d52d35000-7f0d52d37000 rw-p 00000000 00:00 0 \n";
  auto no_flags = parse_smaps(header + "Rss:                   8 kB\n" + header.substr(0, 0) +
                                  "7f0d52d37000-7f0d52d39000 rw-p 00000000 00:00 0 \nVmFlags: rd \n",
                              "/proc/7/smaps");
  ASSERT_FALSE(no_flags);
  expect_parse_error(no_flags.error(), "/proc/7/smaps line 1");

  auto bad_rss = parse_smaps(header + "Rss:                   8x kB\nVmFlags: rd\n", "/proc/7/smaps");
  ASSERT_FALSE(bad_rss);
  expect_parse_error(bad_rss.error(), "/proc/7/smaps line 2");

  auto bad_code = parse_smaps(header + "VmFlags: rd wrx\n", "/proc/7/smaps");
  ASSERT_FALSE(bad_code);
  expect_parse_error(bad_code.error(), "/proc/7/smaps line 2");

  auto orphan = parse_smaps("Rss: 4 kB\n", "/proc/7/smaps");
  ASSERT_FALSE(orphan);
  expect_parse_error(orphan.error(), "/proc/7/smaps line 1");

  auto truncated = parse_smaps(header + "Size:       8 kB\nRss", "/proc/7/smaps");
  ASSERT_FALSE(truncated);
  expect_parse_error(truncated.error(), "/proc/7/smaps line 3");

  auto last_without_flags = parse_smaps(header + "Size:       8 kB\n", "/proc/7/smaps");
  ASSERT_FALSE(last_without_flags);

  auto empty = parse_smaps("");
  ASSERT_TRUE(empty);
  EXPECT_TRUE(empty->empty());
}

// ---- stat ----------------------------------------------------------------------------------------

TEST(ProcStat, FixtureCommWithParenthesesAndAllFields) {
  auto st = parse_stat(fixture("stat"));
  ASSERT_TRUE(st) << st.error().render();
  EXPECT_EQ(st->pid, 5152);
  EXPECT_EQ(st->comm, "w) (x) y z");
  EXPECT_EQ(st->state, 'S');
  EXPECT_EQ(st->ppid, 1);
  EXPECT_EQ(st->pgrp, 5142);
  EXPECT_EQ(st->session, 4017);
  EXPECT_EQ(st->tty_nr, 0);
  EXPECT_EQ(st->tpgid, -1);
  EXPECT_EQ(st->flags, 4194304u);
  EXPECT_EQ(st->minflt, 135u);
  EXPECT_EQ(st->priority, 20);
  EXPECT_EQ(st->num_threads, 1);
  EXPECT_EQ(st->starttime, 24706u);
  EXPECT_EQ(st->vsize, 2617344u);
  EXPECT_EQ(st->rss, 396);
  EXPECT_EQ(st->rsslim, UINT64_MAX);
  EXPECT_EQ(st->start_code, 94400143372288u);
  EXPECT_EQ(st->end_code, 94400143374097u);
  EXPECT_EQ(st->start_stack, 140729485558144u);
  EXPECT_EQ(st->sigignore, 6u);
  EXPECT_EQ(st->exit_signal, 17);
  EXPECT_EQ(st->processor, 1);
  EXPECT_EQ(st->policy, 0u);
  EXPECT_EQ(st->start_data, 94400143384016u);
  EXPECT_EQ(st->end_data, 94400143384784u);
  EXPECT_EQ(st->start_brk, 94400743251968u);
  EXPECT_EQ(st->arg_start, 140729485564368u);
  EXPECT_EQ(st->arg_end, 140729485564374u);
  EXPECT_EQ(st->env_start, 140729485564374u);
  EXPECT_EQ(st->env_end, 140729485565938u);
  EXPECT_EQ(st->exit_code, 0);
}

TEST(ProcStat, MalformedInputIsAnError) {
  std::string good = fixture("stat");
  ASSERT_FALSE(good.empty());
  EXPECT_FALSE(parse_stat(""));
  EXPECT_FALSE(parse_stat("\n"));
  EXPECT_FALSE(parse_stat("5152 w S 1 2 3"));  // no parentheses
  // Truncated after field 30.
  size_t cut = good.find(" 0 0 0 6 0 1");
  ASSERT_NE(cut, std::string::npos);
  auto truncated = parse_stat(good.substr(0, cut), "/proc/5152/stat");
  ASSERT_FALSE(truncated);
  EXPECT_EQ(truncated.error().object, "/proc/5152/stat");
  EXPECT_NE(truncated.error().message.find("fields"), std::string::npos);
  // Garbage in rss (field 24).
  std::string garbage = good;
  garbage.replace(garbage.find(" 396 "), 5, " 3x6 ");
  auto bad = parse_stat(garbage);
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("field 24 (rss)"), std::string::npos) << bad.error().message;
  // Bad state.
  std::string state = good;
  state.replace(state.rfind(") S ") + 2, 1, "SS");
  EXPECT_FALSE(parse_stat(state));
}

// ---- status --------------------------------------------------------------------------------------

TEST(ProcStatus, FixtureValues) {
  auto st = parse_status(fixture("status"));
  ASSERT_TRUE(st) << st.error().render();
  EXPECT_EQ(st->name, "w) (x) y z");
  ASSERT_TRUE(st->umask);
  EXPECT_EQ(*st->umask, 022u);
  EXPECT_EQ(st->state, 'S');
  EXPECT_EQ(st->tgid, 5152);
  EXPECT_EQ(st->pid, 5152);
  EXPECT_EQ(st->ppid, 1);
  EXPECT_EQ(st->tracer_pid, 0);
  EXPECT_EQ(st->uid, (std::array<uint32_t, 4>{0, 0, 0, 0}));
  EXPECT_EQ(st->fdsize, 256);
  EXPECT_TRUE(st->groups.empty());
  EXPECT_EQ(st->nstgid, std::vector<int>{5152});
  EXPECT_EQ(st->nspgid, std::vector<int>{5142});
  EXPECT_EQ(st->nssid, std::vector<int>{4017});
  EXPECT_EQ(st->threads, 1);
  EXPECT_EQ(st->sigq_queued, 0u);
  EXPECT_EQ(st->sigq_limit, 96365u);
  EXPECT_EQ(st->sigign, 6u);
  EXPECT_EQ(st->sigblk, 0u);
  EXPECT_EQ(st->cap_eff, 0x1fffeffffffu);
  EXPECT_EQ(st->cap_bnd, 0x1fffeffffffu);
  EXPECT_EQ(st->cap_amb, 0u);
  EXPECT_EQ(st->no_new_privs, 0);
  EXPECT_EQ(st->seccomp, 0);
  EXPECT_EQ(st->speculation_store_bypass, "vulnerable");
  EXPECT_EQ(st->cpus_allowed_list, "0-1");
}

TEST(ProcStatus, NestedPidNamespaceAndGroups) {
  auto st = parse_status(fixture("status-nested"));
  ASSERT_TRUE(st) << st.error().render();
  EXPECT_EQ(st->name, "sleep");
  EXPECT_EQ(st->uid, (std::array<uint32_t, 4>{1000, 1000, 1000, 1000}));
  EXPECT_EQ(st->gid, (std::array<uint32_t, 4>{1000, 1000, 1000, 1000}));
  EXPECT_EQ(st->groups, (std::vector<uint32_t>{4, 24, 27}));
  EXPECT_EQ(st->nspid, (std::vector<int>{5602, 1}));
  EXPECT_EQ(st->nstgid, (std::vector<int>{5602, 1}));
  EXPECT_EQ(st->nspgid, (std::vector<int>{5597, 0}));
  EXPECT_EQ(st->cap_eff, 0u);
  EXPECT_EQ(st->cap_bnd, 0x1fffeffffffu);
}

TEST(ProcStatus, NameEscapesAreDecodedAndTrailingSpacesKept) {
  auto st = parse_status("Name:\ta\\nb\\\\c \nState:\tR (running)\nTgid:\t1\nPid:\t1\nPPid:\t0\n"
                         "Uid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\n");
  ASSERT_TRUE(st) << st.error().render();
  EXPECT_EQ(st->name, "a\nb\\c ");
  EXPECT_FALSE(st->umask);
}

TEST(ProcStatus, MalformedInputIsAnError) {
  std::string good = fixture("status");
  auto empty = parse_status("", "/proc/9/status");
  ASSERT_FALSE(empty);
  expect_parse_error(empty.error(), "/proc/9/status");

  std::string bad_cap = good;
  bad_cap.replace(bad_cap.find("CapEff:\t000001fffeffffff"), 24, "CapEff:\t00000zzzfeffffff");
  auto cap = parse_status(bad_cap, "/proc/9/status");
  ASSERT_FALSE(cap);
  EXPECT_EQ(cap.error().object.rfind("/proc/9/status line ", 0), 0u);

  std::string three_uids = good;
  three_uids.replace(three_uids.find("Uid:\t0\t0\t0\t0"), 12, "Uid:\t0\t0\t0");
  EXPECT_FALSE(parse_status(three_uids));

  auto no_colon = parse_status(good + "garbage line\n", "/proc/9/status");
  ASSERT_FALSE(no_colon);
  expect_parse_error(no_colon.error(), "/proc/9/status line 60");

  // Truncated in the middle: PPid and later required lines are gone.
  EXPECT_FALSE(parse_status(good.substr(0, good.find("PPid"))));
}

// ---- limits --------------------------------------------------------------------------------------

TEST(ProcLimits, FixtureValuesInRlimitOrder) {
  auto lim = parse_limits(fixture("limits"));
  ASSERT_TRUE(lim) << lim.error().render();
  EXPECT_EQ((*lim)[RLIMIT_CPU].cur, RLIM_INFINITY);
  EXPECT_EQ((*lim)[RLIMIT_STACK].cur, 8388608u);
  EXPECT_EQ((*lim)[RLIMIT_STACK].max, RLIM_INFINITY);
  EXPECT_EQ((*lim)[RLIMIT_CORE].cur, 0u);
  EXPECT_EQ((*lim)[RLIMIT_CORE].max, RLIM_INFINITY);
  EXPECT_EQ((*lim)[RLIMIT_NPROC].cur, 96365u);
  EXPECT_EQ((*lim)[RLIMIT_NOFILE].cur, 20000u);
  EXPECT_EQ((*lim)[RLIMIT_NOFILE].max, 20000u);
  EXPECT_EQ((*lim)[RLIMIT_MEMLOCK].max, 8388608u);
  EXPECT_EQ((*lim)[RLIMIT_SIGPENDING].cur, 96365u);
  EXPECT_EQ((*lim)[RLIMIT_MSGQUEUE].cur, 819200u);
  EXPECT_EQ((*lim)[RLIMIT_NICE].cur, 0u);
  EXPECT_EQ((*lim)[RLIMIT_RTPRIO].max, 0u);
  EXPECT_EQ((*lim)[RLIMIT_RTTIME].cur, RLIM_INFINITY);
  EXPECT_STREQ(rlimit_line_name(RLIMIT_RTPRIO), "Max realtime priority");
  EXPECT_EQ(rlimit_line_name(16), nullptr);
}

TEST(ProcLimits, MalformedInputIsAnError) {
  std::string good = fixture("limits");
  EXPECT_FALSE(parse_limits(""));
  auto missing = parse_limits(good.substr(0, good.find("Max realtime timeout")), "/proc/3/limits");
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message.find("Max realtime timeout"), std::string::npos);

  std::string garbage = good;
  garbage.replace(garbage.find("20000 "), 6, "2x000 ");
  auto bad = parse_limits(garbage, "/proc/3/limits");
  ASSERT_FALSE(bad);
  expect_parse_error(bad.error(), "/proc/3/limits line 9");

  auto unknown = parse_limits(good + "Max fun                   1                    1                    \n");
  EXPECT_FALSE(unknown);
  auto dup = parse_limits(good + "Max cpu time              1                    1                    seconds\n");
  EXPECT_FALSE(dup);
}

// ---- auxv ----------------------------------------------------------------------------------------

TEST(ProcAuxv, FixtureEntriesUpToAtNull) {
  auto auxv = parse_auxv(fixture("auxv"));
  ASSERT_TRUE(auxv) << auxv.error().render();
  ASSERT_EQ(auxv->size(), 22u);
  EXPECT_EQ((*auxv)[0].type, uint64_t(AT_SYSINFO_EHDR));
  EXPECT_EQ((*auxv)[0].value, 0x7f0d52f3d000u);  // the [vdso] start in the maps fixture
  auto find = [&](uint64_t type) -> uint64_t {
    for (auto& e : *auxv)
      if (e.type == type) return e.value;
    return ~0ull;
  };
  EXPECT_EQ(find(AT_PAGESZ), 4096u);
  EXPECT_EQ(find(AT_PHDR), 0x55db3f032040u);
  EXPECT_EQ(find(AT_ENTRY), 0x55db3f0331c0u);
  EXPECT_EQ(find(AT_MINSIGSTKSZ), 0xd30u);
}

TEST(ProcAuxv, MalformedInputIsAnError) {
  std::string good = fixture("auxv");
  EXPECT_FALSE(parse_auxv(""));
  EXPECT_FALSE(parse_auxv(good.substr(0, good.size() - 1)));   // not a multiple of 16
  EXPECT_FALSE(parse_auxv(good.substr(0, good.size() - 16)));  // AT_NULL cut off
}

// ---- mountinfo -----------------------------------------------------------------------------------

TEST(ProcMountinfo, FixturePropagationAndEscapes) {
  auto mi = parse_mountinfo(fixture("mountinfo"));
  ASSERT_TRUE(mi) << mi.error().render();
  ASSERT_EQ(mi->size(), 11u);
  const auto& root = (*mi)[0];
  EXPECT_EQ(root.mnt_id, 43);
  EXPECT_EQ(root.parent_id, 42);
  EXPECT_EQ(root.major, 254u);
  EXPECT_EQ(root.minor, 0u);
  EXPECT_EQ(root.root, "/");
  EXPECT_EQ(root.mount_point, "/");
  EXPECT_EQ(root.options, "rw,relatime");
  EXPECT_TRUE(root.optional_fields.empty());
  EXPECT_EQ(root.fstype, "ext4");
  EXPECT_EQ(root.source, "/dev/vda");
  EXPECT_EQ(root.super_options, "rw,discard,resv_strict,resuid=65534,resgid=65534");

  const auto& shared = (*mi)[7];
  EXPECT_EQ(shared.mount_point, "/tmp/build-proc-fix/mp x");
  EXPECT_EQ(shared.source, "my src");
  EXPECT_EQ(shared.shared, 1);
  EXPECT_EQ(shared.master, 0);
  EXPECT_EQ(shared.optional_fields, std::vector<std::string>{"shared:1"});
  EXPECT_EQ(shared.major, 0u);
  EXPECT_EQ(shared.minor, 39u);

  const auto& slave = (*mi)[8];
  EXPECT_EQ(slave.master, 1);
  EXPECT_EQ(slave.shared, 0);

  EXPECT_TRUE((*mi)[9].unbindable);
  EXPECT_EQ((*mi)[9].source, "none");

  const auto& bind = (*mi)[10];
  EXPECT_EQ(bind.root, "/sub dir");
  EXPECT_EQ(bind.options, "ro,relatime");
  EXPECT_EQ(bind.shared, 1);
}

TEST(ProcMountinfo, PropagateFromAndSeveralOptionalFields) {
  auto mi = parse_mountinfo("70 43 0:39 / /a\\134b rw master:2 propagate_from:1 - tmpfs x\\011y rw\n");
  ASSERT_TRUE(mi) << mi.error().render();
  EXPECT_EQ((*mi)[0].master, 2);
  EXPECT_EQ((*mi)[0].propagate_from, 1);
  EXPECT_EQ((*mi)[0].mount_point, "/a\\b");
  EXPECT_EQ((*mi)[0].source, "x\ty");
  EXPECT_EQ(decode_octal_escapes("a\\040b\\04"), "a b\\04");
}

TEST(ProcMountinfo, MalformedInputIsAnError) {
  EXPECT_FALSE(parse_mountinfo(""));
  auto no_sep = parse_mountinfo("43 42 254:0 / / rw,relatime ext4 /dev/vda rw\n", "/proc/1/mountinfo");
  ASSERT_FALSE(no_sep);
  expect_parse_error(no_sep.error(), "/proc/1/mountinfo line 1");
  EXPECT_FALSE(parse_mountinfo("43 42 254x0 / / rw - ext4 /dev/vda rw\n"));
  EXPECT_FALSE(parse_mountinfo("4x 42 254:0 / / rw - ext4 /dev/vda rw\n"));
  EXPECT_FALSE(parse_mountinfo("43 42 254:0 / / rw shared:abc - ext4 /dev/vda rw\n"));
  EXPECT_FALSE(parse_mountinfo("43 42 254:0 / / rw - ext4 /dev/vda\n"));  // truncated
  EXPECT_FALSE(parse_mountinfo("43 42 254:0 / / rw - ext4 /dev/vda rw extra\n"));
}

// ---- fdinfo --------------------------------------------------------------------------------------

TEST(ProcFdinfo, EventfdFixtures) {
  auto info = parse_fdinfo(fixture("fdinfo-eventfd"));
  ASSERT_TRUE(info) << info.error().render();
  EXPECT_EQ(info->pos, 0u);
  EXPECT_EQ(info->flags, 04002u);
  EXPECT_EQ(info->mnt_id, 17);
  ASSERT_TRUE(info->ino);
  EXPECT_EQ(*info->ino, 1038u);
  EXPECT_EQ(info->extra.size(), 3u);
  auto ev = parse_eventfd(*info);
  ASSERT_TRUE(ev) << ev.error().render();
  EXPECT_EQ(ev->count, 5u);
  EXPECT_EQ(ev->id, 1u);
  EXPECT_EQ(ev->semaphore, false);

  auto sem = parse_fdinfo(fixture("fdinfo-eventfd-sem"));
  ASSERT_TRUE(sem);
  auto ev2 = parse_eventfd(*sem);
  ASSERT_TRUE(ev2);
  EXPECT_EQ(ev2->count, 20u);  // printed as hex "14"
  EXPECT_EQ(ev2->semaphore, true);
}

TEST(ProcFdinfo, EpollTargets) {
  auto info = parse_fdinfo(fixture("fdinfo-epoll"));
  ASSERT_TRUE(info) << info.error().render();
  auto t = parse_epoll_targets(*info);
  ASSERT_TRUE(t) << t.error().render();
  ASSERT_EQ(t->size(), 2u);
  EXPECT_EQ((*t)[0].tfd, 3);
  EXPECT_EQ((*t)[0].events, 0x19u);
  EXPECT_EQ((*t)[0].data, 0x1234u);
  EXPECT_EQ((*t)[0].pos, 0u);
  EXPECT_EQ((*t)[0].ino, 0x40eu);
  EXPECT_EQ((*t)[0].sdev, 0x10u);
  EXPECT_EQ((*t)[1].tfd, 5);
  EXPECT_EQ((*t)[1].events, 0x80000019u);  // EPOLLET | EPOLLIN | EPOLLERR | EPOLLHUP
  EXPECT_EQ((*t)[1].data, 7u);
  EXPECT_EQ((*t)[1].ino, 0x24a5u);
  EXPECT_EQ((*t)[1].sdev, 0xfu);
}

TEST(ProcFdinfo, SignalfdInotifyTimerfdAndPipe) {
  auto sfd = parse_fdinfo(fixture("fdinfo-signalfd"));
  ASSERT_TRUE(sfd);
  auto mask = parse_signalfd_sigmask(*sfd);
  ASSERT_TRUE(mask);
  EXPECT_EQ(*mask, (1u << (SIGUSR1 - 1)) | (1u << (SIGTERM - 1)));

  auto in = parse_fdinfo(fixture("fdinfo-inotify"));
  ASSERT_TRUE(in);
  auto w = parse_inotify(*in);
  ASSERT_TRUE(w) << w.error().render();
  ASSERT_EQ(w->size(), 1u);
  EXPECT_EQ((*w)[0].wd, 1);
  EXPECT_EQ((*w)[0].ino, 0x3c51au);
  EXPECT_EQ((*w)[0].sdev, 0xfe00000u);
  EXPECT_EQ((*w)[0].mask, 0x300u);  // IN_CREATE | IN_DELETE
  EXPECT_EQ((*w)[0].ignored_mask, 0u);
  EXPECT_EQ((*w)[0].fhandle_bytes, 8);
  EXPECT_EQ((*w)[0].fhandle_type, 1);
  EXPECT_EQ((*w)[0].f_handle, "1ac5030000000000");

  auto tfd = parse_fdinfo(fixture("fdinfo-timerfd"));
  ASSERT_TRUE(tfd);
  auto t = parse_timerfd(*tfd);
  ASSERT_TRUE(t) << t.error().render();
  EXPECT_EQ(t->clockid, 1);  // CLOCK_MONOTONIC
  EXPECT_EQ(t->ticks, 0u);
  EXPECT_EQ(t->settime_flags, 0u);
  EXPECT_EQ(t->value_sec, 90u);
  EXPECT_EQ(t->value_nsec, 834627764u);
  EXPECT_EQ(t->interval_sec, 10u);
  EXPECT_EQ(t->interval_nsec, 0u);

  auto pipe = parse_fdinfo(fixture("fdinfo-pipe"));
  ASSERT_TRUE(pipe);
  EXPECT_EQ(pipe->mnt_id, 16);
  EXPECT_EQ(pipe->ino, 9381u);
  EXPECT_TRUE(pipe->extra.empty());
  // Typed parsers refuse an fdinfo of another type.
  EXPECT_FALSE(parse_eventfd(*pipe));
  EXPECT_FALSE(parse_signalfd_sigmask(*pipe));
  EXPECT_FALSE(parse_timerfd(*pipe));
  auto none = parse_epoll_targets(*pipe);
  ASSERT_TRUE(none);
  EXPECT_TRUE(none->empty());
}

TEST(ProcFdinfo, MalformedInputIsAnError) {
  auto empty = parse_fdinfo("", "/proc/5/fdinfo/3");
  ASSERT_FALSE(empty);
  expect_parse_error(empty.error(), "/proc/5/fdinfo/3");
  auto bad_pos = parse_fdinfo("pos:\tx\nflags:\t02\n", "/proc/5/fdinfo/3");
  ASSERT_FALSE(bad_pos);
  expect_parse_error(bad_pos.error(), "/proc/5/fdinfo/3 line 1");
  EXPECT_FALSE(parse_fdinfo("pos:\t0\nflags:\t09\n"));  // not octal
  EXPECT_FALSE(parse_fdinfo("pos:\t0\nflags:\t02\nno colon here\n"));

  auto epoll = parse_fdinfo("pos:\t0\nflags:\t02\ntfd:        x events:       19 data: 1\n");
  ASSERT_TRUE(epoll);
  EXPECT_FALSE(parse_epoll_targets(*epoll));
  auto epoll_trunc = parse_fdinfo("pos:\t0\nflags:\t02\ntfd:        3 events:\n");
  ASSERT_TRUE(epoll_trunc);
  EXPECT_FALSE(parse_epoll_targets(*epoll_trunc));
  auto timer = parse_fdinfo("pos:\t0\nflags:\t02\nclockid: 1\nticks: 0\nsettime flags: 00\nit_value: (98, x)\n"
                            "it_interval: (10, 0)\n");
  ASSERT_TRUE(timer);
  EXPECT_FALSE(parse_timerfd(*timer));
  auto inotify = parse_fdinfo("pos:\t0\nflags:\t00\ninotify wd:1 ino:zz sdev:0 mask:1\n");
  ASSERT_TRUE(inotify);
  EXPECT_FALSE(parse_inotify(*inotify));
}

// ---- live /proc/self -----------------------------------------------------------------------------

TEST(ProcLive, SelfFilesParse) {
  const pid_t self = ::getpid();

  auto maps = read_maps(self);
  ASSERT_TRUE(maps) << maps.error().render();
  auto fn = reinterpret_cast<uintptr_t>(&fixture);
  auto code = std::find_if(maps->begin(), maps->end(), [&](const Vma& v) { return v.start <= fn && fn < v.end; });
  ASSERT_NE(code, maps->end());
  EXPECT_TRUE(code->prot & PROT_EXEC);
  auto vdso = std::find_if(maps->begin(), maps->end(), [](const Vma& v) { return v.is_vdso(); });
  ASSERT_NE(vdso, maps->end());
  EXPECT_TRUE(std::any_of(maps->begin(), maps->end(), [](const Vma& v) { return v.is_stack(); }));

  auto smaps = read_smaps(self);
  ASSERT_TRUE(smaps) << smaps.error().render();
  EXPECT_GT(smaps->size(), 5u);
  auto sv = std::find_if(smaps->begin(), smaps->end(), [](const SmapsEntry& e) { return e.vma.is_vdso(); });
  ASSERT_NE(sv, smaps->end());
  EXPECT_TRUE(sv->has(VmFlag::ex));

  auto auxv = read_auxv(self);
  ASSERT_TRUE(auxv) << auxv.error().render();
  bool saw_vdso = false, saw_pagesz = false;
  for (auto& e : *auxv) {
    if (e.type == AT_SYSINFO_EHDR) {
      saw_vdso = true;
      EXPECT_EQ(e.value, ::getauxval(AT_SYSINFO_EHDR));
      EXPECT_EQ(e.value, vdso->start);
    }
    if (e.type == AT_PAGESZ) {
      saw_pagesz = true;
      EXPECT_EQ(e.value, uint64_t(::sysconf(_SC_PAGESIZE)));
    }
  }
  EXPECT_TRUE(saw_vdso && saw_pagesz);

  auto st = read_stat(self);
  ASSERT_TRUE(st) << st.error().render();
  EXPECT_EQ(st->pid, self);
  EXPECT_EQ(st->ppid, ::getppid());
  auto comm = sys::read_file("/proc/self/comm");
  ASSERT_TRUE(comm);
  EXPECT_EQ(st->comm + "\n", *comm);

  auto status = read_status(self, self);
  ASSERT_TRUE(status) << status.error().render();
  EXPECT_EQ(status->pid, self);
  EXPECT_EQ(status->uid[0], ::getuid());
  EXPECT_EQ(status->name, st->comm);

  auto lim = read_limits(self);
  ASSERT_TRUE(lim) << lim.error().render();
  struct rlimit rl;
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &rl), 0);
  EXPECT_EQ((*lim)[RLIMIT_NOFILE].cur, rl.rlim_cur);
  EXPECT_EQ((*lim)[RLIMIT_NOFILE].max, rl.rlim_max);
  ASSERT_EQ(::getrlimit(RLIMIT_STACK, &rl), 0);
  EXPECT_EQ((*lim)[RLIMIT_STACK].cur, rl.rlim_cur);

  auto mi = read_mountinfo(self);
  ASSERT_TRUE(mi) << mi.error().render();
  EXPECT_TRUE(std::any_of(mi->begin(), mi->end(), [](const MountInfo& m) { return m.mount_point == "/"; }));

  int efd = ::eventfd(7, EFD_CLOEXEC);
  ASSERT_GE(efd, 0);
  auto info = read_fdinfo(self, efd);
  ::close(efd);
  ASSERT_TRUE(info) << info.error().render();
  auto ev = parse_eventfd(*info);
  ASSERT_TRUE(ev) << ev.error().render();
  EXPECT_EQ(ev->count, 7u);

  struct stat nst;
  ASSERT_EQ(::stat("/proc/self/ns/net", &nst), 0);
  auto ino = ns_inode(self, "net");
  ASSERT_TRUE(ino) << ino.error().render();
  EXPECT_EQ(*ino, nst.st_ino);
  EXPECT_FALSE(ns_inode(self, "../status"));
}

TEST(ProcLive, TasksAndChildren) {
  const pid_t self = ::getpid();
  std::atomic<bool> stop{false};
  std::atomic<pid_t> tid{0};
  std::thread t([&] {
    tid = ::gettid();
    while (!stop) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  });
  while (!tid) std::this_thread::yield();
  auto tids = tasks(self);
  stop = true;
  t.join();
  ASSERT_TRUE(tids) << tids.error().render();
  EXPECT_TRUE(std::is_sorted(tids->begin(), tids->end()));
  EXPECT_NE(std::find(tids->begin(), tids->end(), self), tids->end());
  EXPECT_NE(std::find(tids->begin(), tids->end(), tid.load()), tids->end());

  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::pause();
    ::_exit(0);
  }
  auto kids = children(self);
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  ASSERT_TRUE(kids) << kids.error().render();
  EXPECT_NE(std::find(kids->begin(), kids->end(), child), kids->end());
}

TEST(ProcLive, MissingProcessIsASystemError) {
  auto maps = read_maps(2147483647);
  ASSERT_FALSE(maps);
  EXPECT_EQ(maps.error().err, ENOENT);
  EXPECT_EQ(maps.error().object, "/proc/2147483647/maps");
  EXPECT_FALSE(tasks(2147483647));
}

}  // namespace
}  // namespace crshim::proc
