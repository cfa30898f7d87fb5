#include "checkpoint/files/file_table.h"

#include <fcntl.h>

#include "checkpoint/image/catalog.h"
#include "checkpoint/image/image.h"

namespace crshim::files {

uint32_t FileTable::add(file_entry entry) {
  uint32_t id = uint32_t(entries_.size() + 1);
  entry.set_id(id);
  entries_.push_back(std::move(entry));
  return id;
}

uint32_t FileTable::add_reg(const std::string& path, uint32_t flags, uint64_t pos, const struct stat& st, int mnt_id,
                            bool shareable) {
  auto key = std::make_tuple(path, flags, uint64_t(st.st_dev), uint64_t(st.st_ino));
  if (shareable) {
    if (auto it = shared_.find(key); it != shared_.end()) return it->second;
  }
  file_entry fe;
  fe.set_type(REG);
  fe.set_id(0);
  reg_file_entry* reg = fe.mutable_reg();
  reg->set_id(0);
  reg->set_flags(flags);
  reg->set_pos(pos);
  fown_entry* fown = reg->mutable_fown();
  fown->set_uid(0);
  fown->set_euid(0);
  fown->set_signum(0);
  fown->set_pid_type(0);
  fown->set_pid(0);
  reg->set_name(path);
  if (mnt_id >= 0) reg->set_mnt_id(mnt_id);
  // Restore refuses a file whose size changed, except an append-only writer's (a log), which grows
  // legitimately meanwhile; CRIU records no size for those either.
  bool log_like = (flags & O_ACCMODE) == O_WRONLY && (flags & O_APPEND);
  if (S_ISREG(st.st_mode) && !log_like) reg->set_size(uint64_t(st.st_size));
  reg->set_mode(st.st_mode);
  uint32_t id = add(std::move(fe));
  entries_.back().mutable_reg()->set_id(id);
  if (shareable) shared_[key] = id;
  return id;
}

uint32_t FileTable::add_open_reg(pid_t pid, int fd, const std::string& path, uint32_t flags, uint64_t pos,
                                 const struct stat& st, int mnt_id) {
  auto& seen = open_[{uint64_t(st.st_dev), uint64_t(st.st_ino)}];
  if (uint32_t id = seen.find(pid, fd)) return id;
  uint32_t id = add_reg(path, flags, pos, st, mnt_id, false);
  seen.add(pid, fd, id);
  return id;
}

void FileTable::mark_external(uint32_t id) {
  reg_file_entry* reg = entries_[id - 1].mutable_reg();
  reg->set_ext(true);
  reg->clear_mnt_id();
  reg->clear_size();
}

Status FileTable::write(int images_dir) const {
  auto w = CR_TRY(image::Writer::create(images_dir, image::kFilesFile, image::kind(image::Type::files)));
  for (const auto& e : entries_) CR_OK(w.write(e));
  return w.close();
}

Result<std::map<uint32_t, file_entry>> read_file_table(int images_dir) {
  std::map<uint32_t, file_entry> out;
  auto r = CR_TRY(image::Reader::open(images_dir, image::kFilesFile, image::kind(image::Type::files)));
  for (;;) {
    file_entry fe;
    bool got = CR_TRY(r.read(fe));
    if (!got) break;
    if (fe.type() == REG && (!fe.has_reg() || fe.reg().id() != fe.id()))
      return fail(make_error(Errc::corrupt_image, "read", image::kFilesFile,
                             "file " + std::to_string(fe.id()) + " has no matching reg payload"));
    if (!out.emplace(fe.id(), fe).second)
      return fail(make_error(Errc::corrupt_image, "read", image::kFilesFile, "duplicate file id " + std::to_string(fe.id())));
    if (out.size() > 1000000)
      return fail(make_error(Errc::corrupt_image, "read", image::kFilesFile, "more than a million files"));
  }
  return out;
}

}  // namespace crshim::files
