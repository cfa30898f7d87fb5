// The owners the images give files, checked against the user namespace the tree is restored into
// before any task exists (restoring them is the kinds' own work: memfd.cc, reg.cc, unix_restore.cc).
#include <cerrno>
#include <string>

#include "checkpoint/files/kinds.h"
#include "checkpoint/image/catalog.h"
#include "checkpoint/ns/userns.h"
#include "ghost-file.pb.h"
#include "memfd.pb.h"

namespace crshim::files {

Status check_owners(RestoreFiles& files, const std::map<uint32_t, file_entry>& all) {
  const ns::UserNs* userns = files.userns();
  if (!userns) return {};
  auto memfds = image::Reader::open(files.images_dir(), image::kMemfdFile, image::kind(image::Type::memfd_inode));
  if (!memfds && memfds.error().err != ENOENT) return fail(memfds.error());
  for (memfd_inode_entry mie; memfds && CR_TRY(memfds->read(mie));) {
    std::string what = "memfd inode " + std::to_string(mie.inode_id()) + " (" + mie.name() + ")";
    CR_TRY(ns::owner_on_host(userns, {mie.uid(), mie.gid()}, what));
  }
  for (const auto& [id, fe] : all) {
    if (fe.type() == UNIXSK && fe.has_usk() && fe.usk().has_file_perms()) {
      const auto& fp = fe.usk().file_perms();
      std::string what = "unix socket file " + std::string(fe.usk().name().c_str());
      CR_TRY(ns::owner_on_host(userns, {fp.uid(), fp.gid()}, what));
    } else if (fe.type() == REG && fe.has_reg()) {
      uint32_t ghost = CR_TRY(files.ghost_for(id));
      if (!ghost) continue;
      std::string name = image::ghost_file(ghost);
      auto r = CR_TRY(image::Reader::open(files.images_dir(), name, image::kind(image::Type::ghost_file)));
      ghost_file_entry g;
      if (!CR_TRY(r.read(g))) return fail(make_error(Errc::corrupt_image, "validate", name, "no ghost entry"));
      CR_TRY(ns::owner_on_host(userns, {g.uid(), g.gid()}, "deleted file " + fe.reg().name()));
    }
  }
  return {};
}

}  // namespace crshim::files
