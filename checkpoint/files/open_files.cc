#include "checkpoint/files/open_files.h"

#include <linux/kcmp.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace crshim::files {

OpenFiles::Place OpenFiles::locate(pid_t pid, int fd) const {
  auto compare = [&](const Ref& ref) { return ::syscall(SYS_kcmp, pid, ref.pid, KCMP_FILE, fd, ref.fd); };
  size_t lo = 0, hi = refs_.size();
  while (!unordered_ && lo < hi) {
    size_t mid = (lo + hi) / 2;
    long r = compare(refs_[mid]);
    if (r == 0) return {mid, refs_[mid].id, true};
    if (r == 1) {
      hi = mid;  // ours sorts before refs_[mid]
    } else if (r == 2) {
      lo = mid + 1;
    } else {
      break;  // no order (or an error)
    }
  }
  if (!unordered_ && lo == hi) return {lo, 0, true};
  for (size_t i = 0; i < refs_.size(); i++)
    if (compare(refs_[i]) == 0) return {i, refs_[i].id, false};
  return {refs_.size(), 0, false};
}

void OpenFiles::add(pid_t pid, int fd, uint32_t id) {
  Place p = locate(pid, fd);
  if (p.id) return;
  if (!p.ordered) unordered_ = true;
  refs_.insert(refs_.begin() + long(p.pos), Ref{pid, fd, id});
}

}  // namespace crshim::files
