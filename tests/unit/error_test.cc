#include <gtest/gtest.h>

#include "checkpoint/base/result.h"

namespace crshim {
namespace {

TEST(ErrorRender, NamesContextOperationObjectErrnoAndHint) {
  Error e = errno_error(ENOENT, "open", "/proc/42/maps");
  e.within("memory").within("dump pid 42").with_hint("is the task still alive?");
  EXPECT_EQ(e.render(),
            "dump pid 42: memory: open /proc/42/maps: No such file or directory (ENOENT); "
            "hint: is the task still alive?");
}

TEST(ErrorRender, ResourceExhaustionCarriesItsCure) {
  EXPECT_EQ(errno_error(ENOSPC, "write", "pages-1.img").render(),
            "write pages-1.img: No space left on device (ENOSPC); "
            "hint: free space on that file system, or write the images elsewhere (-D, -W)");
  EXPECT_NE(errno_error(EMFILE, "open", "x").render().find("ulimit -n"), std::string::npos);
  // A caller's own hint wins.
  EXPECT_EQ(errno_error(ENOSPC, "write", "f").with_hint("mine").hint, "mine");
  EXPECT_TRUE(errno_error(ENOENT, "open", "f").hint.empty());
}

TEST(ErrorRender, NonSystemErrorHasNoErrnoPart) {
  Error e = make_error(Errc::corrupt_image, "read", "core-1.img", "entry length 4294967295 exceeds limit");
  EXPECT_EQ(e.render(), "read core-1.img: entry length 4294967295 exceeds limit");
  EXPECT_STREQ(errc_name(e.code), "corrupt-image");
}

Result<int> half(int v) {
  if (v % 2) return fail(make_error(Errc::invalid_argument, "half", std::to_string(v), "odd"));
  return v / 2;
}

Result<int> quarter(int v) {
  int h = CR_TRY(half(v));
  return CR_TRY(half(h));
}

TEST(ResultMacros, TryPropagatesTheFirstFailure) {
  EXPECT_EQ(*quarter(8), 2);
  auto r = quarter(6);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().object, "3");
}

}  // namespace
}  // namespace crshim
