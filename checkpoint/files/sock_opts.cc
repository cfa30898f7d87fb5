#include "checkpoint/files/sock_opts.h"

#include <sys/socket.h>
#include <sys/time.h>

namespace crshim::files::sock {

Result<int> get_int(int fd, int level, int opt, const char* name, const std::string& what) {
  int v = 0;
  socklen_t len = sizeof v;
  if (::getsockopt(fd, level, opt, &v, &len) < 0) return fail(sys_error(std::string("getsockopt(") + name + ")", what));
  return v;
}

Result<sk_opts_entry> dump_common_opts(int fd, const std::string& what) {
  sk_opts_entry o;
  o.set_so_sndbuf(uint32_t(CR_TRY(get_int(fd, SOL_SOCKET, SO_SNDBUF, "SO_SNDBUF", what))));
  o.set_so_rcvbuf(uint32_t(CR_TRY(get_int(fd, SOL_SOCKET, SO_RCVBUF, "SO_RCVBUF", what))));
  timeval tv{};
  socklen_t len = sizeof tv;
  if (::getsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, &len) < 0) return fail(sys_error("getsockopt(SO_SNDTIMEO)", what));
  o.set_so_snd_tmo_sec(uint64_t(tv.tv_sec));
  o.set_so_snd_tmo_usec(uint64_t(tv.tv_usec));
  len = sizeof tv;
  if (::getsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, &len) < 0) return fail(sys_error("getsockopt(SO_RCVTIMEO)", what));
  o.set_so_rcv_tmo_sec(uint64_t(tv.tv_sec));
  o.set_so_rcv_tmo_usec(uint64_t(tv.tv_usec));
  o.set_reuseaddr(CR_TRY(get_int(fd, SOL_SOCKET, SO_REUSEADDR, "SO_REUSEADDR", what)) != 0);
  o.set_so_priority(uint32_t(CR_TRY(get_int(fd, SOL_SOCKET, SO_PRIORITY, "SO_PRIORITY", what))));
  o.set_so_rcvlowat(uint32_t(CR_TRY(get_int(fd, SOL_SOCKET, SO_RCVLOWAT, "SO_RCVLOWAT", what))));
  o.set_so_mark(uint32_t(CR_TRY(get_int(fd, SOL_SOCKET, SO_MARK, "SO_MARK", what))));
  return o;
}

}  // namespace crshim::files::sock
