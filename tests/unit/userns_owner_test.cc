// Owners of non-task objects between the host's ids and a user namespace's (ns::owner_in_image at
// dump, ns::owner_on_host at restore).
#include <gtest/gtest.h>

#include "checkpoint/image/catalog.h"
#include "checkpoint/image/image.h"
#include "checkpoint/ns/userns.h"
#include "tests/unit/temp_dir.h"

namespace crshim {
namespace {

void add(google::protobuf::RepeatedPtrField<uid_gid_extent>* map, uint32_t first, uint32_t lower, uint32_t count) {
  auto* e = map->Add();
  e->set_first(first);
  e->set_lower_first(lower);
  e->set_count(count);
}

// uids: 0..999 -> 100000.., 1000..65535 -> 201000..; gids: 0..65535 -> 100000..
ns::UserNs two_extents() {
  test::TempDir dir;
  userns_entry e;
  add(e.mutable_uid_map(), 0, 100000, 1000);
  add(e.mutable_uid_map(), 1000, 201000, 64536);
  add(e.mutable_gid_map(), 0, 100000, 65536);
  EXPECT_TRUE(image::write_single(dir.fd(), "userns-7.img", image::kind(image::Type::userns), e));
  auto ns = ns::UserNs::load(dir.fd(), 7);
  EXPECT_TRUE(ns) << ns.error().render();
  return *ns;
}

TEST(UserNsOwners, ImagesKeepTheNamespacesIds) {
  auto ns = two_extents();
  auto o = ns::owner_in_image(&ns, {100005, 100007});
  EXPECT_EQ(o.uid, 5u);
  EXPECT_EQ(o.gid, 7u);
  o = ns::owner_in_image(&ns, {201234, 104321});
  EXPECT_EQ(o.uid, 1234u);
  EXPECT_EQ(o.gid, 4321u);
  // Unmapped: the overflow id, as the namespace itself would see it.
  o = ns::owner_in_image(&ns, {0, 99999});
  EXPECT_EQ(o.uid, 65534u);
  EXPECT_EQ(o.gid, 65534u);
  // No namespace of its own: the ids as they are.
  o = ns::owner_in_image(nullptr, {100005, 0});
  EXPECT_EQ(o.uid, 100005u);
  EXPECT_EQ(o.gid, 0u);
}

TEST(UserNsOwners, RestoreMapsBackThroughEveryExtent) {
  auto ns = two_extents();
  auto o = ns::owner_on_host(&ns, {999, 0}, "memfd inode 1");
  ASSERT_TRUE(o) << o.error().render();
  EXPECT_EQ(o->uid, 100999u);
  EXPECT_EQ(o->gid, 100000u);
  o = ns::owner_on_host(&ns, {1000, 65535}, "memfd inode 1");
  ASSERT_TRUE(o) << o.error().render();
  EXPECT_EQ(o->uid, 201000u);
  EXPECT_EQ(o->gid, 165535u);
  o = ns::owner_on_host(nullptr, {70000, 5}, "memfd inode 1");
  ASSERT_TRUE(o);
  EXPECT_EQ(o->uid, 70000u);
}

TEST(UserNsOwners, AnUnmappedOwnerNamesTheObjectAndTheId) {
  auto ns = two_extents();
  auto o = ns::owner_on_host(&ns, {65536, 0}, "SysV shm segment 3");
  ASSERT_FALSE(o);
  EXPECT_EQ(o.error().render(),
            "restore SysV shm segment 3: owner uid 65536 is not mapped in the user namespace restored into; hint: restore "
            "into a user namespace whose uid_map and gid_map cover the ids of the images");
  o = ns::owner_on_host(&ns, {0, 70000}, "deleted file /tmp/x");
  ASSERT_FALSE(o);
  EXPECT_NE(o.error().render().find("deleted file /tmp/x: owner gid 70000 is not mapped"), std::string::npos)
      << o.error().render();
}

}  // namespace
}  // namespace crshim
