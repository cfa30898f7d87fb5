#include "checkpoint/kernel/features.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "checkpoint/kernel/proc.h"

namespace crshim::kernel {
namespace {

TEST(Features, ProbeOnThisMachineFindsTheRequiredFeatures) {
  auto f = probe_features();
  ASSERT_TRUE(f) << f.error().render();
  EXPECT_TRUE(f->usable()) << f->missing_text();

  EXPECT_GE(f->kernel_major, 6);
  EXPECT_FALSE(f->kernel_release.empty());
  EXPECT_TRUE(f->ptrace_seize);
  EXPECT_TRUE(f->ptrace_rseq_config);
  EXPECT_EQ(f->rseq_signature, 0x53053053u);  // glibc's RSEQ_SIG on x86
  EXPECT_EQ(f->rseq_size, 32u);
  EXPECT_TRUE(f->pidfd_open);
  EXPECT_TRUE(f->pidfd_getfd);
  EXPECT_TRUE(f->process_vm_readv);
  EXPECT_TRUE(f->proc_mem_write);
  EXPECT_TRUE(f->clone3);
  EXPECT_TRUE(f->clone3_set_tid);
  EXPECT_TRUE(f->ns_last_pid);
  EXPECT_TRUE(f->pagemap_scan);
  EXPECT_TRUE(f->userfaultfd);
  EXPECT_TRUE(f->uffd_wp_async);
  EXPECT_TRUE(f->pr_set_mm_map);
  EXPECT_EQ(f->pr_set_mm_map_size, 104u);  // sizeof(struct prctl_mm_map) on x86-64
  EXPECT_TRUE(f->time_ns);
  EXPECT_TRUE(f->cap_checkpoint_restore);
  EXPECT_TRUE(f->cap_sys_admin);

  // The 6.13+ vDSO trio.
  EXPECT_TRUE(f->vdso.vdso);
  EXPECT_TRUE(f->vdso.vvar);
  EXPECT_TRUE(f->vdso.vvar_vclock);
  EXPECT_EQ(f->vdso.vdso_size, 0x2000u);
  EXPECT_EQ(f->vdso.vvar_size, 0x4000u);
  EXPECT_EQ(f->vdso.vvar_vclock_size, 0x2000u);

  // What is known to be absent here shows up as non-fatal notes.
  auto status = proc::read_status(::getpid());
  ASSERT_TRUE(status);
  EXPECT_EQ(f->cap_eff, status->cap_eff);
  EXPECT_EQ(f->cap_sys_resource, ((status->cap_eff >> 24) & 1) != 0);
  bool sys_resource_note = f->missing_text().find("cap_sys_resource") != std::string::npos;
  EXPECT_EQ(sys_resource_note, !f->cap_sys_resource);
  EXPECT_FALSE(f->mem_soft_dirty);  // this kernel is built without CONFIG_MEM_SOFT_DIRTY
  EXPECT_NE(f->missing_text().find("info: mem_soft_dirty"), std::string::npos);
}

TEST(Features, ProbeLeavesNoChildBehind) {
  auto f = probe_features();
  ASSERT_TRUE(f);
  errno = 0;
  EXPECT_EQ(::waitpid(-1, nullptr, WNOHANG | __WALL), -1);
  EXPECT_EQ(errno, ECHILD);
}

TEST(Features, RenderCheckSaysLooksGoodWhenNothingRequiredIsMissing) {
  auto f = probe_features();
  ASSERT_TRUE(f);
  std::string out = render_check(*f);
  ASSERT_GE(out.size(), 12u);
  EXPECT_EQ(out.substr(out.size() - 12), "Looks good.\n") << out;
  EXPECT_EQ(out.find("Error"), std::string::npos) << out;
  if (!f->cap_sys_resource) {
    EXPECT_NE(out.find("Info: cap_sys_resource"), std::string::npos) << out;
  }
}

TEST(Features, RenderCheckReportsMissingRequiredFeatures) {
  Features f;
  f.notes.push_back({Need::required, "pidfd_getfd", "pidfd_getfd failed"});
  f.notes.push_back({Need::optional, "pagemap_scan", "no PAGEMAP_SCAN"});
  EXPECT_FALSE(f.usable());
  std::string out = render_check(f);
  EXPECT_EQ(out,
            "Error: pidfd_getfd: pidfd_getfd failed\n"
            "Warn: pagemap_scan: no PAGEMAP_SCAN\n"
            "Error: 1 required kernel feature is missing: dump and restore cannot work here.\n");
  EXPECT_EQ(f.missing_text(), "required: pidfd_getfd: pidfd_getfd failed\noptional: pagemap_scan: no PAGEMAP_SCAN\n");

  Features ok;
  ok.notes.push_back({Need::optional, "time_ns", "no time namespaces"});
  EXPECT_TRUE(ok.usable());
  EXPECT_EQ(render_check(ok), "Warn: time_ns: no time namespaces\nLooks good.\n");
}

TEST(Features, JsonHasEveryProbedItem) {
  auto f = probe_features();
  ASSERT_TRUE(f);
  std::string j = features_json(*f);
  for (const char* key : {"\"kernel_release\"", "\"ptrace_seize\": true", "\"ptrace_rseq_config\": true",
                          "\"pidfd_getfd\": true", "\"pagemap_scan\": true", "\"clone3_set_tid\": true",
                          "\"userfaultfd\": true", "\"uffd_wp_async\": true", "\"process_vm_readv\": true",
                          "\"proc_mem_write\": true", "\"pr_set_mm_map_size\": 104", "\"time_ns\": true",
                          "\"cap_checkpoint_restore\": true", "\"vvar_vclock\": true", "\"xcr0\"",
                          "\"components\"", "\"mem_soft_dirty\": false", "\"missing\"", "\"usable\": true"})
    EXPECT_NE(j.find(key), std::string::npos) << key << "\n" << j;
  // Balanced braces and brackets, and strings escaped.
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < j.size(); ++i) {
    char c = j[i];
    if (in_string) {
      if (c == '\\') ++i;
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') in_string = true;
    if (c == '{' || c == '[') ++depth;
    if (c == '}' || c == ']') --depth;
    ASSERT_GE(depth, 0);
  }
  EXPECT_EQ(depth, 0);
  EXPECT_FALSE(in_string);

  Features quoted;
  quoted.kernel_release = "6.1 \"x\"\\\n";
  EXPECT_NE(features_json(quoted).find("\"kernel_release\": \"6.1 \\\"x\\\"\\\\\\n\""), std::string::npos);
}

TEST(Features, XsaveLayoutIsConsistent) {
  XsaveLayout x = xsave_layout();
  ASSERT_TRUE(x.supported);
  EXPECT_EQ(x.xcr0 & 3, 3u);  // x87 and SSE are always enabled
  EXPECT_GE(x.size, 576u);    // legacy area + header
  EXPECT_LE(x.size, x.max_size);
  uint32_t prev = 0;
  for (const auto& c : x.components) {
    EXPECT_GE(c.index, 2u);
    EXPECT_TRUE((x.xcr0 >> c.index) & 1);
    EXPECT_GE(c.offset, 576u) << c.index;
    EXPECT_LE(c.offset + c.size, x.size) << c.index;
    EXPECT_GT(c.index, prev);
    prev = c.index;
  }
  // One bit in xcr0 per component past SSE.
  EXPECT_EQ(x.components.size(), size_t(__builtin_popcountll(x.xcr0 >> 2)));
  EXPECT_EQ(xsave_layout(), x);
  if (x.xcr0 == 0xe7) {
    // This machine (AVX-512, no PKU): opmask at 832, NT_X86_XSTATE of 2432 bytes.
    ASSERT_EQ(x.components.size(), 4u);
    EXPECT_EQ(x.components[0], (XsaveComponent{2, 576, 256}));
    EXPECT_EQ(x.components[1], (XsaveComponent{5, 832, 64}));
    EXPECT_EQ(x.size, 2432u);
  }
}

}  // namespace
}  // namespace crshim::kernel
