// linux.seccomp against checkpointed filters: the classic-BPF interpreter, chains, and the
// behavioural comparison of a libseccomp-built profile with image filters.
#include <gtest/gtest.h>
#include <linux/audit.h>
#include <linux/seccomp.h>
#include <sys/syscall.h>

#include <cstring>
#include <fstream>

#include "oci/seccomp_check.h"
#include "temp_dir.h"

namespace crshim::oci {
namespace {

constexpr uint32_t kAllow = SECCOMP_RET_ALLOW;
constexpr uint32_t errno_ret(uint32_t e) { return SECCOMP_RET_ERRNO | e; }

sock_filter stmt(uint16_t code, uint32_t k) { return sock_filter{code, 0, 0, k}; }
sock_filter jump(uint16_t code, uint32_t k, uint8_t jt, uint8_t jf) { return sock_filter{code, jt, jf, k}; }

constexpr uint32_t kNrOffset = offsetof(seccomp_data, nr);
constexpr uint32_t kArg0Low = offsetof(seccomp_data, args[0]);
constexpr uint32_t kArg0High = offsetof(seccomp_data, args[0]) + 4;

// nr == `nr`: return `hit`, else ALLOW.
std::vector<sock_filter> one_rule(int nr, uint32_t hit) {
  return {stmt(BPF_LD | BPF_W | BPF_ABS, kNrOffset), jump(BPF_JMP | BPF_JEQ | BPF_K, uint32_t(nr), 0, 1),
          stmt(BPF_RET | BPF_K, hit), stmt(BPF_RET | BPF_K, kAllow)};
}

SeccompData call(int nr, uint64_t arg0 = 0) {
  SeccompData d;
  d.nr = nr;
  d.arch = AUDIT_ARCH_X86_64;
  d.args[0] = arg0;
  return d;
}

uint32_t run(const std::vector<sock_filter>& prog, const SeccompData& d) {
  auto r = run_seccomp_program(prog, d);
  EXPECT_TRUE(r) << r.error().render();
  return r ? *r : 0xdeadbeef;
}

SeccompProfile profile_of(const std::string& seccomp_json) {
  auto p = parse_seccomp_profile(R"({"ociVersion": "1.0.2", "linux": {"seccomp": )" + seccomp_json + "}}");
  EXPECT_TRUE(p) << p.error().render();
  EXPECT_TRUE(p && *p);
  return p && *p ? **p : SeccompProfile{};
}

std::vector<sock_filter> built(const SeccompProfile& p) {
  auto f = build_seccomp_filter(p);
  EXPECT_TRUE(f) << f.error().render();
  return f ? *f : std::vector<sock_filter>{};
}

const char* kGetpriorityOnly = R"({"defaultAction": "SCMP_ACT_ALLOW",
  "syscalls": [{"names": ["getpriority"], "action": "SCMP_ACT_ERRNO", "errnoRet": 77}]})";

const char* kProfile = R"({
  "defaultAction": "SCMP_ACT_ALLOW",
  "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
  "syscalls": [
    {"names": ["getpriority"], "action": "SCMP_ACT_ERRNO", "errnoRet": 77},
    {"names": ["setpriority", "no_such_syscall_here"], "action": "SCMP_ACT_ERRNO"},
    {"names": ["personality"], "action": "SCMP_ACT_KILL_PROCESS",
     "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
    {"names": ["clone"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
     "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]}
  ]
})";

TEST(SeccompProgram, AllowDenyErrno) {
  EXPECT_EQ(run({stmt(BPF_RET | BPF_K, kAllow)}, call(SYS_getpid)), kAllow);
  auto prog = one_rule(SYS_getpriority, errno_ret(77));
  EXPECT_EQ(run(prog, call(SYS_getpriority)), errno_ret(77));
  EXPECT_EQ(run(prog, call(SYS_getpid)), kAllow);
  EXPECT_EQ(run(one_rule(SYS_kill, SECCOMP_RET_KILL_PROCESS), call(SYS_kill)), SECCOMP_RET_KILL_PROCESS);
}

TEST(SeccompProgram, ArgumentConditions) {
  // personality(arg0): 64-bit arg0 == 8 -> TRAP, else ALLOW; the high word is checked first.
  std::vector<sock_filter> prog = {
      stmt(BPF_LD | BPF_W | BPF_ABS, kNrOffset),  jump(BPF_JMP | BPF_JEQ | BPF_K, SYS_personality, 0, 4),
      stmt(BPF_LD | BPF_W | BPF_ABS, kArg0High),  jump(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 2),
      stmt(BPF_LD | BPF_W | BPF_ABS, kArg0Low),   jump(BPF_JMP | BPF_JEQ | BPF_K, 8, 1, 0),
      stmt(BPF_RET | BPF_K, kAllow),              stmt(BPF_RET | BPF_K, SECCOMP_RET_TRAP)};
  EXPECT_EQ(run(prog, call(SYS_personality, 8)), SECCOMP_RET_TRAP);
  EXPECT_EQ(run(prog, call(SYS_personality, 9)), kAllow);
  EXPECT_EQ(run(prog, call(SYS_personality, 8 | (uint64_t(1) << 32))), kAllow);
  // JSET / JGT / JGE on A, with X and scratch memory in between.
  std::vector<sock_filter> bits = {
      stmt(BPF_LD | BPF_W | BPF_ABS, kArg0Low), stmt(BPF_ST, 3),  stmt(BPF_MISC | BPF_TAX, 0),
      stmt(BPF_LD | BPF_IMM, 0),                stmt(BPF_LD | BPF_MEM, 3), stmt(BPF_ALU | BPF_AND | BPF_K, 0xf0),
      jump(BPF_JMP | BPF_JSET | BPF_K, 0x10, 3, 0), stmt(BPF_MISC | BPF_TXA, 0),
      jump(BPF_JMP | BPF_JGE | BPF_K, 100, 2, 0),   stmt(BPF_RET | BPF_K, kAllow),
      stmt(BPF_RET | BPF_K, errno_ret(1)),           stmt(BPF_RET | BPF_A, 0)};
  EXPECT_EQ(run(bits, call(1, 0x11)), errno_ret(1));
  EXPECT_EQ(run(bits, call(1, 5)), kAllow);
  EXPECT_EQ(run(bits, call(1, 200)), 200u);  // RET A: A is arg0 again after TXA
}

TEST(SeccompProgram, RefusesBadPrograms) {
  auto expect_bad = [](std::vector<sock_filter> prog, const char* what) {
    auto r = run_seccomp_program(prog, call(0));
    ASSERT_FALSE(r) << what;
    EXPECT_EQ(r.error().code, Errc::corrupt_image);
    EXPECT_NE(r.error().render().find(what), std::string::npos) << r.error().render();
  };
  expect_bad({jump(BPF_JMP | BPF_JEQ | BPF_K, 0, 5, 0), stmt(BPF_RET | BPF_K, kAllow)}, "jump past the end");
  expect_bad({stmt(BPF_JMP | BPF_JA, 0xffffffff), stmt(BPF_RET | BPF_K, kAllow)}, "jump past the end");
  expect_bad({stmt(BPF_LD | BPF_B | BPF_ABS, 0), stmt(BPF_RET | BPF_K, kAllow)}, "not an instruction seccomp allows");
  expect_bad({stmt(BPF_LD | BPF_W | BPF_ABS, 64), stmt(BPF_RET | BPF_K, kAllow)}, "load outside");
  expect_bad({stmt(BPF_LD | BPF_W | BPF_ABS, 2), stmt(BPF_RET | BPF_K, kAllow)}, "load outside");
  expect_bad({stmt(BPF_ST, 16), stmt(BPF_RET | BPF_K, kAllow)}, "scratch memory index 16");
  expect_bad({stmt(BPF_ALU | BPF_DIV | BPF_K, 0), stmt(BPF_RET | BPF_K, kAllow)}, "division by zero");
  expect_bad({stmt(BPF_LD | BPF_IMM, 1)}, "does not end with a return");
  expect_bad({}, "0 instructions");
  expect_bad(std::vector<sock_filter>(BPF_MAXINSNS + 1, stmt(BPF_RET | BPF_K, kAllow)), "4097 instructions");
}

TEST(SeccompChain, KernelPrecedence) {
  // Newest first. KILL beats ERRNO beats ALLOW; equal actions keep the newest filter's data.
  SeccompChain chain = {one_rule(SYS_getpriority, errno_ret(77)), one_rule(SYS_getpriority, errno_ret(1)),
                        one_rule(SYS_kill, SECCOMP_RET_KILL_PROCESS), one_rule(SYS_kill, SECCOMP_RET_TRAP)};
  EXPECT_EQ(*run_seccomp_chain(chain, call(SYS_getpriority)), errno_ret(77));
  EXPECT_EQ(*run_seccomp_chain(chain, call(SYS_kill)), SECCOMP_RET_KILL_PROCESS);
  EXPECT_EQ(*run_seccomp_chain(chain, call(SYS_getpid)), kAllow);
  EXPECT_EQ(*run_seccomp_chain({}, call(SYS_getpid)), kAllow);
  SeccompChain log_trap = {one_rule(SYS_read, SECCOMP_RET_LOG), one_rule(SYS_read, SECCOMP_RET_TRAP)};
  EXPECT_EQ(*run_seccomp_chain(log_trap, call(SYS_read)), SECCOMP_RET_TRAP);
}

seccomp_filter image_filter(const std::vector<sock_filter>& prog, std::optional<uint32_t> prev) {
  seccomp_filter f;
  f.set_filter(std::string(reinterpret_cast<const char*>(prog.data()), prog.size() * sizeof(sock_filter)));
  if (prev) f.set_prev(*prev);
  return f;
}

TEST(SeccompChain, FromImage) {
  seccomp_entry image;
  *image.add_seccomp_filters() = image_filter(one_rule(SYS_kill, SECCOMP_RET_TRAP), std::nullopt);  // 0: oldest
  *image.add_seccomp_filters() = image_filter(one_rule(SYS_getpriority, errno_ret(77)), 0);       // 1: newest
  auto chain = image_seccomp_chain(image, 1);
  ASSERT_TRUE(chain) << chain.error().render();
  ASSERT_EQ(chain->size(), 2u);
  EXPECT_EQ(*run_seccomp_chain(*chain, call(SYS_kill)), SECCOMP_RET_TRAP);
  EXPECT_EQ(*run_seccomp_chain(*chain, call(SYS_getpriority)), errno_ret(77));

  EXPECT_FALSE(image_seccomp_chain(image, 2));
  image.mutable_seccomp_filters(0)->set_prev(1);  // a loop
  auto loop = image_seccomp_chain(image, 1);
  ASSERT_FALSE(loop);
  EXPECT_NE(loop.error().render().find("bad filter chain"), std::string::npos) << loop.error().render();
  image.mutable_seccomp_filters(0)->clear_prev();
  image.mutable_seccomp_filters(0)->set_filter("1234567");  // not whole instructions
  EXPECT_FALSE(image_seccomp_chain(image, 1));
}

TEST(SeccompProfileParse, Fields) {
  SeccompProfile p = profile_of(kProfile);
  EXPECT_EQ(p.default_action, "SCMP_ACT_ALLOW");
  EXPECT_EQ(p.architectures.size(), 3u);
  ASSERT_EQ(p.syscalls.size(), 4u);
  EXPECT_EQ(p.syscalls[0].errno_ret, 77u);
  EXPECT_EQ(p.syscalls[3].args.at(0).value, 2114060288u);
  EXPECT_EQ(p.syscalls[3].args.at(0).op, "SCMP_CMP_MASKED_EQ");

  auto none = parse_seccomp_profile(R"({"linux": {}})");
  ASSERT_TRUE(none);
  EXPECT_FALSE(*none);
  auto bad_index = parse_seccomp_profile(
      R"({"linux": {"seccomp": {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"],
          "action": "SCMP_ACT_ERRNO", "args": [{"index": 6, "value": 0, "op": "SCMP_CMP_EQ"}]}]}}})");
  ASSERT_FALSE(bad_index);
  EXPECT_NE(bad_index.error().render().find("linux.seccomp.syscalls[0].args[0].index"), std::string::npos);
  auto bad_action = build_seccomp_filter(profile_of(R"({"defaultAction": "SCMP_ACT_MAYBE"})"));
  ASSERT_FALSE(bad_action);
  EXPECT_NE(bad_action.error().render().find("unknown action 'SCMP_ACT_MAYBE'"), std::string::npos);
}

TEST(SeccompCompare, BuiltProfileBehavesAsAsked) {
  auto prog = built(profile_of(kProfile));
  EXPECT_EQ(run(prog, call(SYS_getpriority)), errno_ret(77));
  EXPECT_EQ(run(prog, call(SYS_setpriority)), errno_ret(EPERM));
  EXPECT_EQ(run(prog, call(SYS_personality, 8)), SECCOMP_RET_KILL_PROCESS);
  EXPECT_EQ(run(prog, call(SYS_personality, 0)), kAllow);
  EXPECT_EQ(run(prog, call(SYS_clone, 0x10000)), errno_ret(1));      // no namespace flag: masked value 0
  EXPECT_EQ(run(prog, call(SYS_clone, 0x20000000)), kAllow);          // CLONE_NEWPID
  EXPECT_EQ(run(prog, call(SYS_getpid)), kAllow);
}

TEST(SeccompCompare, SameProfileMatches) {
  SeccompProfile p = profile_of(kProfile);
  auto prog = built(p);
  auto st = compare_seccomp(p, prog, SeccompChain{prog});
  EXPECT_TRUE(st) << st.error().render();
  // Another build of the same rules in another order, without x32: other code, same behaviour.
  SeccompProfile q = p;
  std::reverse(q.syscalls.begin(), q.syscalls.end());
  q.architectures = {"SCMP_ARCH_X86", "SCMP_ARCH_X86_64"};
  auto other = built(q);
  EXPECT_NE(other.size(), prog.size());
  st = compare_seccomp(p, prog, SeccompChain{other});
  EXPECT_TRUE(st) << st.error().render();
}

TEST(SeccompCompare, I386IsComparedWhenListed) {
  SeccompProfile p = profile_of(kProfile);
  SeccompProfile native = p;
  native.architectures = {"SCMP_ARCH_X86_64"};
  // The image's filter knows no i386: libseccomp's bad-arch action (KILL_THREAD) answers there.
  auto st = compare_seccomp(p, built(p), SeccompChain{built(native)});
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().render().find("syscall restart_syscall (0, x86): the bundle's profile gives ALLOW but the "
                                     "checkpointed filter gives KILL_THREAD"),
            std::string::npos)
      << st.error().render();
  // An i386-only difference is named with its i386 number: a newer filter answers i386 getpriority (96).
  std::vector<sock_filter> i386_only = {
      stmt(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)),
      jump(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_I386, 0, 3),
      stmt(BPF_LD | BPF_W | BPF_ABS, kNrOffset),
      jump(BPF_JMP | BPF_JEQ | BPF_K, 96, 0, 1),
      stmt(BPF_RET | BPF_K, errno_ret(EIO)),
      stmt(BPF_RET | BPF_K, kAllow)};
  st = compare_seccomp(p, built(p), SeccompChain{i386_only, built(p)});
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().render().find("syscall getpriority (96, x86): the bundle's profile gives ERRNO(77, EBADFD) but "
                                     "the checkpointed filter gives ERRNO(5, EIO)"),
            std::string::npos)
      << st.error().render();
  // A profile without i386 is compared on x86_64 only.
  EXPECT_TRUE(compare_seccomp(native, built(native), SeccompChain{built(p)}));
}

TEST(SeccompCompare, ChangedActionIsNamed) {
  SeccompProfile p = profile_of(kProfile);
  SeccompProfile changed = p;
  changed.syscalls[0].errno_ret = 78;
  auto st = compare_seccomp(changed, built(changed), SeccompChain{built(p)});
  ASSERT_FALSE(st);
  std::string msg = st.error().render();
  EXPECT_EQ(st.error().code, Errc::invalid_argument);
  EXPECT_NE(msg.find("linux.seccomp"), std::string::npos) << msg;
  EXPECT_NE(msg.find("syscall getpriority (140)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("the bundle's profile gives ERRNO(78"), std::string::npos) << msg;
  EXPECT_NE(msg.find("the checkpointed filter gives ERRNO(77"), std::string::npos) << msg;

  // A change only in an argument condition shows with the argument that tells them apart.
  SeccompProfile arg = p;
  arg.syscalls[2].args[0].value = 9;
  st = compare_seccomp(arg, built(arg), SeccompChain{built(p)});
  ASSERT_FALSE(st);
  msg = st.error().render();
  EXPECT_NE(msg.find("syscall personality (135) with arg0=0x"), std::string::npos) << msg;
  EXPECT_NE(msg.find("KILL_PROCESS"), std::string::npos) << msg;

  // A filter only the image has.
  SeccompProfile bare = profile_of(kGetpriorityOnly);
  st = compare_seccomp(bare, built(bare), SeccompChain{one_rule(SYS_mount, SECCOMP_RET_TRAP), built(bare)});
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().render().find(
                "syscall mount (165): the bundle's profile gives ALLOW but the checkpointed filter gives TRAP(0)"),
            std::string::npos)
      << st.error().render();
}

TEST(SeccompCompare, TwoFilterChain) {
  // The image has the profile's rules split over two filters; together they behave as the profile.
  SeccompProfile both = profile_of(R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
      {"names": ["getpriority"], "action": "SCMP_ACT_ERRNO", "errnoRet": 77},
      {"names": ["mount"], "action": "SCMP_ACT_KILL_PROCESS"}]})");
  SeccompProfile first = profile_of(R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
      {"names": ["getpriority"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
      {"names": ["mount"], "action": "SCMP_ACT_KILL_PROCESS"}]})");
  SeccompChain chain = {one_rule(SYS_getpriority, errno_ret(77)), built(first)};  // newest first
  auto st = compare_seccomp(both, built(both), chain);
  EXPECT_TRUE(st) << st.error().render();
  // Reversed, the newest filter is the one saying ERRNO(1): it wins the tie, and the chain differs.
  SeccompChain reversed = {built(first), one_rule(SYS_getpriority, errno_ret(77))};
  st = compare_seccomp(both, built(both), reversed);
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().render().find("getpriority"), std::string::npos) << st.error().render();
}

TEST(SeccompCompare, RuncEnosysStubIsAccepted) {
  // runc's filters answer syscalls above the profile's highest with ENOSYS instead of a denying default.
  SeccompProfile deny = profile_of(R"({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
      {"names": ["read", "write", "getpid"], "action": "SCMP_ACT_ALLOW"}]})");
  std::vector<sock_filter> stub = {stmt(BPF_LD | BPF_W | BPF_ABS, kNrOffset),
                                   jump(BPF_JMP | BPF_JGT | BPF_K, SYS_getpid, 0, 1),
                                   stmt(BPF_RET | BPF_K, errno_ret(ENOSYS)), stmt(BPF_RET | BPF_K, kAllow)};
  auto st = compare_seccomp(deny, built(deny), SeccompChain{stub, built(deny)});
  EXPECT_TRUE(st) << st.error().render();
  // Below the highest named syscall the default must hold.
  std::vector<sock_filter> low = one_rule(SYS_open, errno_ret(ENOSYS));
  st = compare_seccomp(deny, built(deny), SeccompChain{low, built(deny)});
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().render().find("syscall open (2)"), std::string::npos) << st.error().render();
}

TEST(SeccompCompare, FromBundleDir) {
  test::TempDir dir;
  SeccompProfile p = profile_of(kProfile);
  auto prog = built(p);
  seccomp_entry image;
  seccomp_filter* f = image.add_seccomp_filters();
  f->set_filter(std::string(reinterpret_cast<const char*>(prog.data()), prog.size() * sizeof(sock_filter)));
  auto write = [&](const std::string& seccomp) {
    std::ofstream(dir.file("config.json")) << R"({"ociVersion": "1.0.2", "linux": {"seccomp": )" << seccomp << "}}";
  };
  write(kProfile);
  auto st = check_seccomp_matches(dir.path(), image, 0);
  EXPECT_TRUE(st) << st.error().render();
  write(kGetpriorityOnly);
  st = check_seccomp_matches(dir.path(), image, 0);
  ASSERT_FALSE(st);
  // clone with no namespace flag is the first call the two tell apart.
  EXPECT_NE(st.error().render().find(
                "syscall clone (56): the bundle's profile gives ALLOW but the checkpointed filter gives ERRNO(1, EPERM)"),
            std::string::npos)
      << st.error().render();
  EXPECT_NE(st.error().render().find("restore with the bundle"), std::string::npos) << st.error().render();
  std::ofstream(dir.file("config.json")) << R"({"ociVersion": "1.0.2"})";
  EXPECT_TRUE(check_seccomp_matches(dir.path(), image, 0));
}

}  // namespace
}  // namespace crshim::oci
