#include "checkpoint/arch/x86.h"

#include <gtest/gtest.h>

namespace crshim::arch {
namespace {

// An image whose FPU state uses AVX, restored on a CPU (layout) with x87 and SSE only: refused, and
// the user is told where such an image can be restored.
TEST(X86Fpu, AComponentThisCpuLacksIsRefusedWithAHint) {
  user_x86_fpregs_entry in;
  in.mutable_xsave()->set_xstate_bv(uint64_t(1) << 2);
  in.mutable_xsave()->mutable_ymmh_space()->Resize(64, 0);
  kernel::XsaveLayout layout;
  layout.supported = true;
  layout.xcr0 = 0x3;
  kernel::XState xs;
  xs.bytes.assign(1024, 0);
  Status st = fpu_from_image(in, layout, xs);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, Errc::incompatible);
  EXPECT_EQ(st.error().render(),
            "restore FPU state: the image uses XSAVE component 2 which this CPU lacks; "
            "hint: restore on a CPU with the same features as the one the dump was made on");
}

}  // namespace
}  // namespace crshim::arch
