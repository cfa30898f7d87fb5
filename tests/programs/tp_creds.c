/* Credentials, capabilities, no_new_privs and a seccomp filter survive checkpoint/restore.
 * Runs as root and drops to uid/gid 1000 keeping CAP_NET_BIND_SERVICE. */
#include "tp.h"

#include <grp.h>
#include <linux/audit.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

static int capget_eff(unsigned* lo) {
  struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct d[2];
  if (syscall(SYS_capget, &h, d) < 0) return -1;
  *lo = d[0].effective;
  return 0;
}

/* getpriority fails with EPERM-like errno 77 once installed; everything else is allowed. */
static void install_filter(void) {
  struct sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_getpriority, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | 77),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  struct sock_fprog prog = {4, filter};
  TP_CHECK(prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) == 0, "seccomp: %s", strerror(errno));
}

/* argv[3] "no-nnp": the filter is installed while still root (CAP_SYS_ADMIN), as container runtimes
 * do, and no_new_privs stays off; the restore must install it before dropping the capabilities. */
int main(int argc, char** argv) {
  tp_init(argc, argv);
  int nnp = !(argc > 3 && strcmp(argv[3], "no-nnp") == 0);
  if (!nnp) install_filter();
  gid_t groups[] = {1001, 1002};
  TP_CHECK(setgroups(2, groups) == 0, "setgroups");
  TP_CHECK(prctl(PR_SET_KEEPCAPS, 1) == 0, "keepcaps");
  TP_CHECK(setresgid(1000, 1000, 1000) == 0, "setresgid");
  TP_CHECK(setresuid(1000, 1000, 1000) == 0, "setresuid");
  struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct d[2] = {{0}, {0}};
  d[0].effective = d[0].permitted = 1u << CAP_NET_BIND_SERVICE;
  TP_CHECK(syscall(SYS_capset, &h, d) == 0, "capset");
  if (nnp) {
    TP_CHECK(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0, "no_new_privs");
    install_filter();
  }
  errno = 0;
  TP_CHECK(syscall(SYS_getpriority, 0, 0) < 0 && errno == 77, "filter not active before dump");

  tp_ready(argv);
  tp_wait_for_term(NULL);

  uid_t r, e, s;
  getresuid(&r, &e, &s);
  TP_CHECK(r == 1000 && e == 1000 && s == 1000, "uids %d %d %d", r, e, s);
  gid_t gr, ge, gs;
  getresgid(&gr, &ge, &gs);
  TP_CHECK(gr == 1000 && ge == 1000 && gs == 1000, "gids %d %d %d", gr, ge, gs);
  gid_t got[8];
  int n = getgroups(8, got);
  TP_CHECK(n == 2 && got[0] == 1001 && got[1] == 1002, "groups (%d)", n);
  unsigned eff = 0;
  TP_CHECK(capget_eff(&eff) == 0 && eff == 1u << CAP_NET_BIND_SERVICE, "effective caps %x", eff);
  TP_CHECK(prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == nnp, "no_new_privs is not %d", nnp);
  errno = 0;
  TP_CHECK(syscall(SYS_getpriority, 0, 0) < 0 && errno == 77, "seccomp filter lost (errno %d)", errno);
  TP_CHECK(prctl(PR_GET_SECCOMP) == 2, "seccomp mode %d", prctl(PR_GET_SECCOMP));
  tp_pass();
}
