// Which open file description (struct file) an fd of a dumped task refers to, among those seen so far.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <vector>

namespace crshim::files {

// Open file descriptions seen so far, one representative fd each, kept in kcmp(KCMP_FILE) order
// (the kernel's obfuscated file pointers) so a lookup costs log(n) kcmp calls instead of n.
class OpenFiles {
 public:
  // The id given to the file behind (pid, fd), or 0 when it was not seen.
  uint32_t find(pid_t pid, int fd) const { return locate(pid, fd).id; }
  // Records (pid, fd) as file `id`; nothing changes when its file is already known.
  void add(pid_t pid, int fd, uint32_t id);

 private:
  struct Ref {
    pid_t pid;
    int fd;
    uint32_t id;
  };
  struct Place {
    size_t pos;    // where (pid, fd) is, or would be inserted
    uint32_t id;   // 0: absent
    bool ordered;  // false when the kernel gave no order and every file was compared
  };
  Place locate(pid_t pid, int fd) const;

  std::vector<Ref> refs_;
  bool unordered_ = false;  // the kernel gave no order once: from then on, compare with every file
};

}  // namespace crshim::files
