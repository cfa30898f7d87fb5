/* Signalfds keep their mask and flags; a signal pending (blocked) at dump is read from the signalfd
 * after restore, with its queued value. */
#include "tp.h"

#include <stdint.h>
#include <sys/signalfd.h>

static uint64_t fdinfo_sigmask(int fd) {
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
  int f = open(path, O_RDONLY);
  ssize_t n = read(f, buf, sizeof buf - 1);
  close(f);
  TP_CHECK(n > 0, "read %s", path);
  buf[n] = 0;
  char* p = strstr(buf, "sigmask:");
  TP_CHECK(p, "no sigmask in %s", buf);
  return strtoull(p + 8, NULL, 16);
}

int main(int argc, char** argv) {
  tp_init(argc, argv);
  sigset_t block, m1, m2;
  sigemptyset(&block);
  sigaddset(&block, SIGUSR1);
  sigaddset(&block, SIGUSR2);
  sigaddset(&block, 40);
  TP_CHECK(sigprocmask(SIG_BLOCK, &block, NULL) == 0, "sigprocmask");
  sigemptyset(&m1);
  sigaddset(&m1, SIGUSR2);
  int sfd = signalfd(-1, &m1, SFD_NONBLOCK | SFD_CLOEXEC);
  TP_CHECK(sfd >= 0, "signalfd");
  sigemptyset(&m2);
  sigaddset(&m2, SIGUSR1);
  sigaddset(&m2, 40);
  int other = signalfd(-1, &m2, 0);
  TP_CHECK(other >= 0, "signalfd 2");
  union sigval val = {.sival_int = 4242};
  TP_CHECK(sigqueue(getpid(), SIGUSR2, val) == 0, "sigqueue");

  tp_ready(argv);
  tp_wait_for_term(NULL);

  TP_CHECK(fdinfo_sigmask(sfd) == (1ull << (SIGUSR2 - 1)), "sigmask %llx", (unsigned long long)fdinfo_sigmask(sfd));
  TP_CHECK(fdinfo_sigmask(other) == ((1ull << (SIGUSR1 - 1)) | (1ull << 39)), "second sigmask %llx",
           (unsigned long long)fdinfo_sigmask(other));
  struct signalfd_siginfo si;
  ssize_t n = read(sfd, &si, sizeof si);
  TP_CHECK(n == sizeof si, "read signalfd: %zd (%s)", n, strerror(errno));
  TP_CHECK(si.ssi_signo == SIGUSR2, "signal %u", si.ssi_signo);
  TP_CHECK(si.ssi_code == SI_QUEUE && si.ssi_int == 4242, "code %d value %d", si.ssi_code, si.ssi_int);
  TP_CHECK(read(sfd, &si, sizeof si) < 0 && errno == EAGAIN, "a second signal, or O_NONBLOCK lost");
  TP_CHECK(fcntl(sfd, F_GETFD) & FD_CLOEXEC, "FD_CLOEXEC lost");
  TP_CHECK(!(fcntl(other, F_GETFL) & O_NONBLOCK), "O_NONBLOCK appeared");
  /* The second one still works. */
  TP_CHECK(kill(getpid(), SIGUSR1) == 0, "kill");
  TP_CHECK(read(other, &si, sizeof si) == sizeof si && si.ssi_signo == SIGUSR1, "second signalfd read");
  tp_pass();
}
